"""Segmentation network for the multi-stage baseline: a registered backbone + a torchvision FCN/DeepLabV3 head."""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .backbones import build_backbone

HEADS = ("fcn", "deeplabv3")


class SegNet(nn.Module):
    """``forward(x)`` (N, 3, H, W) -> (N, K, H, W) pixel logits (head on the deep stride-8 map, upsampled)."""

    def __init__(self, backbone: str | nn.Module, n_classes: int, head: str = "fcn",
                 pretrained: bool | str = False) -> None:
        super().__init__()
        from torchvision.models.segmentation.deeplabv3 import DeepLabHead
        from torchvision.models.segmentation.fcn import FCNHead

        self.backbone = build_backbone(backbone, pretrained) if isinstance(backbone, str) else backbone
        deep = self.backbone.out_channels[3]
        if head == "fcn":
            self.head = FCNHead(deep, n_classes)
        elif head == "deeplabv3":
            self.head = DeepLabHead(deep, n_classes)
        else:
            raise ValueError(f"Unknown segmentation head {head!r}; expected one of {HEADS}.")
        self.n_classes = n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.backbone(x)[3])
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def new_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())
