"""Tiles to tag: a folder's images, a slide's tissue grid (glass left out), and reading them back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_wsss.data.slide import open_slide
from napari_wsss.tagging.tiles import folder_tiles, grid_shape, read_tile, slide_tiles


def test_folder_tiles_are_keyed_by_stem_and_read_back(tile_folder: Path) -> None:
    tiles = folder_tiles(tile_folder)
    assert len(tiles) == 10 and tiles[0].key == Path(tiles[0].image).stem
    assert read_tile(tiles[0], tile_folder).shape == (64, 64, 3)


def test_slide_grid_covers_tissue_only_at_the_chosen_level(tmp_path: Path) -> None:
    from napari_wsss.data.synthetic_slide import write_slide

    path = write_slide(tmp_path / "s.tif", shape=(1024, 1536), seed=2, tile=256, levels=3)
    with open_slide(path) as slide:
        # paint a glass band over the right third of every level: those tiles must not be offered
        arrays = [np.asarray(lv).copy() for lv in slide.levels]
        for a in arrays:
            a[:, 2 * a.shape[1] // 3:] = 245
        tiles = slide_tiles(arrays, slide.downsamples, tile=128, level=1)
        assert tiles, "tissue tiles expected"
        for t in tiles:
            y0, x0, y1, x1, level = t.region
            assert level == 1 and (y1 - y0, x1 - x0) == (256, 256)  # 128 level-1 px = 256 level-0 px
            assert x1 <= 1024  # nothing from the glass band (level-0 x >= 1024)
            assert t.key == f"r{y0}_{x0}_{y1}_{x1}_l1"
        assert len({t.key for t in tiles}) == len(tiles)
        img = read_tile(tiles[0], path, slide)
        assert img.shape == (128, 128, 3)
        with pytest.raises(ValueError, match="does not fit"):
            slide_tiles(slide.levels, slide.downsamples, tile=4096, level=0)
        with pytest.raises(ValueError, match="does not exist"):
            slide_tiles(slide.levels, slide.downsamples, tile=128, level=7)


def test_grid_shape_is_near_square() -> None:
    assert grid_shape(400) == (20, 20) and grid_shape(10) == (3, 4) and grid_shape(0) == (1, 1)


def test_edge_remainder_is_said_plainly() -> None:
    from napari_wsss.tagging.tiles import edge_remainder_text

    assert edge_remainder_text(512, 512, 128) == ""
    text = edge_remainder_text(500, 530, 128)
    assert "18 px at the right" in text and "116 px at the bottom" in text and "one size" in text
    assert "bottom" not in edge_remainder_text(512, 530, 128)
