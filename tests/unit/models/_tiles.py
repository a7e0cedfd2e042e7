"""Tiny H&E-like tiles with known labels and masks, for SSHR/multistage tests (independent of the generator)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from napari_wsss.classes import LUAD_HISTOSEG

# One mean colour per tissue class (TE, NEC, LYM, TAS); texture noise is added per pixel.
COLOURS = np.array([[120, 40, 140], [230, 140, 190], [50, 40, 150], [220, 110, 150]], dtype=np.float32)


def make_tile(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 image, (H, W) uint8 class map (background 4), (4,) int64 labels."""
    a, b = rng.choice(4, size=2, replace=False)
    mask = np.full((size, size), a, dtype=np.uint8)
    cut = rng.integers(size // 4, 3 * size // 4)
    if rng.random() < 0.7:
        mask[:, cut:] = b
    if rng.random() < 0.5:  # a patch of white glass
        mask[: size // 4, : size // 4] = 4
    img = np.full((size, size, 3), 245.0, dtype=np.float32)
    for c in range(4):
        sel = mask == c
        img[sel] = COLOURS[c] + rng.normal(0, 12, size=(int(sel.sum()), 3))
    img[mask == 4] += rng.normal(0, 3, size=(int((mask == 4).sum()), 3))
    labels = np.array([int((mask == c).any()) for c in range(4)], dtype=np.int64)
    return np.clip(img, 0, 255).astype(np.uint8), mask, labels


def write_tiny_dataset(root: Path, n_train: int = 24, n_eval: int = 4, size: int = 64, seed: int = 0) -> Path:
    """LUAD-HistoSeg layout: training/ (labels in names), val/ and test/ with img/ + mask/."""
    rng = np.random.default_rng(seed)
    (root / "training").mkdir(parents=True, exist_ok=True)
    for i in range(n_train):
        img, _, lab = make_tile(rng, size)
        Image.fromarray(img).save(root / "training" / f"t{i:03d}-[{' '.join(map(str, lab))}].png")
    for split in ("val", "test"):
        (root / split / "img").mkdir(parents=True, exist_ok=True)
        (root / split / "mask").mkdir(parents=True, exist_ok=True)
        for i in range(n_eval):
            img, mask, _ = make_tile(rng, size)
            Image.fromarray(img).save(root / split / "img" / f"{split}{i:02d}.png")
            m = Image.fromarray(mask, mode="P")
            m.putpalette(LUAD_HISTOSEG.pil_palette())
            m.save(root / split / "mask" / f"{split}{i:02d}.png")
    return root
