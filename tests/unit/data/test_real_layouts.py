"""Mask folders read as they come: the GlaS layout (images/ + masks/, greyscale 0/255, mixed sizes), generic
folders whose mask values the schema maps, and today's palette masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_wsss.classes import GLAS, LUAD_HISTOSEG, schema_from_spec
from napari_wsss.data.tiles import find_mask_layout, list_mask_pairs, read_mask, write_mask
from napari_wsss.training.common import resolve_data_dirs


def _save(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def test_glas_layout_mixed_sizes_greyscale_masks(tmp_path: Path) -> None:
    for name, shape in (("train_1", (30, 44)), ("train_2", (22, 28))):
        _save(tmp_path / "images" / f"{name}.png", np.zeros((*shape, 3), np.uint8))
        raw = np.zeros(shape, np.uint8)
        raw[: shape[0] // 2] = 255
        _save(tmp_path / "masks" / f"{name}.png", raw)
    pairs = list_mask_pairs(tmp_path)
    assert [p.image.name for p in pairs] == ["train_1.png", "train_2.png"]
    cm = read_mask(pairs[1].mask, GLAS)
    assert cm.shape == (22, 28) and cm[:11].tolist() == [[0] * 28] * 11 and (cm[11:] == 1).all()
    # a mask value the schema does not know is named
    _save(tmp_path / "odd.png", np.full((2, 2), 128, np.uint8))
    with pytest.raises(ValueError, match=r"odd\.png.*\[128\]"):
        read_mask(tmp_path / "odd.png", GLAS)


def test_palette_masks_hold_indices_even_with_mask_values(tmp_path: Path) -> None:
    cm = np.array([[0, 1], [2, 1]], np.uint8)
    write_mask(tmp_path / "m.png", cm, GLAS)  # what napari-wsss writes (patches' val/mask, exports)
    assert np.array_equal(read_mask(tmp_path / "m.png", GLAS), cm)
    # LUAD greyscale index masks keep working (schema without mask values)
    _save(tmp_path / "l.png", np.array([[0, 4]], np.uint8))
    assert read_mask(tmp_path / "l.png", LUAD_HISTOSEG).tolist() == [[0, 4]]


def test_generic_images_masks_through_schema_mask_values(tmp_path: Path) -> None:
    schema = schema_from_spec({"name": "t", "classes": [
        {"name": "tumour", "colour": [200, 0, 0], "mask_value": 1},
        {"name": "stroma", "colour": [0, 200, 0], "mask_value": 2},
        {"name": "bg", "colour": [255, 255, 255], "background": True, "mask_value": 0}]}, "t")
    _save(tmp_path / "images" / "a.jpg", np.zeros((4, 4, 3), np.uint8))
    _save(tmp_path / "masks" / "a_mask.png", np.array([[0, 1, 2, 2]] * 4, np.uint8))
    (pair,) = list_mask_pairs(tmp_path)
    assert pair.mask.name == "a_mask.png"
    assert read_mask(pair.mask, schema)[0].tolist() == [2, 0, 1, 1]


def test_data_dirs_find_glas_layout_splits(tmp_path: Path) -> None:
    (tmp_path / "training").mkdir()
    for split in ("val", "test"):
        (tmp_path / split / "images").mkdir(parents=True)
        (tmp_path / split / "masks").mkdir()
    dirs = resolve_data_dirs(tmp_path)
    assert dirs.val == tmp_path / "val" and dirs.test == tmp_path / "test"
    assert find_mask_layout(tmp_path / "val") == (tmp_path / "val" / "images", tmp_path / "val" / "masks")
    with pytest.raises(FileNotFoundError, match="images/ and masks/"):
        list_mask_pairs(tmp_path / "training")
