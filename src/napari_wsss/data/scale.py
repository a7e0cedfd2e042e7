"""The model's working scale, and cutting tiles of any size into training crops at that scale.

A model version is trained on square tiles of ``tile_size`` pixels shrunk to ``input_size`` (its card records
both); inference rescales every tile by the same factor before the network sees it (``inference/predict.py``).
Training from image labels, fine-tuning, evaluation and inference must all show the network tissue at that one
scale (microns per pixel), whatever the tile's size or shape: a tile is rescaled isotropically by
:func:`working_scale`, then cut into ``input_size`` crops, never squeezed to ``input_size x input_size``.

Arrays are ``(H, W)`` or ``(H, W, C)`` (``data/tiles.py``'s ``(y, x)`` convention); sizes are in pixels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

MIN_SIDE = 8  # inference never shrinks a side below this (the networks' total stride)


def working_scale(input_size: int, tile_size: int) -> float:
    """The factor a tile is rescaled by before the network sees it: ``input_size / tile_size``.

    The one rule of the project: the trainers record it in the card (``config["scale"]``), inference, evaluation
    and fine-tuning read it back through ``ModelCard.working_scale``.
    """
    if input_size <= 0 or tile_size <= 0:
        raise ValueError(f"Working scale needs positive sizes, got input size {input_size} and tile size "
                         f"{tile_size}; check the card's input_size and config['tile_size'].")
    return float(input_size) / float(tile_size)


def scaled_shape(shape: tuple[int, ...], scale: float) -> tuple[int, int]:
    """``(H, W)`` of a tile after rescaling by ``scale`` (each side rounded, at least :data:`MIN_SIDE`)."""
    h, w = int(shape[0]), int(shape[1])
    if scale == 1.0:
        return h, w
    return max(MIN_SIDE, round(h * scale)), max(MIN_SIDE, round(w * scale))


def interpolate(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, H, W) float -> (N, C, *size): bilinear, antialiased when shrinking (what inference applies)."""
    import torch.nn.functional as F

    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def rescale(array: np.ndarray, scale: float, *, nearest: bool = False) -> np.ndarray:
    """Rescale an image, map or mask by ``scale`` to :func:`scaled_shape` (same dtype).

    Images and soft maps are resampled as inference does (:func:`interpolate`; integer dtypes rounded back);
    class maps and bool masks with ``nearest`` (``nearest-exact``: the same pixel grid as the bilinear one).

    Args:
        array: (H, W) or (H, W, C) uint8, bool or float.
    """
    import torch
    import torch.nn.functional as F

    array = np.asarray(array)
    size = scaled_shape(array.shape, scale)
    if size == tuple(array.shape[:2]):
        return array
    flat = array if array.ndim == 3 else array[..., None]
    flat = np.ascontiguousarray(flat)
    if not flat.flags.writeable:  # read-only inputs (e.g. from PIL) would make torch warn
        flat = flat.copy()
    t = torch.from_numpy(flat).permute(2, 0, 1)[None]
    if nearest:
        out = F.interpolate(t.float(), size=size, mode="nearest-exact")
    else:
        out = interpolate(t.float(), size)
    out = out[0].permute(1, 2, 0).numpy()
    if array.dtype == bool:
        out = out > 0.5
    elif np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    out = out.astype(array.dtype, copy=False)
    return out if array.ndim == 3 else out[..., 0]


def n_crops(shape: tuple[int, ...], size: int) -> int:
    """Crops of ``size`` x ``size`` per epoch that cover a tile of ``shape`` about once (at least one)."""
    return max(1, round(int(shape[0]) * int(shape[1]) / (size * size)))


def random_crop_origin(shape: tuple[int, ...], size: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left ``(y, x)`` of a random ``size`` crop inside a tile of ``shape`` (0 along a side shorter than
    ``size``: that side is padded instead)."""
    return (int(rng.integers(0, max(0, int(shape[0]) - size) + 1)),
            int(rng.integers(0, max(0, int(shape[1]) - size) + 1)))


def crop_pad(array: np.ndarray, y: int, x: int, size: int, fill: float | bool) -> np.ndarray:
    """``array[y:y+size, x:x+size]`` as a full ``size`` x ``size`` array, ``fill`` where the tile ends.

    Args:
        array: (H, W) or (H, W, C); fill: the value of padded pixels (white glass for images, an ignore value
            for targets).
    """
    win = array[y : y + size, x : x + size]
    if win.shape[0] == size and win.shape[1] == size:
        return win
    out = np.full((size, size, *array.shape[2:]), fill, dtype=array.dtype)
    out[: win.shape[0], : win.shape[1]] = win
    return out
