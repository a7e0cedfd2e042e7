"""CAM classifier for CAM+SAM (EPLC-SAM): a BACKBONES trunk with Attention Dropout Layers, optionally
"enhanced" by the image's high-frequency component, one 1x1 CAM head on the deep map.

The high frequencies enter as EPLC-SAM's explicit visual prompting (``hf_mode="adapter"``, after EVP, Liu et
al. CVPR 2023): a patch embedding of the high-frequency map, and before every stage a small tunable adapter
(1x1 tune -> GELU -> 1x1 up, zero-initialised) whose output, from the embedding pooled to the stage's
resolution, is added to the stage's input. ``hf_mode="channel"`` is the earlier form: the map as a fourth
input channel of the first convolution (cards without ``hf_mode`` were trained with it).

``CAMClassifier.forward`` returns a one-element list of CAMs ``[(N, K, h, w)]`` so the shared CAM machinery
(``cam_logits``, ``hierarchical_loss`` with weight ``(1.0,)``, ``CamSegmenter`` with fuse weights ``(1.0,)``)
applies unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import build_backbone

# Names of the four stage modules, per backbone class (ADL is inserted after the chosen ones).
_STAGE_ATTRS = {
    "SmallCNN": ("stage1", "stage2", "stage3", "stage4"),
    "ResNetFeatures": ("layer1", "layer2", "layer3", "layer4"),
}


def adl_maps(x: torch.Tensor, gamma: float = 0.8) -> tuple[torch.Tensor, torch.Tensor]:
    """ADL's two maps for features ``x`` (N, C, H, W).

    Returns:
        drop mask (N, 1, H, W) float {0, 1}: 0 where the channel-mean attention is >= ``gamma`` x its max
        (the most discriminative region is hidden);
        importance map (N, 1, H, W) float in (0, 1): ``sigmoid(attention)``.
    """
    att = x.mean(dim=1, keepdim=True)
    peak = att.flatten(1).max(dim=1).values[:, None, None, None]
    drop = (att < gamma * peak).to(x.dtype)
    return drop, torch.sigmoid(att)


class ADL(nn.Module):
    """Attention Dropout Layer (Choe & Shim 2019). Identity at eval; in training each sample's features are
    multiplied by the drop mask with probability ``drop_rate``, otherwise by the importance map.
    """

    def __init__(self, drop_rate: float = 0.75, gamma: float = 0.8) -> None:
        super().__init__()
        if not 0.0 <= drop_rate <= 1.0:
            raise ValueError(f"ADL drop_rate must be in [0, 1], got {drop_rate}.")
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"ADL gamma (drop threshold as a fraction of the peak) must be in (0, 1], got {gamma}.")
        self.drop_rate, self.gamma = drop_rate, gamma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        drop, importance = adl_maps(x, self.gamma)
        use_drop = (torch.rand(x.shape[0], 1, 1, 1, device=x.device) < self.drop_rate).to(x.dtype)
        return x * (use_drop * drop + (1 - use_drop) * importance)

    def extra_repr(self) -> str:
        return f"drop_rate={self.drop_rate}, gamma={self.gamma}"


def high_frequency(x: torch.Tensor, cutoff: float = 0.05) -> torch.Tensor:
    """Magnitude of the high-frequency component of images (the "enhanced" channel).

    Channel mean -> 2-D FFT -> zero frequencies with radius < ``cutoff`` cycles/pixel (0..0.5; 0.05 removes
    structures larger than ~20 px) -> inverse FFT -> absolute value -> divided by its per-image mean, minus 1
    (zero-mean, scale-free: the same whether ``x`` is normalised or 0..1 RGB, as offsets live in the removed DC).

    Args:
        x: (N, C, H, W) float images.
    Returns:
        (N, 1, H, W) float32.
    """
    if x.ndim != 4:
        raise ValueError(f"high_frequency expects (N, C, H, W) images, got shape {tuple(x.shape)}.")
    grey = x.float().mean(dim=1)
    h, w = grey.shape[-2:]
    fy = torch.fft.fftfreq(h, device=x.device)[:, None]
    fx = torch.fft.fftfreq(w, device=x.device)[None, :]
    keep = (fy**2 + fx**2).sqrt() >= cutoff
    spec = torch.fft.fft2(grey) * keep
    mag = torch.fft.ifft2(spec).abs()
    mag = mag / (mag.mean(dim=(1, 2), keepdim=True) + 1e-6) - 1.0
    return mag[:, None].to(x.dtype)


def _expand_first_conv(module: nn.Module, extra: int = 1) -> None:
    """Give the first 3-input convolution ``extra`` more input channels (zero-initialised, so pretrained
    RGB behaviour is unchanged at the start and the network learns how much texture to use)."""
    for parent in module.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                new = nn.Conv2d(3 + extra, child.out_channels, child.kernel_size, child.stride, child.padding,
                                child.dilation, child.groups, child.bias is not None)
                with torch.no_grad():
                    new.weight.zero_()
                    new.weight[:, :3] = child.weight
                    if child.bias is not None:
                        new.bias.copy_(child.bias)
                setattr(parent, name, new)
                return
    raise ValueError(f"{type(module).__name__}: no 3-channel input convolution found to add the high-frequency "
                     "channel to; use enhanced=False with this backbone.")


HF_MODES = ("adapter", "channel")


class HFAdapter(nn.Module):
    """One stage's prompt generator: high-frequency embedding (N, E, h', w') pooled to the stage's (h, w) ->
    1x1 tune -> GELU -> 1x1 up to the stage's channels. The up-projection starts at zero, so the classifier
    starts as the RGB network and learns how much texture to add."""

    def __init__(self, embed_dim: int, channels: int, hidden: int) -> None:
        super().__init__()
        self.tune = nn.Conv2d(embed_dim, hidden, 1)
        self.up = nn.Conv2d(hidden, channels, 1)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, embedding: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        e = F.adaptive_avg_pool2d(embedding, size)
        return self.up(F.gelu(self.tune(e)))


def _stem_channels(stem: nn.Module) -> int:
    """Output channels of a backbone stem (its last BatchNorm's width)."""
    bns = [m for m in stem.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns:
        raise ValueError(f"Cannot tell the stem's output channels ({type(stem).__name__} has no BatchNorm); "
                         "use hf_mode='channel' with this backbone.")
    return bns[-1].num_features


class CAMClassifier(nn.Module):
    """EPLC-SAM's classifier: backbone + ADL after chosen stages (+ high-frequency channel) + 1x1 CAM head.

    Args:
        backbone: BACKBONES name (``small_cnn``, ``resnet18``, ``resnet50``, ...).
        n_classes: K foreground classes.
        adl_stages: 1-based stage numbers after which an ADL is inserted (paper: 3 and 4).
        drop_rate, gamma: ADL settings (paper: 0.75, 0.8).
        enhanced: use the high-frequency magnitude (computed inside ``forward``), as ``hf_mode`` says.
        hf_mode: ``"adapter"`` (prompts from a high-frequency patch embedding added before every stage: the
            paper's explicit visual prompting) or ``"channel"`` (a 4th input channel of the first convolution).
        hf_cutoff: see :func:`high_frequency`.
        hf_dim: width of the high-frequency patch embedding and of each adapter's tune layer.

    ``forward(x)``: (N, 3, H, W) normalised RGB -> ``[cam]`` with cam (N, K, H/8, W/8) float32 (raw, pre-ReLU).
    """

    def __init__(self, backbone: str, n_classes: int, *, adl_stages: Sequence[int] = (3, 4),
                 drop_rate: float = 0.75, gamma: float = 0.8, enhanced: bool = True, hf_mode: str = "adapter",
                 hf_cutoff: float = 0.05, hf_dim: int = 32, pretrained: bool | str = False) -> None:
        super().__init__()
        if n_classes < 1:
            raise ValueError(f"CAMClassifier needs at least one foreground class, got n_classes={n_classes}.")
        self.backbone = build_backbone(backbone, pretrained)
        if hf_mode not in HF_MODES:
            raise ValueError(f"hf_mode must be one of {list(HF_MODES)}, got {hf_mode!r}.")
        attrs = _STAGE_ATTRS.get(type(self.backbone).__name__)
        if attrs is None and (adl_stages or (enhanced and hf_mode == "adapter")):
            raise ValueError(f"ADL placement is not defined for backbone {backbone!r} "
                             f"({type(self.backbone).__name__}); use adl_stages=() or one of "
                             f"small_cnn / resnet*.")
        for s in adl_stages:
            if s not in (1, 2, 3, 4):
                raise ValueError(f"adl_stages must be stage numbers 1..4, got {list(adl_stages)}.")
            name = attrs[s - 1]
            setattr(self.backbone, name, nn.Sequential(getattr(self.backbone, name), ADL(drop_rate, gamma)))
        self.enhanced, self.hf_cutoff, self.hf_mode = enhanced, hf_cutoff, hf_mode
        self.stages = attrs
        self.hf_embed, self.hf_adapters = None, None
        if enhanced and hf_mode == "channel":
            _expand_first_conv(self.backbone)
        elif enhanced:
            # stride 4: the finest stage input of the backbones here (a ResNet's layer1); pooled to each stage
            self.hf_embed = nn.Conv2d(1, hf_dim, kernel_size=4, stride=4)
            widths = (_stem_channels(self.backbone.stem), *self.backbone.out_channels[:3])
            self.hf_adapters = nn.ModuleList(HFAdapter(hf_dim, c, hf_dim) for c in widths)
        self.n_classes = n_classes
        self.head = nn.Conv2d(self.backbone.out_channels[3], n_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_with_features(x)[0]

    def forward_with_features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``([cam], [deep features])``, for the PCM."""
        if self.hf_adapters is not None:
            deep = self._prompted_trunk(x)
        else:
            if self.enhanced:
                x = torch.cat([x, high_frequency(x, self.hf_cutoff)], dim=1)
            deep = self.backbone(x)[-1]
        return [self.head(deep)], [deep]

    def _prompted_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone stage by stage (stem, then each stage with its ADL), each stage's input plus its
        adapter's prompt; returns the deep map."""
        emb = self.hf_embed(high_frequency(x, self.hf_cutoff))
        h = self.backbone.stem(x)
        for adapter, name in zip(self.hf_adapters, self.stages):
            h = getattr(self.backbone, name)(h + adapter(emb, tuple(h.shape[-2:])))
        return h

    def adl_layers(self) -> list[ADL]:
        return [m for m in self.modules() if isinstance(m, ADL)]

    def new_parameters(self) -> list[nn.Parameter]:
        """Parameters not from the backbone: the head and the adapters (the widened first conv of the channel
        form stays with the backbone)."""
        mods = [self.head] + [m for m in (self.hf_embed, self.hf_adapters) if m is not None]
        return [p for m in mods for p in m.parameters()]
