"""Pixel correlation module (PCM, as in SEAM): refine CAMs by the affinity between pixel features.

``affinity[n, j, i]`` is how much output pixel j takes from pixel i: the cosine similarity of their feature
vectors, made non-negative (ReLU) and divided by its row sum, or a softmax over i of cosine / temperature.
Rows sum to 1, so a refined CAM is, at every pixel, a weighted mean of the CAM over feature-similar pixels
(CAMs spread from the most discriminative spots to the rest of the same tissue).

Here the module is parameter-free: the features are the network's own maps, resized to the deep map's stride 8
(each L2-normalised per pixel, then concatenated), so switching PCM on or off never changes a model's weights. Training uses it as a
consistency target (:func:`pcm_consistency_loss`: raw CAMs are pulled towards their detached PCM-refined
version on the classes the image is labelled with; SEAM's equivariance loss without a second view), and
inference may apply it to each CAM level before fusion (card ``config["pcm"]``).
It is ``pcm_kind="parameter_free"``; SEAM's learned module and two-view losses are in ``models.seam``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

PCM_MODES = ("relu", "softmax")


def pixel_features(feats: Sequence[torch.Tensor], size: tuple[int, int] | None = None) -> torch.Tensor:
    """Concatenate per-pixel L2-normalised maps (N, C_i, h, w) -> (N, sum C_i, h, w), unit length per pixel."""
    size = size or tuple(feats[0].shape[-2:])
    parts = []
    for f in feats:
        if tuple(f.shape[-2:]) != tuple(size):
            f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
        parts.append(F.normalize(f.float(), dim=1))
    return F.normalize(torch.cat(parts, dim=1), dim=1)


def _affinity_rows(f: torch.Tensor, start: int, stop: int, mode: str, temperature: float) -> torch.Tensor:
    """Rows ``start:stop`` of the affinity of unit features ``f`` (N, C, hw) -> (N, stop - start, hw)."""
    cos = f[:, :, start:stop].transpose(1, 2) @ f
    if mode == "softmax":
        return torch.softmax(cos / temperature, dim=-1)
    aff = F.relu(cos)
    total = aff.sum(dim=-1, keepdim=True)
    eye = torch.eye(f.shape[-1], device=f.device, dtype=aff.dtype)[start:stop]
    aff = torch.where(total > 1e-6, aff, eye.expand_as(aff))
    return aff / aff.sum(dim=-1, keepdim=True)


def pixel_affinity(feats: torch.Tensor, mode: str = "relu", temperature: float = 0.1) -> torch.Tensor:
    """(N, C, h, w) features -> (N, hw, hw) row-stochastic affinity (float32).

    ``relu``: relu(cos) / row sum (SEAM); a pixel with an all-zero feature keeps itself (identity row).
    ``softmax``: softmax over source pixels of cos / ``temperature``.
    """
    if mode not in PCM_MODES:
        raise ValueError(f"PCM mode must be one of {list(PCM_MODES)}, got {mode!r}.")
    f = F.normalize(feats.float().flatten(2), dim=1)  # (N, C, hw)
    return _affinity_rows(f, 0, f.shape[-1], mode, temperature)


def refine_by_features(cams: Sequence[torch.Tensor], feats: torch.Tensor, mode: str = "relu",
                       temperature: float = 0.1, chunk: int = 1024) -> list[torch.Tensor]:
    """Refine CAMs (each (N, K, h, w)) with the affinity of ``feats`` (N, C, h, w), ``chunk`` output pixels at a
    time, so memory is O(chunk x hw) instead of O(hw^2) (large tiles at inference)."""
    f = F.normalize(feats.float().flatten(2), dim=1)
    n, _, p = f.shape
    flat = [c.flatten(2).float() for c in cams]
    outs = [torch.empty_like(c) for c in flat]
    for start in range(0, p, chunk):
        aff = _affinity_rows(f, start, min(p, start + chunk), mode, temperature)
        for src, out in zip(flat, outs):
            out[:, :, start : start + chunk] = src @ aff.transpose(1, 2)
    return [o.view_as(c).to(c.dtype) for o, c in zip(outs, cams)]


def refine_cams(cams: torch.Tensor, affinity: torch.Tensor) -> torch.Tensor:
    """(N, K, h, w) CAMs + (N, hw, hw) affinity -> (N, K, h, w): ``out[:, :, j] = sum_i aff[j, i] cam[:, :, i]``."""
    n, k, h, w = cams.shape
    return (cams.flatten(2).float() @ affinity.transpose(1, 2)).view(n, k, h, w).to(cams.dtype)


def max_normalise(cams: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """ReLU and divide each (sample, class) map by its maximum -> [0, 1] (differentiable)."""
    c = F.relu(cams)
    return c / (c.flatten(2).max(dim=2).values[:, :, None, None] + eps)


class PixelCorrelation(nn.Module):
    """Refine a list of CAM levels with the affinity of the network's feature maps (no parameters).

    ``forward(cams, feats)``: cams = list of (N, K, h_i, w_i) raw CAMs; feats = list of (N, C_i, h_i, w_i) maps;
    returns the list of refined, ReLU'd CAMs, all at the last (deep) level's size (h, w).
    """

    def __init__(self, mode: str = "relu", temperature: float = 0.1) -> None:
        super().__init__()
        if mode not in PCM_MODES:
            raise ValueError(f"PCM mode must be one of {list(PCM_MODES)}, got {mode!r}.")
        self.mode, self.temperature = mode, temperature

    def affinity(self, feats: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        return pixel_affinity(pixel_features(feats, size), self.mode, self.temperature)

    def forward(self, cams: Sequence[torch.Tensor], feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        size = tuple(cams[-1].shape[-2:])  # the deep map's stride: a stride-4 level would cost 16x the affinity
        cams = [F.relu(c if tuple(c.shape[-2:]) == size else
                       F.interpolate(c, size=size, mode="bilinear", align_corners=False)) for c in cams]
        return refine_by_features(cams, pixel_features(feats, size), self.mode, self.temperature)

    def extra_repr(self) -> str:
        return f"mode={self.mode}, temperature={self.temperature}"


def pcm_consistency_loss(cams: Sequence[torch.Tensor], feats: Sequence[torch.Tensor], labels: torch.Tensor,
                         weights: Sequence[float], module: PixelCorrelation) -> torch.Tensor:
    """Mean |max-norm(CAM) - PCM(max-norm(CAM))| over labelled classes, weighted per CAM level.

    The refined map and the affinity are computed without gradient (a target); the raw CAMs learn to cover
    the feature-coherent region. ``labels`` (N, K) in [0, 1] select the classes (> 0.5) that count.
    """
    size = tuple(cams[-1].shape[-2:])  # levels at another stride (a ResNet's stride-4 layer1) are resized to it
    with torch.no_grad():
        aff = module.affinity([f.detach() for f in feats], size)
    mask = (labels > 0.5).float()[:, :, None, None]
    denom = mask.sum() * size[0] * size[1] + 1e-6
    total = cams[0].new_zeros(())
    for cam, w in zip(cams, weights):
        if w == 0:
            continue
        if tuple(cam.shape[-2:]) != size:
            cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)
        norm = max_normalise(cam)
        target = refine_cams(norm.detach(), aff)
        total = total + w * ((norm - target).abs() * mask).sum() / denom
    return total
