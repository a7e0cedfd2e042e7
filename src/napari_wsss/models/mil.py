"""MIL teacher: a fully convolutional network with three side outputs and a weighted fusion (IFKD stage 1).

Paper (binary): side outputs at strides 2, 4 and 8 (1x1 conv -> sigmoid -> upsample), fusion
``f_w = sum_i w_i f_i`` with ``w = (0.3, 0.3, 0.4)``. Here:

* multi-class: every side output has one sigmoid map per foreground class (K maps; background is never learnt,
  it comes from the white-glass rule at inference);
* the backbone is any ``BACKBONES`` entry. Those keep stride 8 in all four stages (dilated, as CAM networks
  do), so the three side outputs come from three *depths* (``shallow2``, ``shallow3``, ``deep``), all at
  stride 8, instead of three strides: the hierarchy of receptive fields is kept, the resolution gain of the
  stride-2/4 sides is not (tile classes are regions tens of pixels wide, so stride 8 loses little).

``MILNet.forward(x)`` takes (N, 3, H, W) normalised RGB and returns the three side *logits* (N, K, H/8, W/8);
:func:`side_maps` turns them into sigmoid maps at a given size and :func:`fuse` into the fused map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
import torch.nn.functional as F

from .backbones import build_backbone

MIL_FUSE_WEIGHTS = (0.3, 0.3, 0.4)
"""Paper weights of the three side outputs, shallow -> deep."""

SIDE_LEVELS = (1, 2, 3)
"""Backbone outputs (0-based index into its 4 maps) that feed the side outputs."""


class MILNet(nn.Module):
    """Side-output FCN: backbone -> three 1x1 conv side heads (K logits each).

    Args:
        backbone: BACKBONES name or a module with ``.out_channels`` (4 ints).
        n_classes: K foreground classes.
        dropout: channel dropout on the deep map before its head (training only).
    """

    def __init__(self, backbone: str | nn.Module, n_classes: int, *, dropout: float = 0.1,
                 pretrained: bool | str = False) -> None:
        super().__init__()
        if n_classes < 1:
            raise ValueError(f"MILNet needs at least one foreground class, got n_classes={n_classes}.")
        self.backbone = build_backbone(backbone, pretrained) if isinstance(backbone, str) else backbone
        chans = tuple(self.backbone.out_channels)
        if len(chans) != 4:
            raise ValueError(f"Backbone must expose 4 out_channels, got {chans}.")
        self.n_classes = n_classes
        self.dropout = nn.Dropout2d(dropout)
        self.sides = nn.ModuleList([nn.Conv2d(chans[i], n_classes, 1) for i in SIDE_LEVELS])
        for s in self.sides:  # start at sigmoid ~0.1: most classes are absent from most pixels
            nn.init.constant_(s.bias, -2.0)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.backbone(x)
        picked = [feats[i] for i in SIDE_LEVELS]
        picked[-1] = self.dropout(picked[-1])
        return [head(f) for head, f in zip(self.sides, picked)]

    def new_parameters(self) -> list[nn.Parameter]:
        return list(self.sides.parameters())


def side_maps(logits: Sequence[torch.Tensor], size: tuple[int, int] | None = None) -> list[torch.Tensor]:
    """Side logits (N, K, h, w) -> sigmoid maps in [0, 1], bilinearly resized to ``size`` when given."""
    out = []
    for lg in logits:
        if size is not None and tuple(lg.shape[-2:]) != tuple(size):
            lg = F.interpolate(lg, size=size, mode="bilinear", align_corners=False)
        out.append(torch.sigmoid(lg))
    return out


def fuse(maps: Sequence[torch.Tensor], weights: Sequence[float] = MIL_FUSE_WEIGHTS) -> torch.Tensor:
    """Weighted fusion ``sum_i w_i f_i / sum_i w_i`` of equally sized maps (N, K, H, W) -> (N, K, H, W).

    Raises:
        ValueError: a different number of maps and weights, or weights that do not sum to > 0.
    """
    if len(maps) != len(weights):
        raise ValueError(f"fuse: {len(maps)} side maps but {len(weights)} weights; give one weight per side output.")
    total = float(sum(weights))
    if total <= 0:
        raise ValueError(f"fuse: weights must sum to > 0, got {list(weights)}.")
    return sum(w * m for w, m in zip(weights, maps)) / total
