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


def test_glas_layout_folder_says_what_to_give(tmp_path: Path) -> None:
    """Before: `train`/`predict` on a GlaS images/ + masks/ folder said 'give its training/ folder'."""
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(ValueError, match=r"images/ \+ masks/.*evaluate --data.*napari-wsss patches"):
        list_training_tiles(tmp_path, LUAD_HISTOSEG)


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


def test_a_mask_read_as_an_image_is_called_a_mask(tmp_path: Path, rng: np.random.Generator) -> None:
    """Before: a GlaS mask opened by mistake (File > Open, predict) was 'grayscale ... use the original colour
    scan'; it is a mask, and the message says what to open instead. A true grey scan keeps the old advice."""
    mask = np.zeros((40, 50), np.uint8)
    mask[10:30, 5:25] = 255
    with pytest.raises(ValueError, match=r"m\.png looks like a mask.*values 0, 255.*images/ \+ masks/"):
        read_rgb(_save(tmp_path / "m.png", mask))
    with pytest.raises(ValueError, match="is grayscale.*original colour scan"):
        read_rgb(_save(tmp_path / "g.png", rng.integers(0, 255, (40, 50), dtype=np.uint8)))


def test_cmyk_tiff_is_converted_not_called_transparent(tmp_path: Path) -> None:
    """Before: a CMYK TIFF (4 inks) passed for RGBA and was refused as 'RGBA with transparent pixels'."""
    from PIL import Image

    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[:, :4] = (200, 60, 150)  # eosin-ish pink
    rgb[:, 4:] = (60, 40, 160)  # haematoxylin-ish blue
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.tif")
    out = read_rgb(tmp_path / "c.tif")
    assert out.shape == (6, 8, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb).max() <= 2


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


# --- is_background against the per-tile scikit-image reference it replaced (exact equality) ---------------------


def _reference_clean(mask: np.ndarray, min_size: int) -> np.ndarray:
    """The old implementation: remove_small_objects then remove_small_holes, one 2-D tile at a time."""
    from skimage.morphology import remove_small_holes, remove_small_objects

    try:
        return remove_small_holes(remove_small_objects(mask, max_size=min_size - 1), max_size=min_size - 1)
    except TypeError:  # scikit-image < 0.26
        return remove_small_holes(remove_small_objects(mask, min_size=min_size), area_threshold=min_size)


def _reference_background(rgb: np.ndarray, threshold: int = 200, min_size: int = 64) -> np.ndarray:
    grey = np.asarray(rgb).astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    white = grey > threshold
    flat = white.reshape(-1, *white.shape[-2:])
    return np.stack([_reference_clean(w, min_size) for w in flat]).reshape(white.shape)


def _blobs(rng: np.random.Generator, shape: tuple[int, int, int], cell: int, p: float) -> np.ndarray:
    """Blocky random masks: components and holes of many sizes, many of them cut by the tile border."""
    n, h, w = shape
    coarse = rng.random((n, -(-h // cell), -(-w // cell))) < p
    big = np.repeat(np.repeat(coarse, cell, axis=1), cell, axis=2)[:, :h, :w]
    return big ^ (rng.random(shape) < 0.02)  # plus single-pixel specks and pinholes


def _structured(h: int, w: int, m: int) -> np.ndarray:
    """Specks and holes of exactly m - 1 and m pixels, at corners, on edges and inside, and degenerate tiles."""
    tiles = [np.zeros((h, w), bool), np.ones((h, w), bool)]
    for size in (max(m - 1, 1), max(m, 1)):
        for fill in (False, True):  # objects on glass-free tissue / holes in glass
            t = np.full((h, w), fill)
            flat = np.zeros(h * w, bool)
            flat[:size] = True
            t ^= flat.reshape(h, w)  # a run along the top rows, touching the top-left corner
            k = min(size, h)
            t[h - k:, w - 1] ^= True  # a bar on the right edge, touching the bottom-right corner
            c = max(1, int(np.sqrt(size)))
            t[h // 2:h // 2 + c, w // 2:w // 2 + c] ^= True  # a square blob inside
            tiles.append(t)
    return np.stack(tiles)


SHAPES = [(1, 1, 1), (3, 1, 17), (3, 17, 1), (4, 13, 29), (3, 40, 40), (2, 64, 96)]
MIN_SIZES = [0, 1, 2, 3, 5, 16, 64, 200]


@pytest.mark.parametrize("shape", SHAPES)
def test_remove_small_islands_matches_skimage_per_tile(shape: tuple[int, int, int]) -> None:
    from napari_wsss.data.tiles import _remove_small_islands, _remove_small_islands_runs

    n, h, w = shape
    for seed in range(4):
        rng = np.random.default_rng(seed)
        masks = [rng.random(shape) < p for p in (0.05, 0.3, 0.5, 0.7, 0.95)]
        masks += [_blobs(rng, shape, cell, p) for cell in (2, 3, 7) for p in (0.2, 0.5, 0.8)]
        for m in MIN_SIZES:
            for mask in [*masks, _structured(h, w, m)]:
                expected = np.stack([_reference_clean(t, m) for t in mask])
                for fn in (_remove_small_islands, _remove_small_islands_runs):
                    got = fn(mask, m)
                    assert got.dtype == bool and got.shape == mask.shape
                    assert np.array_equal(got, expected), (fn.__name__, shape, seed, m)


def test_small_island_size_limit_is_exclusive() -> None:
    from napari_wsss.data.tiles import _remove_small_islands_runs

    tile = np.zeros((1, 20, 20), bool)
    tile[0, 0, :7] = True  # 7 px on the top border: removed with min_size 8, kept with min_size 7
    tile[0, 5:9, 5:9] = True
    tile[0, 6, 6] = False  # a 1-px hole: filled with min_size 2
    assert not _remove_small_islands_runs(tile, 8)[0, 0].any()
    assert _remove_small_islands_runs(tile, 7)[0, 0, :7].all()
    assert _remove_small_islands_runs(tile, 2)[0, 6, 6] and not _remove_small_islands_runs(tile, 1)[0, 6, 6]


def test_is_background_matches_reference_on_images(rng: np.random.Generator) -> None:
    from napari_wsss.data.synthetic import generate_tile

    synth = np.stack([generate_tile(i, size=96).image for i in range(6)])
    assert np.array_equal(is_background(synth), _reference_background(synth))
    assert np.array_equal(is_background(synth, 180, 10), _reference_background(synth, 180, 10))
    # near-threshold grey levels, glass blobs and noise; 2-D, 3-D and 4-D (a, b, H, W, 3) inputs
    grey = np.where(_blobs(rng, (6, 50, 70), 5, 0.5), 230, 150) + rng.integers(-40, 41, (6, 50, 70))
    rgb = np.clip(grey[..., None] + rng.integers(-3, 4, (6, 50, 70, 3)), 0, 255).astype(np.uint8)
    for m in (0, 2, 9, 64):
        assert np.array_equal(is_background(rgb[0], min_size=m), _reference_background(rgb[0], min_size=m))
        assert np.array_equal(is_background(rgb, min_size=m), _reference_background(rgb, min_size=m))
        four = rgb.reshape(2, 3, 50, 70, 3)
        assert np.array_equal(is_background(four, min_size=m), _reference_background(four, min_size=m))
    # a stack mixing noise-like tiles (handled tile by tile) with smooth ones (handled in one batch)
    noisy = rng.integers(150, 256, (3, 50, 70, 3), dtype=np.uint8)
    mixed = np.concatenate([rgb[:2], noisy, rgb[2:]])
    assert np.array_equal(is_background(mixed), _reference_background(mixed))
    assert is_background(rgb[0]).shape == (50, 70) and is_background(rgb).dtype == bool


def _huge_tiff(path: Path) -> Path:
    """A small TIFF whose header declares 100000 x 100000 px (what a hostile or mislabelled file can claim)."""
    import struct

    import tifffile

    tifffile.imwrite(path, np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    with tifffile.TiffFile(path) as tf:
        offsets = [tf.pages[0].tags[name].valueoffset for name in ("ImageWidth", "ImageLength")]
    with open(path, "r+b") as f:
        for off in offsets:
            f.seek(off)
            f.write(struct.pack("<I", 100000))
    return path


def _huge_png(path: Path) -> Path:
    import struct
    import zlib

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = 8 + 8  # signature, then length + "IHDR"
    data[ihdr: ihdr + 8] = struct.pack(">II", 100000, 100000)
    data[ihdr + 13: ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4: ihdr + 13])))
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("make", [_huge_tiff, _huge_png], ids=["tiff", "png"])
def test_an_image_too_large_to_read_whole_is_refused_from_its_header(tmp_path: Path, make) -> None:  # noqa: ANN001
    """Before: the TIFF was read into one 27.9 GiB array; now the declared size is checked before any pixel."""
    path = make(tmp_path / ("big.tif" if make is _huge_tiff else "big.png"))
    with pytest.raises(ValueError, match=r"big\.(tif|png).*too large to hold in memory.*slide"):
        read_rgb(path)
