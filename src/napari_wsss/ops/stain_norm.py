"""Optional Macenko stain normalisation at inference (torchstain's numpy implementation), towards a reference
fitted on the training data (stored in the card at training time) or on an image the user gives.

Why optional: a model trained with stain jitter usually needs none, and normalisation can hurt when the
reference is poor; when an image is stained far from the training data it is the cheapest thing to try.
Macenko's stain-vector estimate needs tissue, so tiles that are mostly glass (or that make it fail in any way)
are returned unchanged: normalisation never crashes a prediction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .stain import MIN_TISSUE_PIXELS, tissue_mask

IO, ALPHA, BETA = 240, 1, 0.15  # torchstain's defaults: transmitted light, angle percentile, OD of glass
MAX_REFERENCE_PIXELS = 1 << 20
PIXELS_PER_IMAGE = 8192


def _normaliser() -> Any:
    from torchstain.numpy.normalizers import NumpyMacenkoNormalizer

    return NumpyMacenkoNormalizer()


def tissue_pixels(rgb: np.ndarray, rng: np.random.Generator, n: int = PIXELS_PER_IMAGE) -> np.ndarray:
    """Up to ``n`` tissue pixels (P, 3) uint8 of an (H, W, 3) image, drawn without replacement."""
    px = np.asarray(rgb)[tissue_mask(rgb)]
    return px if len(px) <= n else px[rng.choice(len(px), n, replace=False)]


def fit_macenko_reference(images: Iterable[np.ndarray], seed: int = 0) -> dict[str, list] | None:
    """Macenko reference (stain matrix ``HERef`` (3, 2) and 99th-percentile concentrations ``maxCRef`` (2,))
    of the tissue of ``images`` ((H, W, 3) uint8 each, pooled); None when they hold too little tissue or the
    fit fails. JSON-ready: what a card's ``stain["macenko"]`` holds."""
    rng = np.random.default_rng(seed)
    pixels = [tissue_pixels(img, rng) for img in images]
    pool = np.concatenate(pixels) if pixels else np.zeros((0, 3), np.uint8)
    if len(pool) < MIN_TISSUE_PIXELS:
        return None
    if len(pool) > MAX_REFERENCE_PIXELS:
        pool = pool[rng.choice(len(pool), MAX_REFERENCE_PIXELS, replace=False)]
    norm = _normaliser()
    try:
        with np.errstate(all="ignore"):
            norm.fit(pool[None], Io=IO, alpha=ALPHA, beta=BETA)
    except (ValueError, np.linalg.LinAlgError, IndexError):
        return None
    if not (np.all(np.isfinite(norm.HERef)) and np.all(np.isfinite(norm.maxCRef)) and np.all(norm.maxCRef > 0)):
        return None
    return {"HERef": np.round(norm.HERef, 6).tolist(), "maxCRef": np.round(norm.maxCRef, 6).tolist()}


class MacenkoNormaliser:
    """Callable: (H, W, 3) uint8 tile -> the tile in the reference's stain, or the tile itself when it holds
    fewer than ``min_tissue`` tissue pixels or Macenko fails on it (counted in ``fallbacks``)."""

    def __init__(self, reference: dict[str, Any], min_tissue: int = MIN_TISSUE_PIXELS) -> None:
        he, maxc = np.asarray(reference["HERef"], float), np.asarray(reference["maxCRef"], float)
        if he.shape != (3, 2) or maxc.shape != (2,):
            raise ValueError(f"Macenko reference: expected HERef (3, 2) and maxCRef (2,), got {he.shape} and "
                             f"{maxc.shape}; refit it (retrain, or give a reference image).")
        self._norm = _normaliser()
        self._norm.HERef, self._norm.maxCRef = he, maxc
        self.min_tissue = min_tissue
        self.fallbacks = 0

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        rgb = np.asarray(rgb)
        # Macenko's own glass rule (OD < BETA in a channel) decides what its fit sees
        od = -np.log((rgb.reshape(-1, 3).astype(np.float32) + 1) / IO)
        if int((od >= BETA).all(1).sum()) < self.min_tissue:
            self.fallbacks += 1
            return rgb
        try:
            with np.errstate(all="ignore"):
                out, _, _ = self._norm.normalize(rgb, Io=IO, alpha=ALPHA, beta=BETA, stains=False)
        except (ValueError, np.linalg.LinAlgError, IndexError):
            self.fallbacks += 1
            return rgb
        if out.shape != rgb.shape:
            self.fallbacks += 1
            return rgb
        return out
