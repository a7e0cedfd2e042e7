"""H&E stain space: colour deconvolution, HED jitter (training augmentation) and stain statistics that tell
inference when an image is stained unlike a model's training data.

Stain concentrations are in optical-density (OD) units, ``OD = -ln(I / 255)``, unmixed with scikit-image's
Ruifrok-Johnston matrices (``skimage.color.hed_from_rgb``): channel 0 haematoxylin, 1 eosin, 2 the residual
(DAB in skimage's naming: whatever H and E do not explain). These are the units of Tellez et al. 2018 (skimage's
``rgb2hed`` before 0.19); current ``rgb2hed`` divides by ``-ln(1e-6)`` (about 13.8), which changes nothing but
the scale. The conversion runs through a 256-entry lookup table and one 3x3 product per pixel, in float32 (the
unit tests check it agrees with skimage): jittering a 224 px tile takes about 1.3 ms on one CPU core, against
2.6 ms for ``rgb2hed`` + ``hed2rgb`` alone, and 0.4 ms at the 112 px training size. torchstain's Macenko
augmentor fits stain vectors per tile (eigen-decomposition, percentiles): about 28-37 ms per 224 px tile.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

CHANNELS = ("H", "E", "R")  # haematoxylin, eosin, residual
TISSUE_GREY = 200  # grey level above which a pixel is glass (the threshold of data.tiles.is_background)
MIN_TISSUE_PIXELS = 1024  # fewer tissue pixels than this: no statistics (a tile of glass says nothing)
STATS_VERSION = 1

# "Out of depth" rule (see stain_shift): an image is flagged when the mean stain concentration of its tissue
# lies more than OUT_OF_DEPTH_Z spreads from the training images' mean in any channel. The spread is the
# standard deviation of the per-image means over the training images, floored at SPREAD_FLOOR_REL of the pixel
# spread and SPREAD_FLOOR_OD so that a training set of uniformly stained tiles (synthetic data) does not flag
# every image for a trivial difference. Calibrated on GlaS (statistics of 43 images, the other 42 held out) and
# on generated tiles (100 / 100): at 3 spreads 2-4 % of held-out images of the same data were flagged, at 4 none
# (nor after HED-light jitter); doubling the haematoxylin flags about half the GlaS images, generated tiles
# against GlaS statistics about half. Weakened stain is caught poorly (a mean cannot fall below 0: GlaS images
# at half the eosin are not flagged). The rule catches gross differences, quietly: a warning should mean
# something. A log-scale variant was tried and separated less (its spread is inflated by pale images).
OUT_OF_DEPTH_Z = 4.0
SPREAD_FLOOR_REL = 0.2
SPREAD_FLOOR_OD = 0.03

_GREY = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _matrices() -> tuple[np.ndarray, np.ndarray]:
    from skimage.color import hed_from_rgb, rgb_from_hed

    return hed_from_rgb.astype(np.float32), rgb_from_hed.astype(np.float32)


# -ln(v / 255) for every uint8 value, with skimage's floor of 1e-6 for v = 0
_OD_LUT = (-np.log(np.maximum(np.arange(256, dtype=np.float64) / 255.0, 1e-6))).astype(np.float32)


def rgb_to_hed(rgb: np.ndarray, clip: bool = True) -> np.ndarray:
    """(..., 3) uint8 RGB -> (..., 3) float32 H, E, residual concentrations in OD units.

    ``clip`` sets negative concentrations to 0 as ``skimage.color.rgb2hed`` does (what the statistics use);
    unclipped, the transform is exactly linear and :func:`hed_to_rgb` inverts it (what the jitter needs: unit
    factors then give back the image instead of tinting grey glass).
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.shape[-1] != 3:
        raise ValueError(f"rgb_to_hed: expected (..., 3) uint8 RGB, got {rgb.dtype} {rgb.shape}; convert the "
                         "image to 8-bit RGB first.")
    hed_from_rgb, _ = _matrices()
    hed = _OD_LUT[rgb] @ hed_from_rgb
    return np.maximum(hed, 0.0, out=hed) if clip else hed


def hed_to_rgb(hed: np.ndarray) -> np.ndarray:
    """(..., 3) float H, E, residual concentrations in OD units -> (..., 3) uint8 RGB (rounded, clipped)."""
    _, rgb_from_hed = _matrices()
    od = np.asarray(hed, dtype=np.float32) @ rgb_from_hed
    rgb = np.exp(-od, out=od)
    rgb *= 255.0
    rgb += 0.5
    return np.clip(rgb, 0, 255, out=rgb).astype(np.uint8)


def hed_jitter(rgb: np.ndarray, rng: np.random.Generator, scale: float, shift: float) -> np.ndarray:
    """Tellez et al. 2018 HED augmentation: per stain channel ``c' = alpha * c + beta`` with
    ``alpha ~ U(1 - scale, 1 + scale)`` and ``beta ~ U(-shift, shift)`` (OD units), drawn per image.

    Why: slides from another lab or scanner differ mostly in how much of each stain they hold, so training on
    such variation teaches the network to ignore it (HED-light: 0.05 / 0.05; HED-strong: 0.2 / 0.2).

    Args:
        rgb: (H, W, 3) or (N, H, W, 3) uint8.
        rng: draws 6 numbers per image (nothing when both ``scale`` and ``shift`` are 0).
    Returns:
        Same shape, uint8 (a new array; ``rgb`` itself when both are 0).
    """
    if scale < 0 or shift < 0:
        raise ValueError(f"hed_jitter: scale and shift must be >= 0, got {scale} and {shift}; 0 turns it off, "
                         "0.05 is HED-light, 0.2 HED-strong.")
    if scale == 0 and shift == 0:
        return rgb
    rgb = np.asarray(rgb)
    lead = rgb.shape[:-3]
    n = int(np.prod(lead)) if lead else 1
    u = rng.random((n, 2, 3), dtype=np.float32)  # per image: 3 scales then 3 shifts (a batch = images in turn)
    alpha = (1.0 - scale) + (2.0 * scale) * u[:, 0]
    beta = (2.0 * shift) * u[:, 1] - shift
    hed = rgb_to_hed(rgb, clip=False).reshape(n, -1, 3)
    hed *= alpha[:, None]
    hed += beta[:, None]
    return hed_to_rgb(hed).reshape(rgb.shape)


def tissue_mask(rgb: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) uint8 -> (..., H, W) bool: not glass (grey level <= TISSUE_GREY)."""
    return np.asarray(rgb, dtype=np.float32) @ _GREY <= TISSUE_GREY


def image_stain_means(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Per-channel mean and standard deviation (3,) of the tissue's H, E, residual OD, and the tissue pixel
    count, of one (H, W, 3) uint8 image; None when it holds fewer than MIN_TISSUE_PIXELS tissue pixels."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"Stain statistics need one (H, W, 3) RGB image, got shape {rgb.shape}.")
    tissue = tissue_mask(rgb)
    n = int(tissue.sum())
    if n < MIN_TISSUE_PIXELS:
        return None
    hed = rgb_to_hed(rgb[tissue])
    return hed.mean(0), hed.std(0), n


def stain_statistics(images: Iterable[np.ndarray]) -> dict[str, Any] | None:
    """Stain statistics of a training set, as a model card stores them (JSON-ready), or None without tissue.

    Keys: ``channels``; ``mean`` and ``pixel_std`` (3,) over all tissue pixels (glass excluded);
    ``image_mean_std`` (3,), the spread of the per-image means (how much stain varies between images); ``n_images`` (images with enough tissue) and ``n_pixels``.
    """
    means, stds, counts = [], [], []
    for img in images:
        s = image_stain_means(img)
        if s is not None:
            means.append(s[0])
            stds.append(s[1])
            counts.append(s[2])
    if not means:
        return None
    m, sd, w = np.array(means, np.float64), np.array(stds, np.float64), np.array(counts, np.float64)
    mean = (m * w[:, None]).sum(0) / w.sum()
    # pooled pixel variance: within-image variance plus the spread of the image means around the overall mean
    var = ((sd ** 2 + (m - mean) ** 2) * w[:, None]).sum(0) / w.sum()
    return {"version": STATS_VERSION, "channels": list(CHANNELS), "mean": _r(mean), "pixel_std": _r(np.sqrt(var)),
            "image_mean_std": _r(m.std(0)),
            "n_images": len(means), "n_pixels": int(w.sum())}


def _r(a: np.ndarray) -> list[float]:
    return [round(float(v), 5) for v in a]


def stain_shift(rgb: np.ndarray, stats: dict[str, Any]) -> np.ndarray | None:
    """Signed distance (3,) of an (H, W, 3) uint8 image's tissue stain means from the training means, in
    spreads (see OUT_OF_DEPTH_Z); None when the image holds too little tissue or ``stats`` lacks them."""
    if not stats or "mean" not in stats:
        return None
    s = image_stain_means(rgb)
    if s is None:
        return None
    spread = np.maximum.reduce([np.asarray(stats["image_mean_std"], np.float64),
                                SPREAD_FLOOR_REL * np.asarray(stats["pixel_std"], np.float64),
                                np.full(3, SPREAD_FLOOR_OD)])
    return (s[0] - np.asarray(stats["mean"], np.float64)) / spread


def out_of_depth(rgb: np.ndarray, stats: dict[str, Any] | None) -> str | None:
    """A short reason when an image's stain lies outside the training data's (e.g. ``"H +4.2 spreads"``), else
    None (also when ``stats`` is None or empty: models without statistics skip the check)."""
    z = stain_shift(rgb, stats) if stats else None
    if z is None or not np.all(np.isfinite(z)) or np.abs(z).max() <= OUT_OF_DEPTH_Z:
        return None
    return ", ".join(f"{c} {v:+.1f} spreads" for c, v in zip(CHANNELS, z) if abs(v) > OUT_OF_DEPTH_Z)


CLI_ADVICE = "correct a few tiles in napari (Review) and fine-tune (napari-wsss finetune), or try --stain-normalise"


# what each channel is, in a pathologist's words (the letters and "spreads" said nothing on their own: "the image:
# R +6.6 spreads; R residual colour ..." in two walk-throughs on real slides)
PLAIN_CHANNELS = {"H": "haematoxylin (the blue-purple nuclear stain)", "E": "eosin (the pink stain)",
                  "R": "colour that is neither haematoxylin nor eosin (ink, another stain or a colour cast)"}


def plain_reason(reason: str) -> str:
    """``"H +4.0 spreads, E -3.5 spreads"`` (``out_of_depth``) in words, its numbers kept."""
    parts = []
    for c, v in re.findall(r"([HER]) ([+-][0-9.]+) spreads", reason):
        parts.append(f"much {'more' if float(v) > 0 else 'less'} {PLAIN_CHANNELS[c]} ({abs(float(v)):.1f} x the "
                     "usual variation between its training images)")
    return " and ".join(parts) or reason


def out_of_depth_message(flagged: Sequence[tuple[str, str]], n_images: int, model: str,
                         advice: str = CLI_ADVICE) -> str:
    """One line for ``flagged`` [(image name, reason)] out of ``n_images``: what is wrong and what to do."""
    name, reason = flagged[0]
    if n_images > 1:
        which = (f"{len(flagged)} of {n_images} images {'is' if len(flagged) == 1 else 'are'} stained unlike the "
                 f"images {model} was trained on; first {name}")
    else:
        which = f"{name} is stained unlike the images {model} was trained on"
    return f"WARNING: {which}: {plain_reason(reason)}; the segmentation may be unreliable: {advice}."
