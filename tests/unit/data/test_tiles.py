from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_wsss.classes import BCSS_WSSS, LUAD_HISTOSEG
from napari_wsss.data.tiles import (
    is_background,
    list_mask_pairs,
    list_training_tiles,
    parse_labels_from_name,
    read_mask,
    read_rgb,
    write_mask,
)


def _save(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


@pytest.mark.parametrize(
    ("name", "n", "expected"),
    [
        ("1031280-2300-27920-[1 0 0 1].png", 4, [1, 0, 0, 1]),
        ("TCGA-A1-A0SK-DX1_xmin45749_ymin25055_MPP-0.2500+0-[0101].png", 4, [0, 1, 0, 1]),
        ("a-[1 1 1 0].jpg", 4, [1, 1, 1, 0]),
    ],
)
def test_parse_labels_both_conventions(name: str, n: int, expected: list[int]) -> None:
    assert parse_labels_from_name(name, n).tolist() == expected


@pytest.mark.parametrize("name", ["tile.png", "tile-[1 0 2 1].png", "tile-[101].png"])
def test_bad_label_strings_raise_with_file_name(name: str) -> None:
    with pytest.raises(ValueError, match=name.split("-")[0]):
        parse_labels_from_name(name, 4)


def test_training_tiles_from_names_and_csv(tmp_path: Path, rng: np.random.Generator) -> None:
    img = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    _save(tmp_path / "t" / "a-[1 0 0 1].png", img)
    _save(tmp_path / "t" / "b-[0 1 1 0].png", img)
    tiles = list_training_tiles(tmp_path / "t", LUAD_HISTOSEG)
    assert [t.labels.tolist() for t in tiles] == [[1, 0, 0, 1], [0, 1, 1, 0]]

    _save(tmp_path / "c" / "x.png", img)
    csv = tmp_path / "labels.csv"
    csv.write_text("filename,TE,NEC,LYM,TAS\nx.png,0,0,1,1\n")
    (t,) = list_training_tiles(tmp_path / "c", LUAD_HISTOSEG, labels_csv=csv)
    assert t.labels.tolist() == [0, 0, 1, 1]
    csv.write_text("filename,TUM,STR\nx.png,0,1\n")
    with pytest.raises(ValueError, match="columns"):
        list_training_tiles(tmp_path / "c", LUAD_HISTOSEG, labels_csv=csv)


def test_empty_folder_and_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds no images"):
        list_training_tiles(tmp_path, LUAD_HISTOSEG)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        list_training_tiles(tmp_path / "nope", LUAD_HISTOSEG)


def test_read_rgb_refuses_grey_rgba_and_rescales_16bit(tmp_path: Path, rng: np.random.Generator) -> None:
    grey = _save(tmp_path / "g.png", rng.integers(0, 255, (8, 8), dtype=np.uint8))
    rgba = _save(tmp_path / "a.png", rng.integers(0, 255, (8, 8, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"g\.png is grayscale"):
        read_rgb(grey)
    with pytest.raises(ValueError, match=r"a\.png is RGBA"):
        read_rgb(rgba)
    opaque = rng.integers(0, 255, (8, 8, 4), dtype=np.uint8)
    opaque[..., 3] = 255  # an alpha channel that hides nothing is dropped, not refused
    assert np.array_equal(read_rgb(_save(tmp_path / "o.png", opaque)), opaque[..., :3])
    import tifffile

    tifffile.imwrite(tmp_path / "w.tif", np.full((4, 4, 3), 65535, np.uint16), photometric="rgb")
    assert read_rgb(tmp_path / "w.tif").max() == 255


def test_truncated_tiff_names_file(tmp_path: Path, rng: np.random.Generator) -> None:
    import tifffile

    p = tmp_path / "t.tif"
    tifffile.imwrite(p, rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), photometric="rgb")
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"t\.tif"):
        read_rgb(p)


def test_mask_pairs_and_mask_validation(tmp_path: Path) -> None:
    cm = np.array([[0, 1], [2, 4]], dtype=np.uint8)
    _save(tmp_path / "val" / "img" / "a.png", np.zeros((2, 2, 3), np.uint8))
    write_mask(tmp_path / "val" / "mask" / "a.png", cm, LUAD_HISTOSEG)
    (pair,) = list_mask_pairs(tmp_path / "val")
    back = read_mask(pair.mask, LUAD_HISTOSEG)
    assert np.array_equal(back, cm)
    with Image.open(pair.mask) as im:
        assert im.mode == "P" and im.getpalette()[:3] == [205, 51, 51]

    bad = Image.fromarray(np.array([[0, 9]], dtype=np.uint8), mode="L")
    bad.save(tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"bad\.png.*\[9\]"):
        read_mask(tmp_path / "bad.png", BCSS_WSSS)
    _save(tmp_path / "val" / "img" / "b.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="no mask"):
        list_mask_pairs(tmp_path / "val")


def test_background_is_white_glass_without_specks() -> None:
    img = np.full((40, 40, 3), 120, np.uint8)
    img[:, 20:] = 245  # glass on the right half
    img[5, 5] = 250  # a single white speck in tissue is not glass
    bg = is_background(img)
    assert bg[:, 25:].all() and not bg[:, :15].any()
    assert is_background(np.stack([img, img])).shape == (2, 40, 40)
