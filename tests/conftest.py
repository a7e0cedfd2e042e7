"""Shared fixtures: tiny tiles, folders and slides written to tmp_path; fixed seeds; CPU only."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# Tests never touch a GPU or the user's settings, and keep projects that belong in the user data folder (sample
# data, read-only folders) out of the real one; child processes (the napari launcher test) inherit this.
os.environ.setdefault("NAPARI_WSSS_DEVICE", "cpu")
if "NAPARI_WSSS_DATA_DIR" not in os.environ:
    import tempfile

    os.environ["NAPARI_WSSS_DATA_DIR"] = tempfile.mkdtemp(prefix="napari-wsss-test-data-")

REPO = Path(__file__).resolve().parents[1]
REAL_HE = REPO.parent / "shared" / "data" / "real-he"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def write_pyramid(path: Path, image: np.ndarray, n_levels: int = 3, tile: int = 64, mpp: float | None = None
                  ) -> Path:
    """A small pyramidal tiled RGB TIFF (subIFDs), the way scanners' exports look to tifffile.

    ``mpp`` (microns per pixel) is written as resolution tags in pixels per centimetre, as scanners do."""
    import tifffile

    res = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"} if mpp else {}
    with tifffile.TiffWriter(path) as tw:
        tw.write(image, tile=(tile, tile), subifds=n_levels - 1, photometric="rgb", compression="zlib", **res)
        lv = image
        for _ in range(n_levels - 1):
            lv = lv[::2, ::2]
            tw.write(lv, tile=(tile, tile), subfiletype=1, photometric="rgb", compression="zlib")
    return path


@pytest.fixture
def pyramid_tiff(tmp_path: Path, rng: np.random.Generator) -> Path:
    img = rng.integers(0, 255, size=(512, 384, 3), dtype=np.uint8)
    return write_pyramid(tmp_path / "slide.tif", img)
