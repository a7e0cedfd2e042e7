"""Mask writers: palette PNG/TIFF tiles, OME-Zarr and pyramidal TIFF label images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_wsss.classes import LUAD_HISTOSEG as S
from napari_wsss.data.tiles import read_mask
from napari_wsss.export.masks import (
    read_class_map,
    read_ome_zarr_labels,
    read_pyramidal_tiff_labels,
    write_class_map,
    write_ome_zarr_labels,
    write_pyramidal_tiff_labels,
)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_tile_mask_round_trip_with_palette(tmp_path, rng, suffix) -> None:
    cm = rng.integers(0, S.n_classes, (33, 47)).astype(np.uint8)
    p = write_class_map(tmp_path / f"m{suffix}", cm, S)
    assert np.array_equal(read_class_map(p, S), cm)
    assert np.array_equal(read_mask(p, S), cm)  # the training code's reader (PIL) reads both
    from PIL import Image

    with Image.open(p) as im:
        assert im.mode == "P"
        assert im.getpalette()[:6] == [205, 51, 51, 0, 255, 0]


def test_bad_suffix(tmp_path) -> None:
    with pytest.raises(ValueError, match=".jpg"):
        write_class_map(tmp_path / "m.jpg", np.zeros((4, 4), np.uint8), S)


def test_slide_label_images(tmp_path, rng) -> None:
    lab = S.to_labels(rng.integers(0, S.n_classes, (40, 50)).astype(np.uint8))
    full = np.zeros((300, 260), np.uint8)
    full[101:141, 203:253] = lab
    arrays = write_ome_zarr_labels(tmp_path / "s.ome.zarr", full.shape, iter([(101, 203, lab)]), S, downsample=2,
                                   n_levels=3)
    for lv in range(3):
        f = 2**lv
        assert np.array_equal(read_ome_zarr_labels(tmp_path / "s.ome.zarr", lv), full[::f, ::f])
    attrs = json.loads((tmp_path / "s.ome.zarr" / ".zattrs").read_text())
    assert attrs["multiscales"][0]["datasets"][1]["coordinateTransformations"][0]["scale"] == [4.0, 4.0]
    assert attrs["image-label"]["colors"][0] == {"label-value": 1, "rgba": [205, 51, 51, 255]}
    write_pyramidal_tiff_labels(tmp_path / "s.tif", arrays, S, tile=64)
    for lv in range(3):
        assert np.array_equal(read_pyramidal_tiff_labels(tmp_path / "s.tif", lv), full[:: 2**lv, :: 2**lv])
    import tifffile

    with tifffile.TiffFile(tmp_path / "s.tif") as tf:
        assert tf.pages[0].photometric == tifffile.PHOTOMETRIC.PALETTE and tf.pages[0].is_tiled
        assert "XResolution" not in tf.pages[0].tags or tf.pages[0].tags["ResolutionUnit"].value == 1


def test_slide_label_images_carry_pixel_size(tmp_path) -> None:
    """Every level's scale in micrometres (OME-NGFF) and its resolution tags (TIFF): 0.25 um/px, downsample 2."""
    import tifffile

    arrays = write_ome_zarr_labels(tmp_path / "s.ome.zarr", (64, 64), iter([]), S, downsample=2, n_levels=2,
                                   mpp=0.25)
    ms = json.loads((tmp_path / "s.ome.zarr" / ".zattrs").read_text())["multiscales"][0]
    assert [a["unit"] for a in ms["axes"]] == ["micrometer", "micrometer"]
    assert [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]] == [[0.5, 0.5], [1.0, 1.0]]
    write_pyramidal_tiff_labels(tmp_path / "s.tif", arrays, S, tile=16, downsample=2, mpp=0.25)
    with tifffile.TiffFile(tmp_path / "s.tif") as tf:
        pages = [tf.pages[0], *tf.pages[0].pages]
        um = [1e4 / (p.tags["XResolution"].value[0] / p.tags["XResolution"].value[1]) for p in pages]
        assert um == pytest.approx([0.5, 1.0]) and pages[0].tags["ResolutionUnit"].value == 3
