"""CAM post-processing: pure functions, tensors in, tensors out (no state, no device choice).

Shapes: CAMs are (N, K, h, w) float32 (K foreground classes), fused maps (N, K, H, W) in [0, 1] at tile
resolution, background masks (N, H, W) bool, class maps (N, H, W) int64 in the class-map convention
(foreground 0..K-1, background K).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def upsample(cams: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (N, K, h, w) maps to (N, K, *size)."""
    if tuple(cams.shape[-2:]) == tuple(size):
        return cams
    return F.interpolate(cams, size=size, mode="bilinear", align_corners=False)


def minmax_normalise(cams: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Scale each (sample, class) map to [0, 1] by its own min and max (a flat map becomes 0)."""
    flat = cams.flatten(2)
    lo = flat.min(dim=2, keepdim=True).values
    hi = flat.max(dim=2, keepdim=True).values
    return ((flat - lo) / (hi - lo + eps)).view_as(cams)


def fuse_cams(cams: Sequence[torch.Tensor], weights: Sequence[float], size: tuple[int, int]) -> torch.Tensor:
    """ReLU, upsample to ``size``, min-max normalise and weight-sum multi-level CAMs -> (N, K, H, W) in [0, 1].

    Levels with weight 0 are skipped (SSHR trains the shallowest head but does not fuse it).
    """
    if len(cams) != len(weights):
        raise ValueError(f"fuse_cams: got {len(cams)} CAM levels but {len(weights)} weights; give one weight per level.")
    total = float(sum(weights))
    if total <= 0:
        raise ValueError(f"fuse_cams: weights must sum to > 0, got {list(weights)}.")
    out = None
    for cam, w in zip(cams, weights):
        if w == 0:
            continue
        part = w * minmax_normalise(upsample(F.relu(cam), size))
        out = part if out is None else out + part
    return out / total


def gate_classes(maps: torch.Tensor, probs: torch.Tensor, threshold: float, keep_top: bool = True) -> torch.Tensor:
    """Zero the class maps of classes whose image-level probability is below ``threshold``.

    Args:
        maps: (N, K, H, W).
        probs: (N, K) in [0, 1] (sigmoid of the deep logits, or the known image labels).
        keep_top: always keep each tile's most probable class, so tissue never ends up with no class.
    """
    keep = probs >= threshold
    if keep_top:
        keep = keep | F.one_hot(probs.argmax(dim=1), probs.shape[1]).bool()
    return maps * keep[:, :, None, None].to(maps.dtype)


def add_background(maps: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Append a background channel: (N, K, H, W) + (N, H, W) bool -> (N, K + 1, H, W).

    Background pixels get score 1 for background and 0 for every tissue class (background is decided by the
    white-glass rule, never learnt).
    """
    bg = background.to(maps.dtype)[:, None]
    return torch.cat([maps * (1 - bg), bg], dim=1)


def scores_to_probs(scores: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Turn (N, K + 1, H, W) non-negative scores into per-pixel shares summing to 1 (all-zero -> uniform)."""
    k = scores.shape[1]
    s = scores.clamp_min(0) + eps / k
    return s / s.sum(dim=1, keepdim=True)


def argmax_class_map(fg_scores: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """(N, K, H, W) foreground scores + (N, H, W) bool background -> (N, H, W) int64 class map (background = K).

    Tissue pixels take the best foreground class, glass pixels the background index K.
    """
    cls = fg_scores.argmax(dim=1)
    return torch.where(background, torch.full_like(cls, fg_scores.shape[1]), cls)


def normalise_per_image(scores: torch.Tensor, quantile: float) -> torch.Tensor:
    """Scale each image's map of each class by its own ``quantile`` (N, K, H, W -> same), so classes compare
    by shape, not by how strongly the network happens to fire for them.

    The usual CAM normalisation (by the map's maximum), made robust by a quantile: a few peaky pixels no longer
    set the scale. All-zero maps (a class gated off) stay zero. Needs no pixel labels.
    """
    flat = scores.flatten(2).float()
    q = torch.quantile(flat, quantile, dim=2) if flat.shape[2] <= 16_000_000 else flat.amax(dim=2)
    return scores / q.clamp_min(1e-6)[..., None, None]


def fill_class_holes(class_map: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """(N, H, W) class maps with every hole enclosed by one of ``classes`` given that class.

    For glands: GlaS annotates a gland with its lumen, which CAMs (firing on the epithelium) leave out.
    """
    from scipy.ndimage import binary_fill_holes

    out = np.array(class_map, copy=True)
    for i in range(out.shape[0]):
        for c in classes:
            filled = binary_fill_holes(out[i] == c)
            out[i][filled] = c
    return out
