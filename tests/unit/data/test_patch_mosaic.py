"""Patches put back into their source images: pixels where they were cut, each pixel allowed only the classes
of every patch covering it, uncovered pixels out of training, and a clear error for unpositioned names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_wsss.classes import GLAS
from napari_wsss.data.patch_mosaic import build_mosaics, patch_position
from napari_wsss.data.tiles import LabelledTile, list_training_tiles, read_rgb
from napari_wsss.events import run_to_end
from napari_wsss.export.patches import make_patches


def _glas(root: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    images = {}
    for i, (h, w) in enumerate([(64, 96), (70, 50), (48, 48)]):
        gland = np.zeros((h, w), bool)
        gland[5 + i : h // 2, 4 : w // 3] = True
        img = np.where(gland[..., None], [120, 50, 150], [225, 140, 185]) + rng.normal(0, 6, (h, w, 3))
        img = np.clip(img, 0, 255).astype(np.uint8)
        if i == 1:
            img[:, w - 16 :] = 252  # glass on the right: its patches are dropped (uncovered pixels)
        for sub, arr in (("images", img), ("masks", (gland * 255).astype(np.uint8))):
            (root / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(root / sub / f"img_{i}.png")
        images[f"img_{i}"] = img
    return images


def test_mosaics_rebuild_images_with_per_pixel_labels(tmp_path: Path, rng: np.random.Generator) -> None:
    images = _glas(tmp_path / "glas", rng)
    out = run_to_end(make_patches(tmp_path / "glas", tmp_path / "set", GLAS, size=16, stride=12, val_list=["img_2"],
                                  max_glass=0.5))
    tiles = list_training_tiles(out / "training", GLAS)
    mosaics = {m.key: m for m in build_mosaics(tiles, read_rgb)}
    assert sorted(mosaics) == ["img_0", "img_1"]  # the validation image is not a training mosaic
    for key, m in mosaics.items():
        src = images[key]
        assert m.image.shape[:2] == m.covered.shape == m.labels.shape[1:]
        assert np.array_equal(m.image[m.covered], src[: m.image.shape[0], : m.image.shape[1]][m.covered])
        # brute force: a pixel allows a class only if every patch covering it has the class
        want = np.ones_like(m.labels)
        for t in tiles:
            stem, y, x = patch_position(t.path)
            if stem == key:
                want[:, y : y + 16, x : x + 16] &= np.asarray(t.labels, np.uint8)[:, None, None]
        assert np.array_equal(m.labels, want)
        assert m.labels[0].any() and not m.labels[0].all()  # patches without gland forbid it on their pixels
    # the glass column's patches were dropped: the mosaic ends where the last kept patch does
    assert mosaics["img_1"].image.shape[1] == 40 and mosaics["img_0"].covered.all()


def test_names_without_a_position_are_refused(tmp_path: Path) -> None:
    assert patch_position("train_10_y56_x112-[1 0].png") == ("train_10", 56, 112)
    assert patch_position("tile-[1 0].png") is None
    tile = LabelledTile(tmp_path / "tile-[1 0].png", np.array([1, 0]))
    with pytest.raises(ValueError, match="no patch position.*napari-wsss patches"):
        build_mosaics([tile], read_rgb)
