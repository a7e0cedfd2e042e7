"""ops/stain_norm.py: Macenko reference and normalisation (torchstain), falling back on glass, never crashing."""

from __future__ import annotations

import numpy as np
import pytest

from napari_wsss.ops import stain
from napari_wsss.ops.stain_norm import MacenkoNormaliser, fit_macenko_reference


def _generated(seeds: range, size: int = 128) -> list[np.ndarray]:
    from napari_wsss.data.synthetic import generate_tile

    return [generate_tile(s, size=size).image for s in seeds]


@pytest.fixture(scope="module")
def reference() -> dict:
    ref = fit_macenko_reference(_generated(range(8)))
    assert ref is not None
    return ref


def test_reference_is_a_stain_matrix(reference: dict) -> None:
    he, maxc = np.array(reference["HERef"]), np.array(reference["maxCRef"])
    assert he.shape == (3, 2) and maxc.shape == (2,) and np.all(np.isfinite(he)) and np.all(maxc > 0)
    np.testing.assert_allclose(np.linalg.norm(he, axis=0), 1, atol=1e-3)  # unit OD directions


def test_normalising_brings_a_recoloured_tile_back(reference: dict) -> None:
    stats = stain.stain_statistics(_generated(range(8)))
    norm = MacenkoNormaliser(reference)
    for img in _generated(range(20, 24)):
        shifted = stain.hed_to_rgb(stain.rgb_to_hed(img, clip=False) * np.float32([3, 1, 1]))
        out = norm(shifted)
        assert out.shape == img.shape and out.dtype == np.uint8
        before, after = np.abs(stain.stain_shift(shifted, stats)), np.abs(stain.stain_shift(out, stats))
        assert after[0] < before[0] / 2, (before, after)
    assert norm.fallbacks == 0


def test_mostly_glass_tiles_pass_unchanged(reference: dict) -> None:
    norm = MacenkoNormaliser(reference)
    glass = np.full((128, 128, 3), 242, np.uint8)
    assert norm(glass) is glass
    speck = glass.copy()
    speck[:10, :10] = (120, 50, 140)  # 100 stained pixels: too few to estimate stain vectors
    assert norm(speck) is speck
    black = np.zeros((64, 64, 3), np.uint8)  # degenerate: whatever Macenko makes of it, no exception
    assert norm(black).shape == black.shape
    assert norm.fallbacks >= 2


def test_no_reference_from_glass_and_bad_references_are_refused() -> None:
    assert fit_macenko_reference([np.full((64, 64, 3), 245, np.uint8)]) is None
    assert fit_macenko_reference([]) is None
    with pytest.raises(ValueError, match="HERef"):
        MacenkoNormaliser({"HERef": [[1, 0]], "maxCRef": [1, 1]})
