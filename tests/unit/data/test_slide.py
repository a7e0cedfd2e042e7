from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_wsss.data.slide import is_slide_path, open_slide


def test_pyramid_levels_are_lazy(pyramid_tiff: Path) -> None:
    import dask.array as da

    with open_slide(pyramid_tiff) as slide:
        assert [lv.shape for lv in slide.levels] == [(512, 384, 3), (256, 192, 3), (128, 96, 3)]
        assert slide.downsamples == [1.0, 2.0, 4.0]
        assert all(isinstance(lv, da.Array) for lv in slide.levels)
        # level 0 is chunked by the file's tiles, so a window reads only the tiles it touches
        assert slide.levels[0].chunksize[:2] == (64, 64)
        assert slide.levels[0].numblocks[:2] == (8, 6)
        region = slide.read_region(64, 64, 128, 96)
        assert region.shape == (64, 32, 3) and region.dtype == np.uint8
        assert slide.best_level_for(200 * 200) == 2


def test_region_matches_source(tmp_path: Path, rng: np.random.Generator) -> None:
    from tests.conftest import write_pyramid

    img = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    p = write_pyramid(tmp_path / "s.tif", img)
    assert is_slide_path(p)
    with open_slide(p) as slide:
        assert np.array_equal(slide.read_region(10, 20, 100, 200), img[10:100, 20:200])
        assert np.array_equal(slide.read_region(0, 0, 128, 128, level=1), img[::2, ::2])


def test_level0_read_touches_only_needed_chunks(pyramid_tiff: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tifffile

    decoded = []
    orig = tifffile.TiffPage.decode  # a property returning the page's tile decoder

    # count every time a tile decoder is fetched: one per decoded tile
    monkeypatch.setattr(tifffile.TiffPage, "decode", property(lambda self: (decoded.append(1), orig.__get__(self))[1]))
    with open_slide(pyramid_tiff) as slide:
        decoded.clear()
        slide.read_region(0, 0, 64, 64)
    # one 64x64 window of a 8x6-tile level: far fewer decodes than the 48 tiles of level 0
    assert 0 < len(decoded) <= 4


def test_bad_slides(tmp_path: Path) -> None:
    p = tmp_path / "broken.svs"
    p.write_bytes(b"II*\x00garbage")
    with pytest.raises(ValueError, match=r"broken\.svs"):
        open_slide(p)
    with pytest.raises(FileNotFoundError):
        open_slide(tmp_path / "none.tif")
    assert not is_slide_path(p)
