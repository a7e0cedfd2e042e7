"""torch Datasets over tile folders. Tiles are read once into memory (uint8) so epochs cost no disk I/O.

Items are ``(image, target)`` with image (3, S, S) float32 normalised by ``mean``/``std`` (images scaled to
0..1 first) and S = ``size``; tiles are shown at the model's working scale (``data/scale.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .tiles import LabelledTile, read_rgb


def resize_rgb(img: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8, bilinear (area-like when shrinking)."""
    if img.shape[0] == size and img.shape[1] == size:
        return img
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR, reducing_gap=2.0))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """(H, W) uint8 class map -> (size, size), nearest neighbour."""
    if mask.shape[0] == size and mask.shape[1] == size:
        return mask
    from PIL import Image

    return np.asarray(Image.fromarray(mask).resize((size, size), Image.NEAREST))


def normalise(images: np.ndarray, mean: Sequence[float], std: Sequence[float],
              device: torch.device | str | None = None) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 normalised tensor, on ``device`` (default: CPU).

    The uint8 pixels travel to the device and are converted there: a quarter of the bytes of float32, and on
    a GPU the conversion was the largest host cost of end-to-end prediction (docs/benchmarks.md).
    """
    arr = np.ascontiguousarray(images)
    if not arr.flags.writeable:  # read-only inputs (e.g. from PIL) would make torch warn
        arr = arr.copy()
    t = torch.from_numpy(arr)
    if device is not None and torch.device(device).type == "cuda":  # pinned: the copy overlaps earlier work
        t = t.pin_memory().to(device, non_blocking=True)
    elif device is not None:
        t = t.to(device)
    t = t.permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32, device=t.device)[None, :, None, None]
    s = torch.tensor(std, dtype=torch.float32, device=t.device)[None, :, None, None]
    return (t - m) / s


def _augment(arrays: list[np.ndarray], rng: np.random.Generator, flips: bool, rotate: bool,
             hed: tuple[float, float] = (0.0, 0.0)) -> list[np.ndarray]:
    """Augment ``arrays`` alike (geometry); ``arrays[0]`` is the (H, W, 3) uint8 image, the only one recoloured.

    ``hed`` = (scale, shift) of the H&E stain jitter (``ops.stain.hed_jitter``; (0, 0) draws nothing, so runs
    without it see the same random stream as before it existed).
    """
    # Tissue has no preferred orientation: flips (and 90-degree turns) are free, label-preserving data.
    if flips and rng.random() < 0.5:
        arrays = [a[:, ::-1] for a in arrays]
    if flips and rng.random() < 0.5:
        arrays = [a[::-1] for a in arrays]
    if rotate and rng.random() < 0.5:
        arrays = [np.swapaxes(a, 0, 1) for a in arrays]
    if hed[0] or hed[1]:  # labs and scanners differ in how much of each stain a slide holds
        from ..ops.stain import hed_jitter

        arrays = [hed_jitter(arrays[0], rng, *hed), *arrays[1:]]
    return arrays


class TileLabelDataset(Dataset):
    """Training tiles with image-level labels -> ``(image (3,S,S) float32, labels (K,) float32)``.

    Tiles of the training tile size (``tile_size`` square, the normal case) are resized to ``size`` x ``size``
    as always: that is the rescaling by the working scale ``size / tile_size`` inference applies. Any other tile
    (non-square, smaller, larger) is rescaled by the same factor (isotropically, ``data.scale``) and a random
    ``size`` crop is taken each time it is drawn, padded with white glass where the tile is smaller. What its
    labels then mean: a smaller tile's crop holds all of it, so its labels stay exact; a larger tile's crop may
    miss a class the tile holds (label noise, the price of keeping the scale; cut such images into tiles of the
    training size with ``export`` for exact labels). ``tile_size`` None: the larger side of the first tile
    (the rule ``training.common.training_tiles`` records in the card).
    ``hed``: (scale, shift) of the H&E stain jitter applied per item (see ``_augment``).
    """

    def __init__(self, tiles: Sequence[LabelledTile], size: int, mean: Sequence[float], std: Sequence[float],
                 *, flips: bool = True, rotate: bool = False, seed: int = 0,
                 hed: tuple[float, float] = (0.0, 0.0), tile_size: int | None = None) -> None:
        from .scale import rescale, working_scale

        if not tiles:
            raise ValueError("TileLabelDataset: no training tiles; check the training folder.")
        raw = [read_rgb(t.path) for t in tiles]
        self.tile_size = int(tile_size or max(raw[0].shape[:2]))
        self.scale = working_scale(size, self.tile_size)
        self.size = size
        images = [resize_rgb(im, size) if im.shape[:2] == (self.tile_size, self.tile_size) else rescale(im, self.scale)
                  for im in raw]
        # (N, S, S, 3) uint8 when every tile has the training size; else a list of tiles at the working scale
        self.images = np.stack(images) if all(im.shape[:2] == (size, size) for im in images) else images
        self.labels = np.stack([np.asarray(t.labels, dtype=np.float32) for t in tiles])
        self.paths = [Path(t.path) for t in tiles]
        self.mean, self.std = tuple(mean), tuple(std)
        self.flips, self.rotate, self.hed = flips, rotate, (float(hed[0]), float(hed[1]))
        self.rng = np.random.default_rng(seed)
        self.crop_rng = np.random.default_rng([seed, 1])  # own stream: the normal case draws exactly as before

    def __len__(self) -> int:
        return len(self.images)

    def crop(self, i: int) -> np.ndarray:
        """Tile ``i`` at the working scale as a ``size`` x ``size`` uint8 crop (random where it is larger)."""
        from .scale import crop_pad, random_crop_origin

        img = self.images[i]
        if img.shape[:2] == (self.size, self.size):
            return img
        y, x = random_crop_origin(img.shape, self.size, self.crop_rng)
        return crop_pad(img, y, x, self.size, 255)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        (img,) = _augment([self.crop(i)], self.rng, self.flips, self.rotate, self.hed)
        return normalise(img[None], self.mean, self.std)[0], torch.from_numpy(self.labels[i])


class TileMaskDataset(Dataset):
    """Tiles with pixel targets -> ``(image (3,S,S) float32, mask (S,S) int64)``.

    ``masks`` are (N, H, W) uint8 class maps (e.g. offline pseudo-masks; 255 = ignore); ``hed`` as
    :class:`TileLabelDataset`.
    """

    def __init__(self, images: np.ndarray, masks: np.ndarray, mean: Sequence[float], std: Sequence[float],
                 *, flips: bool = True, rotate: bool = False, seed: int = 0,
                 hed: tuple[float, float] = (0.0, 0.0)) -> None:
        if len(images) != len(masks):
            raise ValueError(f"TileMaskDataset: {len(images)} images but {len(masks)} masks; they must pair up.")
        self.images, self.masks = images, masks
        self.mean, self.std = tuple(mean), tuple(std)
        self.flips, self.rotate, self.hed = flips, rotate, (float(hed[0]), float(hed[1]))
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, mask = _augment([self.images[i], self.masks[i]], self.rng, self.flips, self.rotate, self.hed)
        return (normalise(img[None], self.mean, self.std)[0],
                torch.from_numpy(np.ascontiguousarray(mask)).long())
