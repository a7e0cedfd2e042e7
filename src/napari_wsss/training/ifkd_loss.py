"""The student's per-pixel outputs for each method and the IFKD fine-tuning loss (see ``ifkd.py``'s docstring).

Split from ``ifkd.py`` (the loop): what a pixel loss means for each network lives here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..ops.losses import (SSHR_LEVEL_WEIGHTS, hierarchical_loss, ifkd_pixel_weights, pixel_bce, soft_dice_loss,
                          weighted_pixel_ce)

if TYPE_CHECKING:
    from .ifkd import FinetuneConfig


# -- the student's dense outputs, per method -------------------------------------------------------------------

@dataclass
class DenseOutputs:
    """Student outputs at input resolution: side maps and fusion (N, K, S, S) in [0, 1]; image logits (N, K)."""

    sides: list[torch.Tensor]
    fused: torch.Tensor
    image_logits: list[torch.Tensor] | None = None
    image_weights: Sequence[float] = ()


def dense_outputs(method: str, model: torch.nn.Module, x: torch.Tensor, config: dict) -> DenseOutputs:
    """Per-class maps a network of ``method`` produces for (N, 3, S, S) input (see the module docstring)."""
    size = tuple(x.shape[-2:])
    if method == "sshr":
        from ..models.mil import fuse, side_maps
        from ..models.sshr import cam_logits

        cams = model(x)
        sides = side_maps(cams, size)
        weights = tuple(config.get("fuse_weights", (0.0, 0.6, 0.2, 0.2)))
        return DenseOutputs(sides, fuse(sides, weights), cam_logits(cams),
                            tuple(config.get("loss_weights", SSHR_LEVEL_WEIGHTS)))
    if method == "cam_sam":
        from ..models.mil import side_maps

        cams = model(x)
        sides = side_maps(cams, size)
        return DenseOutputs(sides, sides[0], [c.mean(dim=(2, 3)) for c in cams], (1.0,))
    if method in ("multistage", "ifkd"):  # a SegNet: its softmax is the one side output and the fusion
        probs = torch.softmax(model(x), dim=1)
        return DenseOutputs([probs], probs)
    if method == "mil":
        from ..models.mil import MIL_FUSE_WEIGHTS, fuse, side_maps

        sides = side_maps(model(x), size)
        return DenseOutputs(sides, fuse(sides, tuple(config.get("fuse_weights", MIL_FUSE_WEIGHTS))))
    raise ValueError(f"Fine-tuning does not know how to read per-pixel outputs from a {method!r} model; "
                     "supported methods: sshr, multistage, cam_sam, mil, ifkd.")


def weights_prefix(method: str) -> str:
    """Where the student's parameters sit in the version's ``weights.pt`` (cam_sam also holds SAM's decoder)."""
    return "classifier." if method == "cam_sam" else ""


def ifkd_loss(out: DenseOutputs, target: torch.Tensor, full: torch.Tensor, valid: torch.Tensor,
              cfg: FinetuneConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """The fine-tuning loss for one batch (target (N, K, S, S); full, valid (N, S, S) bool)."""
    teach = valid & ~full
    dice = sum(soft_dice_loss(s, target, valid) for s in out.sides) + soft_dice_loss(out.fused, target, valid)
    ce, _ = weighted_pixel_ce(out.fused, target, teach)
    nf = full.sum()
    corr = (pixel_bce(out.fused, target) * full).sum() / nf.clamp_min(1) if bool(nf > 0) else out.fused.sum() * 0
    total = cfg.dice_weight * dice + cfg.ce_weight * ce + cfg.correction_weight * corr
    parts = {"dice": float(dice.detach()), "wce": float(ce.detach()), "corr": float(corr.detach())}
    if out.image_logits is not None and cfg.image_loss_weight > 0:
        present = ((target * valid[:, None]).flatten(2).amax(dim=2) > 0.5).to(target.dtype)
        img, _ = hierarchical_loss(out.image_logits, present, out.image_weights)
        total = total + cfg.image_loss_weight * img
        parts["image"] = float(img.detach())
    return total, parts


def dense_student_loss(logits: torch.Tensor, target: torch.Tensor, full: torch.Tensor, valid: torch.Tensor,
                       cfg: FinetuneConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """The IFKD loss of a dense (softmax) student, ``ifkd_student``'s ``student="dense"``.

    Args:
        logits: (N, K, S, S) the student's pixel logits.
        target: (N, K, S, S) teacher shares / one-hot corrections; a pixel whose target sums to about 0 (glass,
            or a class the image label rules out everywhere) takes no part.
        full, valid: (N, S, S) bool corrected pixels (full weight) and pixels that take part.
    Returns:
        ``ce_weight`` x IFKD's weighted cross-entropy to the teacher on teacher pixels (easy pixels weigh
        more) + ``correction_weight`` x the plain cross-entropy on corrected pixels + ``dice_weight`` x the soft
        Dice of the softmax against the target.
    """
    mass = target.sum(dim=1)
    has = valid & (mass > 1e-3)
    t = target / mass.clamp_min(1e-3)[:, None]
    logp = torch.log_softmax(logits.float(), dim=1)
    ce = -(t * logp).sum(dim=1)
    teach, corr = has & ~full, has & full
    w = ifkd_pixel_weights(ce, teach)
    wce = (w * ce).sum() / teach.sum().clamp_min(1)
    cce = (ce * corr).sum() / corr.sum().clamp_min(1)
    total = cfg.ce_weight * wce + cfg.correction_weight * cce
    parts = {"wce": float(wce.detach()), "corr": float(cce.detach())}
    if cfg.dice_weight > 0:
        dice = soft_dice_loss(logp.exp(), t, has)
        total = total + cfg.dice_weight * dice
        parts["dice"] = float(dice.detach())
    return total, parts
