"""ops/stain.py: colour deconvolution against scikit-image, HED jitter (Tellez et al. 2018)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import hed2rgb, rgb2hed

from napari_wsss.ops import stain

_SK_SCALE = -np.log(1e-6)  # skimage >= 0.19 divides OD by this


def _he_tile(seed: int = 0, size: int = 64) -> np.ndarray:
    """An H&E-coloured (H, W, 3) uint8 tile: purple nuclei in pink stroma, a corner of glass."""
    rng = np.random.default_rng(seed)
    img = np.empty((size, size, 3), np.float32)
    img[:] = (225, 140, 180)
    yy, xx = np.mgrid[:size, :size]
    for cy, cx in rng.integers(8, size - 8, (6, 2)):
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < 25] = (90, 50, 140)
    img += rng.normal(0, 8, img.shape)
    img[: size // 4, : size // 4] = 246
    return np.clip(img, 0, 255).astype(np.uint8)


def test_deconvolution_matches_skimage() -> None:
    img = _he_tile()
    np.testing.assert_allclose(stain.rgb_to_hed(img), rgb2hed(img) * _SK_SCALE, atol=2e-4)
    hed = stain.rgb_to_hed(img) * np.float32([1.1, 0.9, 1.0]) + np.float32([0.03, -0.02, 0.0])
    ref = np.clip(hed2rgb(hed / _SK_SCALE) * 255 + 0.5, 0, 255).astype(np.uint8)
    diff = np.abs(stain.hed_to_rgb(hed).astype(int) - ref)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01  # float32 vs float64 rounding only


def test_unclipped_round_trip_keeps_the_image() -> None:
    img = _he_tile(1)
    assert np.abs(stain.hed_to_rgb(stain.rgb_to_hed(img, clip=False)).astype(int) - img).max() <= 1
    assert stain.rgb_to_hed(img).min() == 0 and stain.rgb_to_hed(img, clip=False).min() < 0


def test_rgb_to_hed_refuses_float_images() -> None:
    with pytest.raises(ValueError, match="uint8 RGB"):
        stain.rgb_to_hed(np.zeros((4, 4, 3), np.float32))


def test_jitter_off_returns_the_input_and_draws_nothing() -> None:
    img, rng = _he_tile(), np.random.default_rng(3)
    assert stain.hed_jitter(img, rng, 0.0, 0.0) is img
    assert rng.random() == np.random.default_rng(3).random()


def test_scale_only_multiplies_each_stain_within_bounds() -> None:
    img = _he_tile(2)
    out = stain.hed_jitter(img, np.random.default_rng(0), 0.3, 0.0)
    before, after = stain.rgb_to_hed(img, clip=False), stain.rgb_to_hed(out, clip=False)
    nuclei = before[..., 0] > 0.5  # strongly stained pixels: the ratio is not swamped by 8-bit rounding
    ratio = np.median(after[nuclei] / before[nuclei], axis=0)
    assert np.all(ratio[:2] > 0.7 - 0.02) and np.all(ratio[:2] < 1.3 + 0.02)
    assert abs(ratio[0] - 1) > 0.01  # it did change
    assert np.all(out[0, 0] >= 245)  # glass has no stain to scale: it stays white


def test_jitter_draws_per_image_and_is_reproducible() -> None:
    batch = np.stack([_he_tile(4)] * 3)
    out = stain.hed_jitter(batch, np.random.default_rng(7), 0.2, 0.2)
    assert out.shape == batch.shape and out.dtype == np.uint8
    means = out.reshape(3, -1, 3).mean(1)
    assert np.abs(means[0] - means[1]).max() > 1 and np.abs(means[1] - means[2]).max() > 1
    np.testing.assert_array_equal(out, stain.hed_jitter(batch, np.random.default_rng(7), 0.2, 0.2))
    one = stain.hed_jitter(batch[0], np.random.default_rng(7), 0.2, 0.2)  # same first draw as the batch's
    np.testing.assert_array_equal(one, out[0])


def test_shift_moves_the_mean_stain_by_at_most_shift() -> None:
    img = _he_tile(5)
    tissue = stain.tissue_mask(img)
    deltas = []
    for seed in range(20):
        out = stain.hed_jitter(img, np.random.default_rng(seed), 0.0, 0.05)
        deltas.append(stain.rgb_to_hed(out, clip=False)[tissue].mean(0)
                      - stain.rgb_to_hed(img, clip=False)[tissue].mean(0))
    deltas = np.array(deltas)
    assert np.abs(deltas[:, :2]).max() <= 0.05 + 0.01
    assert np.abs(deltas[:, :2]).max() > 0.02  # draws span the range


def test_negative_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="HED-light"):
        stain.hed_jitter(_he_tile(), np.random.default_rng(0), -0.1, 0.0)
