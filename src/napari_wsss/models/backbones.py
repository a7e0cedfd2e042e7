"""Feature extractors for CAM networks, registered by name in ``BACKBONES``.

Contract: ``BACKBONES.get(name)(pretrained=False, shallow_stride=8, freeze_bn=False) -> nn.Module`` with
``.out_channels`` (4 ints) whose ``forward(x)`` takes (N, 3, H, W) float32 normalised RGB and returns 4 feature
maps ``[shallow1, shallow2, shallow3, deep]``, each (N, C_i, H/s, W/s) with output stride s = 8 (the ResNets
use dilation instead of striding in their last stages, as CAM networks do). ResNets' ``layer1`` is pooled to
stride 8 by default, or left at stride 4 with ``shallow_stride=4`` (SSHR's code: its 256-channel map is
stride 4); ``freeze_bn`` keeps a pretrained ResNet's BatchNorm layers and stem fixed while training (SSHR's code
keeps every BN in eval mode). The small CNN is stride 8 throughout and trains from scratch: it ignores both.

ImageNet weights (torchvision's ``IMAGENET1K_V1`` files) live in torch's cache,
``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``). ``pretrained=True`` (``train
--pretrained``, the Train widget's check box) fetches the file into it when it is missing, its SHA-256 checked
against the prefix in its name; offline, or on a hash mismatch, it fails with one line naming the file, its URL
and the folder to put it in. ``pretrained="auto"`` (the default) only uses a file already there, silently:
nothing is downloaded unless asked for.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F

from ._registry import BACKBONES


def _conv_bn(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _Residual(nn.Module):
    """Two 3x3 conv-BN layers with an identity shortcut (keeps gradients healthy from scratch)."""

    def __init__(self, ch: int, dilation: int = 1) -> None:
        super().__init__()
        self.a = _conv_bn(ch, ch, dilation=dilation)
        self.b = nn.Sequential(
            nn.Conv2d(ch, ch, 3, padding=dilation, dilation=dilation, bias=False), nn.BatchNorm2d(ch)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.b(self.a(x)))


class SmallCNN(nn.Module):
    """A CPU-fast CNN (about 0.6 M parameters, 0.3 GMAC at 224 px) with four stride-8 outputs.

    Stem to stride 8 by strided convs, then three stride-8 stages whose outputs are the shallow maps and a
    dilated deep stage (dilation widens the receptive field without losing resolution).
    """

    def __init__(self, widths: tuple[int, int, int, int] = (48, 64, 96, 128)) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        self.stem = nn.Sequential(
            _conv_bn(3, 24, stride=2),  # /2
            _conv_bn(24, 32, stride=2),  # /4
            _conv_bn(32, w1, stride=2),  # /8
        )
        self.stage1 = _Residual(w1)
        self.stage2 = nn.Sequential(_conv_bn(w1, w2), _Residual(w2, dilation=2))
        self.stage3 = nn.Sequential(_conv_bn(w2, w3), _Residual(w3, dilation=2))
        self.stage4 = nn.Sequential(_conv_bn(w3, w4, dilation=2), _Residual(w4, dilation=4))
        self.out_channels = (w1, w2, w3, w4)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.stage1(self.stem(x))
        f2 = self.stage2(f1)
        f3 = self.stage3(f2)
        return [f1, f2, f3, self.stage4(f3)]


class ResNetFeatures(nn.Module):
    """torchvision ResNet trunk returning ``[layer1, layer2, layer3, layer4]``, layers 2-4 at stride 8.

    Args:
        arch: torchvision ResNet name.
        pretrained: load the ImageNet weights (``fetch_imagenet_weights``).
        shallow_stride: 8 pools ``layer1`` to stride 8 (every map the same size), 4 leaves it unpooled (SSHR's
            code; consumers resize the maps to a common size where they combine them).
        freeze_bn: keep every BatchNorm in eval mode (running statistics never updated, affine parameters
            not trained, as in the PSA/SSHR ResNet code) and freeze the stem's convolution. For ImageNet
            weights: batches of 20 tiles of a few tissue classes are a poor estimate of the statistics the
            weights were trained with.
    """

    def __init__(self, arch: str, pretrained: bool = False, *, shallow_stride: int = 8,
                 freeze_bn: bool = False) -> None:
        super().__init__()
        import torchvision

        if shallow_stride not in (4, 8):
            raise ValueError(f"shallow_stride must be 4 (layer1 unpooled) or 8 (pooled), got {shallow_stride}.")
        net = getattr(torchvision.models, arch)(weights=None)
        if pretrained:
            net.load_state_dict(fetch_imagenet_weights(arch))
        # Dilate by hand (torchvision's BasicBlock refuses replace_stride_with_dilation): same weights, stride 8.
        _dilate(net.layer3, 2)
        _dilate(net.layer4, 4)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        exp = 4 if arch in ("resnet50", "resnet101", "resnet152") else 1
        self.out_channels = (64 * exp, 128 * exp, 256 * exp, 512 * exp)
        self.shallow_stride, self.freeze_bn = shallow_stride, bool(freeze_bn)
        if self.freeze_bn:
            frozen = [net.conv1] + [m for m in self.modules() if isinstance(m, nn.BatchNorm2d)]
            for p in (p for m in frozen for p in m.parameters()):
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> ResNetFeatures:
        """``nn.Module.train``, except that with ``freeze_bn`` every BatchNorm stays in eval mode."""
        super().train(mode)
        if self.freeze_bn:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.layer1(self.stem(x))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [f1 if self.shallow_stride == 4 else F.avg_pool2d(f1, 2, ceil_mode=True), f2, f3, f4]


def _dilate(layer: nn.Module, dilation: int) -> None:
    """Turn a stride-2 ResNet stage into a stride-1 stage with dilated 3x3 convolutions (in place)."""
    for m in layer.modules():
        if isinstance(m, nn.Conv2d):
            m.stride = (1, 1)
            if m.kernel_size == (3, 3):
                m.dilation, m.padding = (dilation, dilation), (dilation, dilation)


_WEIGHTS_ENUMS = {"resnet18": "ResNet18_Weights", "resnet34": "ResNet34_Weights", "resnet50": "ResNet50_Weights"}


def imagenet_weights_url(arch: str) -> str:
    """torchvision's ImageNet (IMAGENET1K_V1) weights URL for ``arch``; the file name carries its hash prefix."""
    import torchvision

    if arch not in _WEIGHTS_ENUMS:
        raise KeyError(f"No ImageNet weights for backbone {arch!r}; expected one of {sorted(_WEIGHTS_ENUMS)}.")
    return getattr(torchvision.models, _WEIGHTS_ENUMS[arch]).IMAGENET1K_V1.url


def imagenet_cache_dir() -> Path:
    """Where torch keeps downloaded weights: ``torch.hub.get_dir()/checkpoints`` ($TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_imagenet_file(arch: str) -> Path | None:
    """Path of torchvision's ImageNet weights for ``arch`` in the torch cache, or None (nothing downloads)."""
    path = imagenet_cache_dir() / Path(imagenet_weights_url(arch)).name
    return path if path.is_file() else None


def fetch_imagenet_weights(arch: str, progress: bool = True) -> dict[str, torch.Tensor]:
    """ImageNet state dict of ``arch``: from torch's cache, else downloaded into it (hash checked).

    Raises:
        FileNotFoundError: cannot download (offline, proxy, server error): names the file, URL and folder.
        ValueError: the download's SHA-256 does not match the prefix in its name (nothing is kept).
    """
    url = imagenet_weights_url(arch)
    name, folder = Path(url).name, imagenet_cache_dir()
    where = f"download {url} and put it in {folder} as {name}, or train without --pretrained"
    try:
        return torch.hub.load_state_dict_from_url(url, model_dir=str(folder), map_location="cpu", progress=progress,
                                                  check_hash=True, weights_only=True)
    except RuntimeError as e:
        if "hash" not in str(e):
            raise ValueError(f"Cannot read the ImageNet weights {folder / name} ({e}); delete it and {where}.") from e
        raise ValueError(f"The downloaded {name} failed its hash check (a damaged or substituted file; it was not "
                         f"kept); {where}.") from e
    except OSError as e:  # URLError and socket errors are OSErrors
        reason = getattr(e, "reason", e)
        raise FileNotFoundError(f"Cannot fetch the {arch} ImageNet weights {name} ({reason}); {where}.") from e


@BACKBONES.register("small_cnn")
def small_cnn(pretrained: bool = False, shallow_stride: int = 8, freeze_bn: bool = False) -> SmallCNN:
    """Small CNN for CPU training; ``pretrained``, ``shallow_stride`` and ``freeze_bn`` are ignored (no ImageNet
    weights exist for it; its stem goes straight to stride 8)."""
    return SmallCNN()


@BACKBONES.register("resnet18")
def resnet18(pretrained: bool = False, shallow_stride: int = 8, freeze_bn: bool = False) -> ResNetFeatures:
    return ResNetFeatures("resnet18", pretrained, shallow_stride=shallow_stride, freeze_bn=freeze_bn)


@BACKBONES.register("resnet34")
def resnet34(pretrained: bool = False, shallow_stride: int = 8, freeze_bn: bool = False) -> ResNetFeatures:
    return ResNetFeatures("resnet34", pretrained, shallow_stride=shallow_stride, freeze_bn=freeze_bn)


@BACKBONES.register("resnet50")
def resnet50(pretrained: bool = False, shallow_stride: int = 8, freeze_bn: bool = False) -> ResNetFeatures:
    return ResNetFeatures("resnet50", pretrained, shallow_stride=shallow_stride, freeze_bn=freeze_bn)


def build_backbone(name: str, pretrained: bool | str = False, *, shallow_stride: int = 8,
                   freeze_bn: bool = False) -> nn.Module:
    """Build a registered backbone. ``pretrained=True`` fetches ImageNet weights if missing (see the module
    docstring); ``"auto"`` uses cached ones when present, silently, and downloads nothing.

    ``freeze_bn`` applies only when ImageNet weights are actually loaded: a network from scratch needs its
    BatchNorm statistics learnt.
    """
    builder = BACKBONES.get(name)
    if pretrained == "auto":
        pretrained = name.startswith("resnet") and cached_imagenet_file(name) is not None
    return builder(pretrained=bool(pretrained), shallow_stride=shallow_stride,
                   freeze_bn=bool(freeze_bn and pretrained))
