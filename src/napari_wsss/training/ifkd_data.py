"""Data side of IFKD fine-tuning: project items -> tile records, per-pixel targets, the training Dataset.

Split from ``ifkd.py`` (the loss and the loop); see its docstring for what the targets mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

CORRECTED = ("corrected", "accepted")

# -- targets ---------------------------------------------------------------------------------------------------

def build_targets(teacher: np.ndarray, mask: np.ndarray | None = None, full: np.ndarray | None = None,
                  labels: np.ndarray | None = None) -> np.ndarray:
    """Combine the teacher's map with the user's corrections.

    Args:
        teacher: (K, H, W) float teacher scores in [0, 1].
        mask: (H, W) uint8 stored class map (class-map convention, background = K), or None.
        full: (H, W) bool, pixels whose target is the mask with full weight (touched / accepted), or None.
        labels: (K,) image-level multi-hot label, or None; absent classes get a zero target (negatives).
    Returns:
        (K, H, W) float32 target: one-hot of ``mask`` where ``full`` (background -> all zeros), the teacher
        elsewhere.
    """
    k = teacher.shape[0]
    target = np.array(teacher, dtype=np.float32, copy=True)
    if labels is not None:
        target *= np.asarray(labels, dtype=np.float32)[:, None, None]
    if mask is not None and full is not None and full.any():
        onehot = (np.asarray(mask)[None] == np.arange(k)[:, None, None]).astype(np.float32)
        target[:, full] = onehot[:, full]
    return target



class TargetDataset(torch.utils.data.Dataset):
    """Training tiles with pixel targets: ``(image (3,S,S), target (K,S,S), full (S,S) bool, valid (S,S) bool)``."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, full: np.ndarray, valid: np.ndarray,
                 mean: Sequence[float], std: Sequence[float], *, flips: bool = True, seed: int = 0,
                 hed: tuple[float, float] = (0.0, 0.0)) -> None:
        self.images, self.targets, self.full, self.valid = images, targets, full, valid  # targets (N, S, S, K)
        self.mean, self.std, self.flips, self.hed = tuple(mean), tuple(std), flips, hed
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from ..data.datasets import _augment, normalise

        img, tgt, full, valid = _augment([self.images[i], self.targets[i], self.full[i], self.valid[i]], self.rng,
                                         self.flips, False, self.hed)
        return (normalise(img[None], self.mean, self.std)[0],
                torch.from_numpy(np.ascontiguousarray(tgt)).permute(2, 0, 1).float(),
                torch.from_numpy(np.ascontiguousarray(full)), torch.from_numpy(np.ascontiguousarray(valid)))


# -- project data ----------------------------------------------------------------------------------------------

@dataclass
class TileRecord:
    key: str
    status: str
    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray | None = None  # (H, W) uint8
    full: np.ndarray | None = None  # (H, W) bool
    labels: np.ndarray | None = None  # (K,) image-level label from the file name
    touched_pixels: int = 0


def item_image_path(project: Any, item: Any) -> Path | None:
    """File of a tile item (relative paths are relative to the project's source folder); None for regions."""
    if not item.image:
        return None
    p = Path(item.image)
    if p.is_absolute():
        return p
    src = Path(project.source)
    return (src if src.is_dir() else src.parent) / p


def corrected_items(project: Any) -> list[Any]:
    """Tile items the user corrected or accepted that have a stored mask and an image file."""
    out = []
    for it in project.items():
        if it.status in CORRECTED and it.mask is not None:
            path = item_image_path(project, it)
            if path is not None and path.is_file():
                out.append(it)
    return out


def _read_record(project: Any, item: Any, with_mask: bool) -> TileRecord:
    from ..data.tiles import parse_labels_from_name, read_rgb

    path = item_image_path(project, item)
    image = read_rgb(path)
    try:
        labels = parse_labels_from_name(path.name, project.schema.n_foreground)
    except ValueError:
        labels = None
    rec = TileRecord(item.key, item.status, image, labels=labels)
    if with_mask:
        mask = project.load_mask(item.key)
        touched = project.load_touched(item.key)
        if mask is None or mask.shape != image.shape[:2]:
            raise ValueError(f"Project item {item.key!r}: its mask is missing or does not match its image "
                             f"({None if mask is None else mask.shape} vs {image.shape[:2]}).")
        touched = touched if touched is not None and touched.shape == mask.shape else np.zeros(mask.shape, bool)
        rec.mask, rec.touched_pixels = mask, int(touched.sum())
        rec.full = np.ones(mask.shape, bool) if item.status == "accepted" else touched
    return rec



def _resize_stack(records: list[TileRecord], teacher: list[np.ndarray], size: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Images (N,S,S,3) uint8, targets (N,S,S,K) float32, full and valid (N,S,S) bool at the training size."""
    from ..data.datasets import resize_mask, resize_rgb
    from ..data.tiles import is_background

    imgs, tgts, fulls, valids = [], [], [], []
    for r, t in zip(records, teacher):
        target = build_targets(t, r.mask, r.full, r.labels)
        full = r.full if r.full is not None else np.zeros(r.image.shape[:2], bool)
        valid = ~is_background(r.image) | full
        tt = torch.from_numpy(target)[None]
        if tuple(tt.shape[-2:]) != (size, size):
            tt = F.interpolate(tt, size=(size, size), mode="bilinear", align_corners=False,
                               antialias=size < target.shape[-1])
        imgs.append(resize_rgb(r.image, size))
        tgts.append(tt[0].permute(1, 2, 0).numpy())
        fulls.append(resize_mask(full.astype(np.uint8), size).astype(bool))
        valids.append(resize_mask(valid.astype(np.uint8), size).astype(bool))
    return np.stack(imgs), np.stack(tgts).astype(np.float32), np.stack(fulls), np.stack(valids)
