"""Tiny annotation projects (tiles and a slide) with predictions, corrections and statuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_wsss.classes import LUAD_HISTOSEG
from napari_wsss.store import Project, region_key
from tests.conftest import write_pyramid


def blob_mask(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A class map with a few rectangles and a disk (holes and touching classes included)."""
    from skimage.draw import disk

    cm = np.full(shape, LUAD_HISTOSEG.background_index, np.uint8)
    h, w = shape
    cm[h // 8: h // 2, w // 8: 3 * w // 4] = 0
    cm[h // 4: h // 3, w // 4: w // 3] = 1  # a hole in class 0
    rr, cc = disk((3 * h // 4, 3 * w // 4), min(h, w) // 6, shape=shape)
    cm[rr, cc] = int(rng.integers(2, 4))
    return cm


@pytest.fixture
def tile_project(tmp_path: Path, rng: np.random.Generator) -> Project:
    """Three 48x40 tiles: one accepted, one corrected, one unreviewed."""
    folder = tmp_path / "tiles"
    folder.mkdir()
    project = Project.open(folder, LUAD_HISTOSEG)
    for i, status in enumerate(["accepted", "corrected", "unreviewed"]):
        name = f"t{i}-[1 0 0 1]"
        img = rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)
        Image.fromarray(img).save(folder / f"{name}.png")
        pred = blob_mask(rng, (48, 40))
        project.register([{"key": name, "image": f"{name}.png"}])
        project.save_prediction(name, pred, "v1")
        if status == "corrected":
            corr = pred.copy()
            corr[:8, :8] = 2
            project.save_correction(name, corr, corr != pred)
        elif status == "accepted":
            project.set_status(name, "accepted")
    return project


@pytest.fixture
def slide_project(tmp_path: Path, rng: np.random.Generator) -> Project:
    """A 128x96 pyramidal slide (0.5 um/px) with two regions reviewed at level 1 (64x64 and 32x32 level-0 px)."""
    img = rng.integers(0, 255, (128, 96, 3), dtype=np.uint8)
    slide = write_pyramid(tmp_path / "slide.tif", img, n_levels=2, tile=16, mpp=0.5)
    project = Project.open(slide, LUAD_HISTOSEG)
    for (y0, x0, y1, x1), status in [((0, 0, 64, 64), "accepted"), ((64, 32, 96, 64), "corrected")]:
        key = region_key(y0, x0, y1, x1, 1)
        cm = blob_mask(rng, ((y1 - y0) // 2, (x1 - x0) // 2))
        project.save_prediction(key, cm, "v2")
        if status == "corrected":
            corr = cm.copy()
            corr[-4:, -4:] = 1
            project.save_correction(key, corr, corr != cm)
        else:
            project.set_status(key, status)
    return project
