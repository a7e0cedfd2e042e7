"""ops/stain.py: colour deconvolution against scikit-image, HED jitter (Tellez et al. 2018)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage.color import hed2rgb, rgb2hed

from napari_wsss.ops import stain
from ..._glas import require_glas

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


# -- stain statistics and the out-of-depth rule ---------------------------------------------------------------

def _generated(n: int = 12, size: int = 96) -> list[np.ndarray]:
    from napari_wsss.data.synthetic import generate_tile

    return [generate_tile(seed, size=size).image for seed in range(n)]


def _recolour(img: np.ndarray, factors: tuple[float, float, float]) -> np.ndarray:
    return stain.hed_to_rgb(stain.rgb_to_hed(img, clip=False) * np.float32(factors))


@pytest.fixture(scope="module")
def generated_stats() -> dict:
    stats = stain.stain_statistics(_generated())
    assert stats is not None
    return stats


def test_statistics_are_finite_and_describe_the_tissue(generated_stats: dict) -> None:
    s = generated_stats
    assert s["channels"] == ["H", "E", "R"] and s["n_images"] == 12 and s["n_pixels"] > 12 * 1024
    for key in ("mean", "pixel_std", "image_mean_std"):
        assert len(s[key]) == 3 and np.all(np.isfinite(s[key])) and min(s[key]) >= 0
    assert s["mean"][0] > 0.1 and s["mean"][1] > 0.1  # an H&E image holds both stains
    assert np.all(np.array(s["image_mean_std"]) <= np.array(s["pixel_std"]))


def test_glass_has_no_statistics() -> None:
    glass = np.full((64, 64, 3), 240, np.uint8)
    assert stain.image_stain_means(glass) is None and stain.stain_statistics([glass, glass]) is None
    stats = {"mean": [0.4, 0.5, 0.2], "pixel_std": [0.3, 0.3, 0.1], "image_mean_std": [0.05, 0.05, 0.03]}
    assert stain.stain_shift(glass, stats) is None and stain.out_of_depth(glass, stats) is None


def test_statistics_pool_the_pixels_of_all_images() -> None:
    a, b = _he_tile(0), _he_tile(1, size=96)
    both = stain.stain_statistics([a, b])
    pix = np.concatenate([stain.rgb_to_hed(im[stain.tissue_mask(im)]) for im in (a, b)])
    np.testing.assert_allclose(both["mean"], pix.mean(0), atol=1e-4)
    np.testing.assert_allclose(both["pixel_std"], pix.std(0), atol=1e-4)


def test_training_images_and_light_jitter_are_in_range(generated_stats: dict) -> None:
    rng = np.random.default_rng(0)
    for img in _generated(12) + _generated(24)[12:]:  # its own tiles and new tiles of the same generator
        assert stain.out_of_depth(img, generated_stats) is None
        assert stain.out_of_depth(stain.hed_jitter(img, rng, 0.05, 0.05), generated_stats) is None


@pytest.mark.parametrize("factors, channel", [((3.0, 1.0, 1.0), "H +"), ((1.0, 4.0, 1.0), "E +"),
                                              ((1.0, 1.0, 4.0), "R +")])
def test_strongly_shifted_stain_is_out_of_depth(generated_stats: dict, factors, channel) -> None:
    flagged = [stain.out_of_depth(_recolour(img, factors), generated_stats) for img in _generated(6)]
    assert all(r is not None and channel in r for r in flagged), flagged


def test_models_without_statistics_skip_the_check() -> None:
    img = _recolour(_generated(1)[0], (3.0, 3.0, 1.0))
    assert stain.out_of_depth(img, None) is None and stain.out_of_depth(img, {}) is None


def test_warning_is_one_line_naming_images_and_advice() -> None:
    msg = stain.out_of_depth_message([("a.png", "H +4.0 spreads"), ("b.png", "E -3.5 spreads")], 5, "m1")
    assert msg.startswith("WARNING:") and "\n" not in msg
    assert "2 of 5 images are stained unlike the images m1 was trained on; first a.png: much" in msg
    assert "fine-tune" in msg
    # in a pathologist's words, the number kept: no channel letters, no "spreads"
    assert "much more haematoxylin (the blue-purple nuclear stain) (4.0 x the usual variation" in msg
    assert "eosin" not in msg and "spreads" not in msg  # the first image's reason only
    assert stain.plain_reason("R -6.6 spreads, E +3.1 spreads").startswith("much less colour that is neither")
    assert " and much more eosin" in stain.plain_reason("R -6.6 spreads, E +3.1 spreads")


def test_glas_statistics_are_finite_and_differ_from_generated_tiles(generated_stats: dict) -> None:
    from PIL import Image

    root = Path(__file__).resolve().parents[4] / "shared" / "data" / "glas" / "train" / "images"
    if not root.is_dir():
        require_glas(root)
    images = [np.asarray(Image.open(root / f"train_{i}.png").convert("RGB")) for i in (1, 5, 10, 20, 40, 60)]
    glas = stain.stain_statistics(images)
    assert glas is not None and glas["n_images"] == 6
    assert all(np.all(np.isfinite(glas[k])) for k in ("mean", "pixel_std", "image_mean_std"))
    # the generator's colours are not a colon lab's: the mean stains differ by well over an image-to-image spread
    assert np.abs(np.subtract(glas["mean"], generated_stats["mean"])).max() > 0.15
    shifts = [stain.stain_shift(img, generated_stats) for img in images]
    assert all(z is not None and np.all(np.isfinite(z)) for z in shifts)
    assert max(np.abs(z).max() for z in shifts) > stain.OUT_OF_DEPTH_Z
