"""SSHR network: a backbone, three HFRM-rectified shallow maps plus the deep map, a 1x1 CAM head on each.

``SSHRNet(..., hfrm=False)`` is the plain multi-head CAM network the multi-stage baseline uses.

In the paper's code (ResNet-38) the first shallow map (256 channels) is at stride 4 and the other three at
stride 8 (methods.md puts all shallow maps at stride 8); a ResNet backbone follows it with ``shallow_stride=4``.
"""

from __future__ import annotations

import torch
from torch import nn

from .backbones import build_backbone
from .seam import SeamPCM


class HFRM(nn.Module):
    """Hierarchical feature rectification of a shallow map F (N, C, h, w) by a deep map D (N, Cd, h', w')
    (any sizes: D enters only through its global average, so a stride-4 F needs no resizing).

    ``out = F + gamma_v * (F * g) + gamma_c * S(F)`` where ``g = sigmoid(MLP(GAP(D)))`` is a per-channel
    "veto" gate from the deep map's global context and ``S`` a depthwise k x k convolution initialised to a
    box filter (local context smoothing). ``gamma_v`` and ``gamma_c`` start at 0, so the module is the identity
    at initialisation and learns how much to rectify.
    """

    def __init__(self, channels: int, deep_channels: int, kernel_size: int = 15, reduction: int = 8) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"HFRM kernel_size must be a positive odd number, got {kernel_size}.")
        hidden = max(1, deep_channels // reduction)
        self.gate = nn.Sequential(
            nn.Linear(deep_channels, hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=False),
        )
        self.context = nn.Conv2d(
            channels, channels, kernel_size, padding=kernel_size // 2, groups=channels, bias=False
        )
        nn.init.constant_(self.context.weight, 1.0 / kernel_size**2)
        self.gamma_v = nn.Parameter(torch.zeros(1))
        self.gamma_c = nn.Parameter(torch.zeros(1))

    def forward(self, f: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.gate(d.mean(dim=(2, 3))))[:, :, None, None]
        return f + self.gamma_v * (f * g) + self.gamma_c * self.context(f)


class SSHRNet(nn.Module):
    """Multi-level CAM network.

    ``forward(x)`` takes (N, 3, H, W) normalised RGB and returns 4 CAMs (N, K, h_i, w_i) float32 (raw, before
    ReLU), ordered shallow -> deep, at the backbone's strides (the first may be stride 4, the rest 8); :func:`cam_logits` turns them into (N, K) class logits by global average
    pooling.

    Args:
        backbone: BACKBONES name or a module with ``.out_channels`` (4 ints).
        n_classes: K foreground classes (background is not learnt).
        hfrm: apply HFRM to the three shallow maps (False: the plain baseline CAM net).
        kernel_size: HFRM context-convolution size.
        dropout: channel dropout on the deep map before its head (training only).
        shallow_stride, freeze_bn: backbone options (``models.backbones``): a ResNet's first CAM map at
            stride 4 (the paper's) or 8; BatchNorm and stem frozen when ImageNet weights are loaded.
        seam_pcm: own SEAM's learned pixel correlation module as ``self.pcm`` (``models.seam``), projecting the
            second and third shallow maps (ResNet-38's 512- and 1024-channel blocks, the ones SEAM projects);
            None without it (the parameter-free PCM of ``models.pcm`` needs no parameters).
    """

    def __init__(self, backbone: str | nn.Module, n_classes: int, *, hfrm: bool = True, kernel_size: int = 15,
                 dropout: float = 0.5, pretrained: bool | str = False, shallow_stride: int = 8,
                 freeze_bn: bool = False, seam_pcm: bool = False) -> None:
        super().__init__()
        if n_classes < 1:
            raise ValueError(f"SSHRNet needs at least one foreground class, got n_classes={n_classes}.")
        self.backbone = (build_backbone(backbone, pretrained, shallow_stride=shallow_stride, freeze_bn=freeze_bn)
                         if isinstance(backbone, str) else backbone)
        chans = tuple(self.backbone.out_channels)
        if len(chans) != 4:
            raise ValueError(f"Backbone must expose 4 out_channels (3 shallow + deep), got {chans}.")
        self.n_classes = n_classes
        self.hfrm = nn.ModuleList([HFRM(c, chans[3], kernel_size) for c in chans[:3]]) if hfrm else None
        self.dropout = nn.Dropout2d(dropout)
        self.heads = nn.ModuleList([nn.Conv2d(c, n_classes, 1, bias=False) for c in chans])
        self.pcm = SeamPCM(chans[1:3], sources=(1, 2)) if seam_pcm else None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_with_features(x)[0]

    def forward_with_features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """CAMs and the 4 (rectified) feature maps they come from (before dropout), for the PCM."""
        *shallow, deep = self.backbone(x)
        if self.hfrm is not None:
            shallow = [m(f, deep) for m, f in zip(self.hfrm, shallow)]
        feats = [*shallow, self.dropout(deep)]
        return [head(f) for head, f in zip(self.heads, feats)], [*shallow, deep]

    def new_parameters(self) -> list[nn.Parameter]:
        """Parameters that did not come from the backbone (they get the higher learning rate)."""
        mods = [self.heads] + [m for m in (self.hfrm, self.pcm) if m is not None]
        return [p for m in mods for p in m.parameters()]


def cam_logits(cams: list[torch.Tensor]) -> list[torch.Tensor]:
    """(N, K, h, w) CAMs -> (N, K) logits by global average pooling."""
    return [c.mean(dim=(2, 3)) for c in cams]
