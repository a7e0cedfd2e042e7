"""Real H&E tissue (shared/data/real-he): the data layer reads it and the shipped model segments it sensibly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REAL_HE

pytestmark = pytest.mark.skipif(
    not REAL_HE.is_dir(),
    reason=f"the real H&E reference tiles are not beside the project ({REAL_HE}); they live in shared/ only",
)


def _real_tiles() -> list[Path]:
    return sorted((REAL_HE / "miccai2015").glob("*.png")) + sorted((REAL_HE / "gbm40").glob("*.tif"))


def test_real_tiles_read_as_rgb() -> None:
    from napari_wsss.data.tiles import read_rgb

    files = _real_tiles()
    assert len(files) >= 8
    for f in files:
        img = read_rgb(f)  # MICCAI PNGs carry an opaque alpha channel: it must be dropped, not refused
        assert img.ndim == 3 and img.shape[-1] == 3 and img.dtype == np.uint8, f


def test_shipped_model_segments_real_tissue() -> None:
    from napari_wsss.classes import LUAD_HISTOSEG
    from napari_wsss.data.tiles import read_rgb
    from napari_wsss.inference.segmenter import load_segmenter
    from napari_wsss.resources import default_model_dir

    seg = load_segmenter(default_model_dir(), "cpu")
    img = read_rgb(REAL_HE / "gbm40" / "01.tif")
    pred = seg.predict(img[None])
    cm = pred.class_map[0]
    assert cm.shape == img.shape[:2]
    assert set(np.unique(cm).tolist()) <= set(range(LUAD_HISTOSEG.n_classes))
    # a densely cellular tile: almost all of it is tissue, so almost nothing may be called glass
    assert (cm == LUAD_HISTOSEG.background_index).mean() < 0.05
    np.testing.assert_allclose(pred.probs[0].sum(0), 1.0, atol=1e-4)
