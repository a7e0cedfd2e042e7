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


# -- MIL / IFKD (soft maps in [0, 1], one per class) ------------------------------------------------------------

def soft_dice_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                   smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss per class over the whole batch, averaged over classes.

    Args:
        pred: (N, K, H, W) probabilities in [0, 1].
        target: (N, K, H, W) targets in [0, 1] (image labels broadcast to pixels, teacher maps, corrections).
        mask: optional (N, H, W) or (N, 1, H, W) weights/bool; pixels at 0 take no part.
        smooth: added to numerator and denominator: a class absent from the whole batch (target all zero)
            gives ``1 - smooth / (sum(pred) + smooth)``, which pushes its predictions towards 0.

    Summing over the batch (not per image) is what lets negative images localise positives: their false
    positives enter the denominator of the class's Dice (the IFKD paper code does the same).
    """
    if pred.shape != target.shape:
        raise ValueError(f"soft_dice_loss: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ.")
    if mask is not None:
        m = mask.to(pred.dtype)
        m = m[:, None] if m.ndim == 3 else m
        pred, target = pred * m, target * m
    dims = (0, 2, 3)
    inter = (pred * target).sum(dims)
    denom = pred.sum(dims) + target.sum(dims)
    return (1.0 - (2.0 * inter + smooth) / (denom + smooth)).mean()


def pixel_bce(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-pixel binary cross-entropy summed over classes: (N, K, H, W) x2 -> (N, H, W)."""
    p = pred.clamp(eps, 1.0 - eps)
    return -(target * torch.log(p) + (1.0 - target) * torch.log(1.0 - p)).sum(dim=1)


def ifkd_pixel_weights(loss_map: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """IFKD pixel weights: a per-image softmax of the *negative* per-pixel loss, scaled to mean 1.

    Easy pixels (low loss: the student already agrees with the teacher) weigh more, so the noisy part of the
    teacher's pseudo-label weighs less. Weights are constants (computed without gradient).

    Args:
        loss_map: (N, H, W) per-pixel loss.
        mask: optional (N, H, W) bool; pixels outside get weight 0 and do not enter the softmax.
    Returns:
        (N, H, W) weights >= 0; over each image's included pixels they average to 1.
    """
    lm = loss_map.detach()
    n = lm.shape[0]
    flat = -lm.reshape(n, -1)
    if mask is not None:
        m = mask.reshape(n, -1).bool()
        flat = flat.masked_fill(~m, float("-inf"))
        count = m.sum(dim=1, keepdim=True).clamp_min(1).to(lm.dtype)
    else:
        m = None
        count = torch.full((n, 1), flat.shape[1], dtype=lm.dtype, device=lm.device)
    w = torch.softmax(flat, dim=1)
    w = torch.nan_to_num(w, nan=0.0) * count  # an image with no included pixel: all -inf -> NaN -> 0
    if m is not None:
        w = w * m
    return w.reshape(lm.shape)


def weighted_pixel_ce(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """IFKD's weighted cross-entropy between the student's fused map and the teacher's fused map.

    Args:
        student, teacher: (N, K, H, W) maps in [0, 1] (the teacher's is the target; no gradient flows to it).
        mask: (N, H, W) bool, the pixels the teacher supervises (others weigh 0).
    Returns:
        (scalar loss, (N, H, W) weights used): ``sum(w * bce) / max(1, number of included pixels)``.
    """
    bce = pixel_bce(student, teacher.detach())
    w = ifkd_pixel_weights(bce, mask)
    n_pix = (mask.sum() if mask is not None else torch.tensor(float(bce.numel()))).clamp_min(1).to(bce.dtype)
    return (w * bce).sum() / n_pix, w
