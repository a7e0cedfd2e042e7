"""Which tile next: order tiles by what a label on them would teach the model most, without proposing ten
near-identical tiles in a row.

Usefulness of a tile (higher first), from the current model's class maps:

* **uncertainty**: mean per-pixel entropy of the class probabilities, normalised by ``log(K + 1)`` to [0, 1]
  (or ``margin``: 1 - mean gap between the two most probable classes);
* **disagreement** with tags the tile already has (the Review widget's unreviewed, tagged tiles): the share of
  classes whose image-level presence (a class covering at least ``min_fraction`` of the tissue) differs from
  the tag.

Diversity: greedy selection (maximal marginal relevance). Each step takes the tile with the highest
``score - diversity * max_similarity(tile, already chosen)``, with a Gaussian similarity over a cheap feature
vector (colour mean / spread and the predicted class shares, standardised), its width the median squared distance
between tiles times ``BANDWIDTH``. A cluster of look-alike tiles then gives its best member early and its second only
after the best of every other kind (unless it is ``diversity`` more useful, on scores rescaled to [0, 1]).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..events import Cancelled, Progress, StopFlag, never_stop

BANDWIDTH = 0.25  # similarity width, as a share of the median squared distance: typical pairs ~exp(-4) alike
MIN_PRESENCE = 0.02  # share of a tile a class must cover to count as present (as label_from_mask)


def entropy_uncertainty(probs: np.ndarray) -> float:
    """Mean pixel entropy of ``probs`` ((C, H, W) scores, any scale; renormalised per pixel), in [0, 1]."""
    p = np.clip(np.asarray(probs, np.float64), 1e-8, None)
    p = p / p.sum(0, keepdims=True)
    h = -(p * np.log(p)).sum(0)
    return float(h.mean() / np.log(p.shape[0]))


def margin_uncertainty(probs: np.ndarray) -> float:
    """1 - mean gap between the two highest class scores per pixel ((C, H, W), renormalised), in [0, 1]."""
    p = np.clip(np.asarray(probs, np.float64), 1e-8, None)
    p = p / p.sum(0, keepdims=True)
    top = np.sort(p, axis=0)
    return float(1.0 - (top[-1] - top[-2]).mean())


def presence(class_map: np.ndarray, n_foreground: int, min_fraction: float = MIN_PRESENCE) -> np.ndarray:
    """(n_foreground,) int64 image-level label of a class map: classes covering >= ``min_fraction`` of it."""
    cm = np.asarray(class_map)
    counts = np.bincount(cm.ravel(), minlength=n_foreground + 1)[:n_foreground]
    return (counts >= min_fraction * max(cm.size, 1)).astype(np.int64)


def tag_disagreement(predicted: np.ndarray, tags: np.ndarray | None) -> float:
    """Share of classes where the predicted presence differs from the tag (0 for an untagged tile)."""
    if tags is None:
        return 0.0
    return float(np.mean(np.asarray(predicted) != np.asarray(tags)))


def tile_features(image: np.ndarray, probs: np.ndarray | None = None) -> np.ndarray:
    """Cheap description of a tile for the diversity term: RGB mean and spread, plus mean class scores."""
    img = np.asarray(image, np.float32)[::4, ::4].reshape(-1, 3) / 255.0
    parts = [img.mean(0), img.std(0)]
    if probs is not None:
        p = np.asarray(probs, np.float32)
        parts.append(p.reshape(p.shape[0], -1).mean(1))
    return np.concatenate(parts)


def select_diverse(scores: Sequence[float], features: np.ndarray, diversity: float = 0.5,
                   k: int | None = None) -> list[int]:
    """Greedy order of ``len(scores)`` tiles (or the first ``k``): high score first, look-alikes spread out.

    Args:
        scores: usefulness per tile (any scale; rescaled to [0, 1]).
        features: (N, D) per-tile features (standardised here).
        diversity: weight of the similarity penalty (0: plain sort by score).
    """
    s = np.asarray(scores, np.float64)
    n = len(s)
    if n == 0:
        return []
    k = n if k is None else min(k, n)
    span = s.max() - s.min()
    s = (s - s.min()) / span if span > 0 else np.zeros(n)
    f = np.asarray(features, np.float64).reshape(n, -1)
    f = (f - f.mean(0)) / np.where(f.std(0) > 0, f.std(0), 1.0)
    d2 = ((f[:, None, :] - f[None, :, :]) ** 2).sum(-1)
    off = d2[~np.eye(n, dtype=bool)]
    width = BANDWIDTH * float(np.median(off)) if off.size and np.median(off) > 0 else 1.0
    sim = np.exp(-d2 / width)
    chosen: list[int] = []
    closest = np.zeros(n)  # max similarity to anything chosen so far
    left = np.ones(n, bool)
    for _ in range(k):
        gain = np.where(left, s - diversity * closest, -np.inf)
        i = int(np.argmax(gain))
        chosen.append(i)
        left[i] = False
        closest = np.maximum(closest, sim[i])
    return chosen


def usefulness(probs: np.ndarray, class_map: np.ndarray, tags: np.ndarray | None, n_foreground: int,
               kind: str = "entropy", disagreement_weight: float = 1.0) -> float:
    """One tile's score: uncertainty (``entropy`` or ``margin``) plus weighted disagreement with its tags."""
    if kind not in ("entropy", "margin"):
        raise ValueError(f"Unknown uncertainty {kind!r}; expected 'entropy' or 'margin'.")
    u = entropy_uncertainty(probs) if kind == "entropy" else margin_uncertainty(probs)
    return u + disagreement_weight * tag_disagreement(presence(class_map, n_foreground), tags)


def rank_tiles(segmenter: Any, tiles: Sequence[Any], read: Any, tags: Sequence[np.ndarray | None] | None = None, *,
               diversity: float = 0.5, kind: str = "entropy", batch_size: int = 8,
               should_stop: StopFlag = never_stop) -> Generator[Progress, None, list[int]]:
    """Predict every tile once and return their indices, most useful first (see the module docstring).

    Args:
        segmenter: a loaded model version (``inference.segmenter.load_segmenter``).
        tiles: anything ``read`` turns into an (H, W, 3) uint8 image.
        tags: per tile, its tag vector (n_foreground,) or None.
    """
    n_fg = segmenter.card.class_schema.n_foreground
    scores, feats = [], []
    for start in range(0, len(tiles), batch_size):
        if should_stop():
            raise Cancelled("ordering the tiles cancelled")
        images = [read(t) for t in tiles[start:start + batch_size]]
        for j, img in enumerate(images):  # one at a time: tiles of a folder may differ in size
            pred = segmenter.predict(img[None], batch_size=1)
            tag = tags[start + j] if tags is not None else None
            scores.append(usefulness(pred.probs[0], pred.class_map[0], tag, n_fg, kind))
            feats.append(tile_features(img, pred.probs[0]))
        yield Progress(min(len(tiles), start + batch_size), len(tiles), "ordering tiles by the model")
    return select_diverse(scores, np.stack(feats) if feats else np.zeros((0, 1)), diversity)


def rank_tiles_job(model_dir: str | Path, tiles: Sequence[Any], source: str | Path,
                   tags: dict[str, list[str]] | None = None, *, should_stop: StopFlag = never_stop,
                   diversity: float = 0.5) -> Generator[Progress, None, list[int]]:
    """The Tag/Review widgets' worker: rank ``TagTile``s of ``source`` with the model version ``model_dir``."""
    from ..data.slide import is_slide_path, open_slide
    from ..inference.segmenter import load_segmenter
    from .tiles import read_tile

    seg = load_segmenter(model_dir)
    schema = seg.card.class_schema
    vectors = None
    if tags:
        vectors = [None if t.key not in tags else
                   np.array([int(c.name in tags[t.key]) for c in schema.foreground], np.int64) for t in tiles]
    slide = open_slide(source) if is_slide_path(source) else None
    try:
        return (yield from rank_tiles(seg, tiles, lambda t: read_tile(t, source, slide), vectors,
                                      diversity=diversity, should_stop=should_stop))
    finally:
        if slide is not None:
            slide.close()
