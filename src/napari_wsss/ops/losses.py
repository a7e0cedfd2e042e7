"""Training losses (functional)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

SSHR_LEVEL_WEIGHTS = (0.1, 0.15, 0.25, 0.5)
"""Paper weights of the four CAM heads, shallow -> deep."""

IGNORE_INDEX = 255
"""Pixel value a segmentation target uses for "no supervision here"."""


def multilabel_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Multilabel soft-margin loss. logits (N, K) float, labels (N, K) multi-hot (any dtype) -> scalar."""
    if logits.shape != labels.shape:
        raise ValueError(f"multilabel_loss: logits {tuple(logits.shape)} and labels {tuple(labels.shape)} differ; "
                         "the label vector must have one entry per foreground class.")
    return F.multilabel_soft_margin_loss(logits, labels.to(logits.dtype))


def hierarchical_loss(level_logits: Sequence[torch.Tensor], labels: torch.Tensor,
                      weights: Sequence[float] = SSHR_LEVEL_WEIGHTS) -> tuple[torch.Tensor, list[float]]:
    """Weighted sum of per-level multilabel losses; returns (total, per-level values as floats)."""
    if len(level_logits) != len(weights):
        raise ValueError(f"hierarchical_loss: {len(level_logits)} logit levels but {len(weights)} weights.")
    parts = [multilabel_loss(lg, labels) for lg in level_logits]
    total = sum(w * p for w, p in zip(weights, parts))
    return total, [float(p.detach()) for p in parts]


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel cross-entropy. logits (N, C, H, W); target (N, H, W) int64 with ``IGNORE_INDEX`` where unknown."""
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    if not bool((target != IGNORE_INDEX).any()):
        return logits.sum() * 0.0  # all pixels ignored: a zero loss, not NaN
    return F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
