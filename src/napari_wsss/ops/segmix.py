"""SegMix batch transform: swap grid cells across the images of a batch and recompute image-level labels.

Pure functions, tensors in, tensors out. Every image of a batch (N, C, H, W) is cut into a square grid of
``patch`` x ``patch`` pixel cells (``H // patch`` rows by ``W // patch`` columns; a remainder strip at the
bottom/right stays in place). A fraction ``ratio`` of the grid positions is chosen; at each chosen position
the N cells are passed round one random N-cycle drawn per batch (image ``p[i]`` receives the cell of image
``p[i+1]``), so no chosen cell stays home and every pixel of the batch appears exactly once in the output (a
permutation). One cycle for all chosen positions means each mixed image holds cells of exactly two images
(itself and its partner): a fresh cycle per position would fill an image with cells of up to N sources and
make its union label nearly all-ones at high ratios (measured: the loss collapses to ~0, see the benchmark).

Labels are image-level only (the weakly supervised assumption: a cell carries its source image's label):

* hard: the union of the labels of the sources the mixed image holds pixels from;
* soft: area-weighted, ``sum_s (area from s / H W) * y_s`` (a convex combination, so it stays in [0, 1]).
"""

from __future__ import annotations

import torch


def plan_mix(n: int, height: int, width: int, patch: int, ratio: float,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Which batch image each grid cell of each output image comes from.

    Returns:
        (N, H // patch, W // patch) int64 on the CPU: ``source[i, r, c]`` is the batch index whose cell
        (r, c) lands in output image i at the same position (``source[i, r, c] == i`` for unswapped cells).

    Raises:
        ValueError: ``patch`` < 1, ``patch`` larger than the image, or ``ratio`` outside [0, 1].
    """
    if patch < 1 or patch > min(height, width):
        raise ValueError(f"SegMix patch must be between 1 and the image side {min(height, width)} px, got {patch}; "
                         "lower --segmix-patch.")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"SegMix shuffle ratio must be in [0, 1], got {ratio}.")
    gh, gw = height // patch, width // patch
    source = torch.arange(n).view(n, 1, 1).repeat(1, gh, gw)
    k = int(round(ratio * gh * gw))
    if n < 2 or k == 0:
        return source
    cells = torch.randperm(gh * gw, generator=generator)[:k]
    p = torch.randperm(n, generator=generator)
    partner = torch.empty(n, dtype=torch.int64)
    partner[p] = torch.roll(p, -1)  # an N-cycle: a derangement, so every chosen cell really moves
    flat = source.view(n, gh * gw)
    flat[:, cells] = partner[:, None]
    return source


def apply_mix(x: torch.Tensor, source: torch.Tensor, patch: int) -> torch.Tensor:
    """Rearrange the cells of ``x`` (N, C, H, W) as ``source`` (N, gh, gw) says; returns a new tensor."""
    n, c, h, w = x.shape
    gh, gw = source.shape[1:]
    out = x.clone()
    if gh == 0 or gw == 0:
        return out
    src = source.to(x.device)
    cells = x[:, :, : gh * patch, : gw * patch].reshape(n, c, gh, patch, gw, patch).permute(0, 2, 4, 1, 3, 5)
    rows = torch.arange(gh, device=x.device).view(1, gh, 1)
    cols = torch.arange(gw, device=x.device).view(1, 1, gw)
    mixed = cells[src, rows, cols]  # (N, gh, gw, C, p, p)
    out[:, :, : gh * patch, : gw * patch] = mixed.permute(0, 3, 1, 4, 2, 5).reshape(n, c, gh * patch, gw * patch)
    return out


def source_weights(source: torch.Tensor, patch: int, height: int, width: int) -> torch.Tensor:
    """(N, N) float32 area shares: ``w[i, s]`` = fraction of output image i's pixels that come from image s.

    Rows sum to 1 (the uncovered remainder strip counts for the image itself).
    """
    n = source.shape[0]
    counts = torch.zeros(n, n, dtype=torch.float64)
    counts.scatter_add_(1, source.reshape(n, -1), torch.full((n, source[0].numel()), float(patch * patch),
                                                             dtype=torch.float64))
    counts += torch.eye(n, dtype=torch.float64) * (height * width - source[0].numel() * patch * patch)
    return (counts / (height * width)).float()


def mixed_labels(y: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Image labels (N, K) multi-hot + (N, N) area shares -> (hard union (N, K), soft area-weighted (N, K)),
    both float32 on ``y``'s device."""
    yf = y.float()
    w = weights.to(yf.device)
    hard = ((w > 0).float() @ yf).clamp(max=1.0)
    soft = w @ yf
    return hard, soft


def mix_batch(x: torch.Tensor, y: torch.Tensor, patch: int, ratio: float,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SegMix one batch.

    Args:
        x: (N, C, H, W) float images (normalised or not: cells are moved, never changed).
        y: (N, K) multi-hot image labels.
        patch: cell side in pixels.
        ratio: fraction of grid positions whose cells are swapped across images (0: no change).
        generator: CPU torch Generator for reproducible plans.
    Returns:
        (x_mixed (N, C, H, W), y_hard (N, K) float32, y_soft (N, K) float32).
    """
    if x.ndim != 4 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"mix_batch expects images (N, C, H, W) and labels (N, K) with the same N, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}.")
    n, _, h, w = x.shape
    source = plan_mix(n, h, w, patch, ratio, generator)
    hard, soft = mixed_labels(y, source_weights(source, patch, h, w))
    return apply_mix(x, source, patch), hard, soft
