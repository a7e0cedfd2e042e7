"""Segmentation metrics from a confusion matrix (pure numpy).

Convention (as the LUAD-HistoSeg / BCSS-WSSS evaluation code): class maps hold foreground 0..K-1 and
background K; the headline numbers (mIoU, FwIoU, Dice, pixel accuracy) are over the K tissue classes and
**ignore pixels whose ground truth is background**. A tissue pixel predicted as background counts as a miss
for its class. The background class's own IoU is reported separately.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) int64 counts, rows = ground truth, columns = prediction.

    Args:
        pred, gt: integer class maps of equal shape (any number of axes).
        n_classes: foreground + background. Ground-truth values outside 0..n_classes-1 are ignored.
    """
    pred = np.asarray(pred).astype(np.int64).ravel()
    gt = np.asarray(gt).astype(np.int64).ravel()
    if pred.shape != gt.shape:
        raise ValueError(f"confusion_matrix: prediction has {pred.size} pixels, ground truth {gt.size}; "
                         "they must come from tiles of the same size.")
    ok = (gt >= 0) & (gt < n_classes) & (pred >= 0) & (pred < n_classes)
    return np.bincount(n_classes * gt[ok] + pred[ok], minlength=n_classes**2).reshape(n_classes, n_classes)


def scores_from_confusion(cm: np.ndarray, names: Sequence[str] | None = None) -> dict:
    """Metrics from a (K+1, K+1) confusion matrix whose last class is background.

    Returns:
        dict with ``mIoU``, ``FwIoU``, ``mDice``, ``pixel_accuracy`` (floats over tissue classes),
        ``IoU`` and ``Dice`` (``{class name: float}``, NaN for a class absent from both ground truth and
        prediction), ``background_IoU`` and ``confusion`` (nested list, rows = ground truth).
    """
    cm = np.asarray(cm, dtype=np.float64)
    k = cm.shape[0] - 1
    names = list(names) if names is not None else [str(i) for i in range(k + 1)]
    fg = cm[:k]  # ground-truth tissue rows only: background ground truth is ignored
    tp = np.diag(fg[:, :k])
    gt_count = fg.sum(axis=1)
    pred_count = fg[:, :k].sum(axis=0)
    union = gt_count + pred_count - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        dice = np.where(gt_count + pred_count > 0, 2 * tp / (gt_count + pred_count), np.nan)
        freq = gt_count / gt_count.sum() if gt_count.sum() > 0 else np.zeros(k)
        bg_union = cm[k].sum() + cm[:, k].sum() - cm[k, k]
    valid = ~np.isnan(iou)
    return {
        "mIoU": float(np.nanmean(iou)) if valid.any() else float("nan"),
        "FwIoU": float(np.nansum(freq * np.nan_to_num(iou))),
        "mDice": float(np.nanmean(dice)) if valid.any() else float("nan"),
        "pixel_accuracy": float(tp.sum() / gt_count.sum()) if gt_count.sum() > 0 else float("nan"),
        "IoU": {names[i]: float(iou[i]) for i in range(k)},
        "Dice": {names[i]: float(dice[i]) for i in range(k)},
        "background_IoU": float(cm[k, k] / bg_union) if bg_union > 0 else float("nan"),
        "confusion": cm.astype(np.int64).tolist(),
    }
