"""Segment images larger than a tile: overlapping windows, batched, blended back together.

Windows overlap by ``overlap`` pixels and are blended with a linear ramp so no seam appears at window
borders. Windows that are all white glass skip the model. Works on numpy or dask arrays (only the windows
are read), so a field of view of a slide level never has to be loaded twice.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import numpy as np

from ..events import Cancelled, Progress, StopFlag, never_stop, run_to_end
from .segmenter import Prediction, Segmenter

WINDOW_PIXELS = 2048 * 2048  # larger images are segmented in overlapping windows (bounded memory)


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    """Start offsets of windows of size ``window`` covering ``[0, length)`` with at least ``overlap`` overlap."""
    if length <= window:
        return [0]
    step = max(1, window - overlap)
    starts = list(range(0, length - window, step))
    starts.append(length - window)
    return starts


def iter_windows(shape: tuple[int, int], window: int, overlap: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(y0, x0, y1, x1)`` windows (end-exclusive) covering an ``(H, W)`` plane."""
    h, w = shape
    for y0 in window_starts(h, window, overlap):
        for x0 in window_starts(w, window, overlap):
            yield y0, x0, min(h, y0 + window), min(w, x0 + window)


def blank_windows(image: np.ndarray, window: int = 512, overlap: int = 64) -> np.ndarray:
    """(H, W) bool: pixels inside a ``segment_image`` window that is all white glass (the windows it never shows the
    model). The viewer predicts a tile whole and then makes these background, so a blank tile or a glass margin
    stays glass under a model without glass detection (``sshr-glas``), as it did when the viewer windowed."""
    from ..data.tiles import is_background

    image = np.asarray(image)
    out = np.zeros(image.shape[:2], bool)
    for y0, x0, y1, x1 in iter_windows(image.shape[:2], window, overlap):
        if is_background(image[y0:y1, x0:x1]).all():
            out[y0:y1, x0:x1] = True
    return out


def _ramp(h: int, w: int, overlap: int) -> np.ndarray:
    """(h, w) float32 blending weights: 1 inside, falling linearly towards the window's edges."""
    if overlap <= 0:
        return np.ones((h, w), np.float32)

    def edge(n: int) -> np.ndarray:
        r = np.minimum(np.arange(n) + 1, np.arange(n)[::-1] + 1).astype(np.float32)
        return np.clip(r / overlap, 1e-3, 1.0)

    return np.outer(edge(h), edge(w))


def segment_image(
    segmenter: Segmenter,
    image: Any,
    window: int = 512,
    overlap: int = 64,
    batch_size: int = 4,
    skip_blank: bool = True,
    should_stop: StopFlag = never_stop,
) -> Generator[Progress, None, Prediction]:
    """Segment an ``(H, W, 3)`` uint8 image (numpy or dask) of any size.

    Returns:
        ``Prediction`` with ``class_map`` (1, H, W) uint8 and ``probs`` (1, K+1, H, W) float32.
    Raises:
        Cancelled: when ``should_stop()`` turns true between batches.
    """
    from ..data.tiles import as_rgb_uint8, is_background

    h, w = int(image.shape[0]), int(image.shape[1])
    k1 = segmenter.card.class_schema.n_classes
    bg = k1 - 1
    acc = np.zeros((k1, h, w), np.float32)
    wsum = np.zeros((h, w), np.float32)
    windows = list(iter_windows((h, w), window, overlap))
    done = 0
    for i in range(0, len(windows), batch_size):
        if should_stop():
            raise Cancelled("segmentation cancelled")
        batch = windows[i : i + batch_size]
        crops = [as_rgb_uint8(np.asarray(image[y0:y1, x0:x1]), "image window") for y0, x0, y1, x1 in batch]
        todo = [j for j, c in enumerate(crops) if not (skip_blank and is_background(c).all())]
        # Windows at the image's edge may be smaller: predict those one by one, the rest as a batch.
        shapes = {crops[j].shape for j in todo}
        preds: dict[int, np.ndarray] = {}
        if len(shapes) == 1 and todo:
            out = segmenter.predict(np.stack([crops[j] for j in todo]), batch_size=batch_size)
            preds = {j: out.probs[n] for n, j in enumerate(todo)}
        else:
            for j in todo:
                preds[j] = segmenter.predict(crops[j][None], batch_size=1).probs[0]
        for j, (y0, x0, y1, x1) in enumerate(batch):
            wgt = _ramp(y1 - y0, x1 - x0, overlap if (h > window or w > window) else 0)
            if j in preds:
                acc[:, y0:y1, x0:x1] += preds[j] * wgt
            else:
                acc[bg, y0:y1, x0:x1] += wgt
            wsum[y0:y1, x0:x1] += wgt
        done += len(batch)
        yield Progress(done, len(windows), "segmenting windows")
    probs = acc / np.maximum(wsum, 1e-6)
    return Prediction(probs.argmax(0).astype(np.uint8)[None], probs[None])


def predict_image(segmenter: Segmenter, image: np.ndarray, *, batch_size: int = 4,
                  should_stop: StopFlag = never_stop) -> Prediction:
    """One ``(H, W, 3)`` uint8 tile of any size as the CLI predicts it: whole (``segmenter.predict``, rescaled
    by the card's working scale) up to :data:`WINDOW_PIXELS`, in blended windows beyond, so memory stays bounded.

    Returns: ``Prediction`` with ``class_map`` (1, H, W) uint8 and ``probs`` (1, K+1, H, W) float32.
    """
    if int(image.shape[0]) * int(image.shape[1]) <= WINDOW_PIXELS:
        return segmenter.predict(np.asarray(image)[None], batch_size=1)
    return run_to_end(segment_image(segmenter, image, batch_size=batch_size, should_stop=should_stop))
