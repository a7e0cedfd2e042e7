"""Evaluate a segmenter on a val/test folder: ``img/`` + ``mask/`` (LUAD-HistoSeg, BCSS-WSSS) or ``images/`` +
``masks/`` (GlaS), images of any size, masks read through the schema (``data.tiles.read_mask``).

Metrics follow :mod:`napari_wsss.ops.metrics`: per-class IoU and Dice, mIoU, FwIoU, pixel accuracy over the
tissue classes (ground-truth background ignored), background IoU and the confusion matrix. A class the masks
do not annotate is scored as the class its schema names (``scored_as``): for GlaS predicted glass counts as
non-gland, so the mIoU is the mean of gland and non-gland IoU, as the GlaS papers report it.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from .classes import ClassSchema
from .events import Cancelled, Progress, StopFlag, never_stop, run_to_end
from .ops.metrics import confusion_matrix, scores_from_confusion


def evaluate_folder(segmenter: Any, folder: str | Path, *, schema: ClassSchema | None = None, batch_size: int = 8,
                    should_stop: StopFlag = never_stop) -> Generator[Progress, None, dict]:
    """Predict every tile of ``folder/img`` and score it against ``folder/mask``.

    Args:
        segmenter: anything with ``.card`` and ``.predict((N, H, W, 3) uint8) -> Prediction``.
        schema: class schema of the masks (default: the model's); must match the model's classes.
    Returns (generator value):
        metrics dict (``mIoU``, ``FwIoU``, ``mDice``, ``pixel_accuracy``, ``IoU``, ``Dice``,
        ``background_IoU``, ``confusion``, ``n_tiles``, ``seconds``).
    """
    from .data.tiles import list_mask_pairs, read_mask, read_rgb
    from .models.card import check_schema

    model_schema = segmenter.card.class_schema
    schema = schema or model_schema
    check_schema(segmenter.card, schema)
    pairs = list_mask_pairs(folder)
    n_cls = schema.n_classes
    scored = schema.scored_lookup()  # class -> class it is scored as (identity for LUAD/BCSS)
    cm = np.zeros((n_cls, n_cls), dtype=np.int64)
    t0 = time.perf_counter()
    i = 0
    while i < len(pairs):
        if should_stop():
            raise Cancelled("evaluation cancelled")
        images = [read_rgb(pairs[i].image)]
        # Batch consecutive tiles of the same size (real test sets mix sizes).
        while len(images) < batch_size and i + len(images) < len(pairs):
            nxt = read_rgb(pairs[i + len(images)].image)
            if nxt.shape != images[0].shape:
                break
            images.append(nxt)
        pred = segmenter.predict(np.stack(images), batch_size=batch_size)
        for j, cls_map in enumerate(pred.class_map):
            gt = read_mask(pairs[i + j].mask, schema)
            if gt.shape != cls_map.shape:
                raise ValueError(f"{pairs[i + j].mask}: mask is {gt.shape}, its image {cls_map.shape}; "
                                 "masks must have the image's size.")
            cm += confusion_matrix(scored[cls_map], scored[gt], n_cls)
        i += len(images)
        yield Progress(i, len(pairs), f"evaluating {Path(folder).name}")
    scores = scores_from_confusion(cm, schema.names)
    bg = schema.classes[-1]
    if bg.scored_as:  # never in the scored maps: no IoU of its own (None, not NaN: the JSON stays strict)
        scores["background_IoU"] = None
    remapped = {c.name: c.scored_as for c in schema.classes if c.scored_as}
    if remapped:
        scores["scored_as"] = remapped
        for key in ("IoU", "Dice"):
            scores[key] = {k: v for k, v in scores[key].items() if k not in remapped}
    scores["n_tiles"] = len(pairs)
    scores["seconds"] = round(time.perf_counter() - t0, 2)
    return scores


def evaluate(model: Any, folder: str | Path, *, device: Any = None, batch_size: int = 8) -> dict:
    """Convenience: ``model`` is a Segmenter or a model version folder; returns the metrics dict."""
    if isinstance(model, (str, Path)):
        from .inference.segmenter import load_segmenter

        model = load_segmenter(model, device)
    return run_to_end(evaluate_folder(model, folder, batch_size=batch_size))


def format_metrics(scores: dict, title: str = "") -> str:
    """A short human-readable table of a metrics dict."""
    lines = [title] if title else []
    bg = scores.get("background_IoU")
    lines.append(f"mIoU {scores['mIoU']:.4f}  FwIoU {scores['FwIoU']:.4f}  mDice {scores['mDice']:.4f}  "
                 f"pixel acc {scores['pixel_accuracy']:.4f}  "
                 + (f"background IoU {bg:.4f}" if bg is not None else
                    "background scored as " + ", ".join(f"{k} -> {v}" for k, v in scores.get("scored_as", {}).items())))
    lines.append("  ".join(f"{k} {v:.4f}" for k, v in scores["IoU"].items()))
    return "\n".join(lines)
