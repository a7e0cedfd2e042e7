"""SEAM's pixel correlation module (Wang et al., CVPR 2020) and its equivariance losses.

The PCM learns an embedding of the features: 1x1 convolutions project two intermediate maps (SEAM: ResNet-38's
512- and 1024-channel blocks -> 64 and 128 channels; SSHR's second and third shallow maps are those blocks),
they are concatenated with the image resized to the map, and a 1x1 convolution makes the embedding. The
affinity is ReLU(cosine) between embedded pixels, normalised over source positions; the refined CAM at a pixel
is the affinity-weighted mean of the (max-normalised, background-augmented) CAM. As in SEAM's code the PCM
sees detached features and CAMs, so only its own projection learns from the PCM losses.

Training sees two views, the image and a rescaled copy (SEAM's code: 0.3 at 448 px):

* ER, equivariant regularisation: the CAM of the rescaled view against the rescaled CAM of the original;
* ECR, equivariant cross regularisation: the PCM-refined CAM of each view against the other view's raw CAM
  (its arg-max class kept), over the 20 % worst pixels;
* SEAM's adaptive min-pooling term keeps the refined foreground low on the quarter of pixels it is lowest on,
  so the projection cannot make the affinity uniform.

``models.pcm`` holds the parameter-free PCM (``pcm_kind="parameter_free"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .pcm import max_normalise, refine_by_features

PCM_KINDS = ("seam", "parameter_free")
ECR_TOP = 0.2  # share of the (channel, pixel) errors ECR averages (SEAM's code: the top 20 %)


def uses_seam_pcm(config: Mapping[str, Any]) -> bool:
    """Whether a config (or a card's) has SEAM's learned PCM in its network; cards from before ``pcm_kind``
    used the parameter-free one."""
    kind = config.get("pcm_kind", "parameter_free")
    if kind not in PCM_KINDS:
        raise ValueError(f"pcm_kind must be one of {list(PCM_KINDS)}, got {kind!r}.")
    return bool(config.get("pcm")) and kind == "seam"


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def pcm_input(cams: torch.Tensor) -> torch.Tensor:
    """(N, K, h, w) raw CAMs -> (N, K + 1, h, w) PCM input, background last, without gradient.

    SEAM's: each class map ReLU'd and max-normalised, background = 1 - the strongest class, and at every
    pixel only the strongest class kept (the others zeroed), so the PCM propagates each pixel's decision.
    """
    with torch.no_grad():
        norm = max_normalise(cams.detach().float())
        top = norm.max(dim=1, keepdim=True).values
        return torch.cat([torch.where(norm < top, torch.zeros_like(norm), norm), 1 - top], dim=1)


class SeamPCM(nn.Module):
    """SEAM's learned pixel correlation module; lives in the CAM network so ``weights.pt`` holds it.

    Args:
        in_channels: channels of the feature maps it projects.
        sources: their indices in the network's feature list (``forward_with_features``).
        dims: projection width of each source (SEAM: 64, 128).
        embed_dim: width of the embedding the affinity is computed on (SEAM: 192).
    """

    def __init__(self, in_channels: Sequence[int], sources: Sequence[int], dims: Sequence[int] = (64, 128),
                 embed_dim: int = 192) -> None:
        super().__init__()
        if not (len(in_channels) == len(sources) == len(dims)):
            raise ValueError(f"SeamPCM needs one in_channels and one dim per source, got {list(in_channels)}, "
                             f"{list(sources)}, {list(dims)}.")
        self.sources = tuple(int(s) for s in sources)
        self.proj = nn.ModuleList(nn.Conv2d(c, d, 1, bias=False) for c, d in zip(in_channels, dims))
        self.embed = nn.Conv2d(3 + sum(dims), embed_dim, 1, bias=False)
        for conv in self.proj:  # SEAM's initialisation
            nn.init.kaiming_normal_(conv.weight)
        nn.init.xavier_uniform_(self.embed.weight, gain=4)

    def embedding(self, feats: Sequence[torch.Tensor], image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(N, embed_dim, h, w) pixel embedding at ``size`` from the detached features and the image."""
        parts = [F.interpolate(image.float(), size=size, mode="bilinear", align_corners=True)]
        for conv, i in zip(self.proj, self.sources):
            f = _resize(feats[i].detach(), size)  # the backbone learns from the CAM losses, not from the PCM's
            parts.append(F.relu(conv(f.to(conv.weight.dtype))))
        return self.embed(torch.cat([p.to(parts[-1].dtype) for p in parts], dim=1))

    def forward(self, cams: torch.Tensor, feats: Sequence[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        """Refine a PCM input (N, C, h, w) (:func:`pcm_input`) -> (N, C, h, w), rows of the affinity sum to 1."""
        emb = self.embedding(feats, image, tuple(cams.shape[-2:]))
        return refine_by_features([cams], emb, "relu")[0]

    def refine_levels(self, cams: Sequence[torch.Tensor], feats: Sequence[torch.Tensor],
                      image: torch.Tensor) -> list[torch.Tensor]:
        """Inference: each CAM level (N, K, h_i, w_i) -> its refined foreground (N, K, h, w) at the last level's
        size (the deep map's stride, where the affinity is affordable)."""
        size = tuple(cams[-1].shape[-2:])
        return [self(pcm_input(_resize(c, size)), feats, image)[:, :-1] for c in cams]


def equivariance_loss(cam_full: torch.Tensor, cam_small: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """ER: mean |N(T(cam_full)) - N(cam_small)| on the classes of ``mask`` (N, K, 1, 1); T resizes to the
    rescaled view's map, N max-normalises. Zero exactly when the CAM commutes with the rescaling."""
    a = max_normalise(_resize(cam_full, tuple(cam_small.shape[-2:])))
    return ((a - max_normalise(cam_small)).abs() * mask).mean()


def _with_background(norm: torch.Tensor) -> torch.Tensor:
    return torch.cat([norm, 1 - norm.max(dim=1, keepdim=True).values], dim=1)


def _max_onehot(x: torch.Tensor) -> torch.Tensor:
    """SEAM's target: the background channel, and at each pixel only the strongest class's value."""
    fg, bg = x[:, :-1], x[:, -1:]
    return torch.cat([torch.where(fg < fg.max(dim=1, keepdim=True).values, torch.zeros_like(fg), fg), bg], dim=1)


def cross_equivariance_loss(refined: torch.Tensor, other_cam: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """ECR: the PCM-refined map of one view (N, K + 1, h, w) against the other view's raw CAM (N, K, h, w),
    both on the same grid; mean of the top :data:`ECR_TOP` of the absolute errors per image."""
    m = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    target = _max_onehot(_with_background(max_normalise(other_cam.detach()) * mask))
    err = (target - max_normalise(refined) * m).abs().flatten(1)
    return err.topk(max(1, int(err.shape[1] * ECR_TOP)), dim=1).values.mean()


def min_pooling_loss(refined: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SEAM's adaptive min-pooling: the quarter of pixels where the refined foreground (max over labelled
    classes) is lowest is pushed to zero."""
    fg = (refined[:, :-1] * mask).max(dim=1).values.flatten(1)
    k = max(1, fg.shape[1] // 4)
    return F.relu(fg.topk(k, dim=1, largest=False).values).mean()


def seam_losses(pcm: SeamPCM, view1: tuple, view2: tuple, labels: torch.Tensor,
                weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """SEAM's ER, ECR and min-pooling losses of two views, summed over CAM levels with ``weights``.

    Args:
        pcm: the network's :class:`SeamPCM`.
        view1, view2: ``(cams, feats, image)`` of the image and of its rescaled copy (``forward_with_features``).
        labels: (N, K) image labels; classes > 0.5 count.
    Returns:
        ``{"er", "ecr", "rvmin"}`` scalar tensors; everything is compared on the rescaled view's deep grid.
    """
    (cams1, feats1, x1), (cams2, feats2, x2) = view1, view2
    mask = (labels > 0.5).to(cams1[0].dtype)[:, :, None, None]
    size1, size2 = tuple(cams1[-1].shape[-2:]), tuple(cams2[-1].shape[-2:])
    out = {k: cams1[0].new_zeros(()) for k in ("er", "ecr", "rvmin")}
    for c1, c2, w in zip(cams1, cams2, weights):
        if w == 0:
            continue
        c1s, c2s = _resize(c1, size2), _resize(c2, size2)
        rv1 = _resize(pcm(pcm_input(_resize(c1, size1)), feats1, x1), size2)
        rv2 = pcm(pcm_input(c2s), feats2, x2)
        out["er"] = out["er"] + w * equivariance_loss(c1s, c2s, mask)
        out["ecr"] = out["ecr"] + w * (cross_equivariance_loss(rv1, c2s, mask)
                                       + cross_equivariance_loss(rv2, c1s, mask))
        out["rvmin"] = out["rvmin"] + w * (min_pooling_loss(rv1, mask) + min_pooling_loss(rv2, mask)) / 2
    return out
