"""Synthetic H&E tissue with exact ground truth (LUAD-HistoSeg classes), for demos, tests and benchmarks.

Rendering (see ``synthetic_render``): a layout of smooth noise-thresholded class regions and glass gaps; per
class, nuclei of typical size, density and shape (``synthetic_nuclei``) and a matrix texture (eosinophilic
cytoplasm around gland rings, oriented collagen fibres, granular necrotic debris, lymphoid haze); haematoxylin
and eosin concentrations turned into RGB by Beer-Lambert, ``I = I0 * exp(-(c_H * h + c_E * e))``, with
per-tile perturbed stain vectors and intensities, slight blur and sensor noise. ``difficulty`` in [0, 1]
raises stain variation, blur, noise and boundary irregularity and makes the classes' morphologies more alike.

Conventions: images are (H, W, 3) uint8 RGB, class maps (H, W) uint8 with 0 TE, 1 NEC, 2 LYM, 3 TAS and
4 background (white glass, every near-white pixel and only those), as ``classes.LUAD_HISTOSEG``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import atomic_save, atomic_write_bytes
from ..classes import LUAD_HISTOSEG
from .synthetic_render import N_FG, Spec, layout, morphology, random_stain, render_region
from .synthetic_slide import _share, write_slide

__all__ = ["SyntheticTile", "generate_tile", "write_dataset", "write_slide", "tile_spec", "label_from_mask"]


@dataclass
class SyntheticTile:
    """One synthetic tile.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        mask: (H, W) uint8 class map (0..3 classes, 4 background).
        labels: (4,) int64 multi-hot, 1 where that class covers >= min_fraction of the tile.
    """

    image: np.ndarray
    mask: np.ndarray
    labels: np.ndarray


def label_from_mask(mask: np.ndarray, min_fraction: float = 0.02) -> np.ndarray:
    """(4,) int64 multi-hot image label of a class map: class present if it covers >= min_fraction of it."""
    frac = np.bincount(np.asarray(mask).ravel(), minlength=N_FG + 1)[:N_FG] / max(mask.size, 1)
    return (frac >= min_fraction).astype(np.int64)


def _check_difficulty(difficulty: float) -> float:
    d = float(difficulty)
    if not 0.0 <= d <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty!r}.")
    return d


def tile_spec(rng: np.random.Generator, size: int, difficulty: float, classes: Sequence[int] | None,
              min_fraction: float) -> Spec:
    """Draw the spec of one tile: classes, layout scales, glass gaps, stain, blur, noise, morphology."""
    d = _check_difficulty(difficulty)
    if classes is None:
        k = int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25]))
        chosen = tuple(sorted(int(c) for c in rng.choice(N_FG, size=k, replace=False)))
        forced = False
    else:
        chosen = tuple(sorted({int(c) for c in classes}))
        if not chosen or any(c < 0 or c >= N_FG for c in chosen):
            raise ValueError(f"classes must be a non-empty subset of 0..{N_FG - 1} "
                             f"({', '.join(LUAD_HISTOSEG.foreground_names)}), got {list(classes)!r}.")
        forced = True
    spec = Spec(
        seed=int(rng.integers(0, 2**32)), difficulty=d, classes=chosen,
        class_bias=rng.normal(0, 0.1, N_FG).astype(np.float32),
        class_cell=float(rng.uniform(0.35, 0.8) * size), tissue_cell=float(rng.uniform(0.4, 0.9) * size),
        tissue_thr=-np.inf, hole_p=float(rng.uniform(0.03, 0.15) if rng.random() < 0.5 else 0.0),
        cleft_thr=float(rng.uniform(0.12, 0.22) if rng.random() < 0.5 else 0.0),
        fibre_angle=float(rng.uniform(0, np.pi)), stain=random_stain(rng, d),
        blur=float(rng.uniform(0.45, 0.7) + 0.6 * d * rng.random()),
        noise=float(1.5 + 3.5 * d * rng.random()), morph=morphology(rng, d),
    )
    if rng.random() < 0.6:  # usually some glass: a gap covering a few to a third of the tile
        from .synthetic_render import tissue_field

        t = tissue_field(spec, 0, 0, size, size)
        spec.tissue_thr = float(np.quantile(t, rng.uniform(0.04, 0.35)))
    if forced and len(chosen) > 1:
        # Nudge layout biases until every requested class covers a safe margin above min_fraction.
        target = max(2.5 * min_fraction, 0.6 / len(chosen) / 2)
        for _ in range(8):
            cm, _ = layout(spec, 0, 0, size, size)
            frac = np.bincount(cm.ravel(), minlength=N_FG) / cm.size
            low = [c for c in chosen if frac[c] < target]
            if not low:
                break
            for c in low:
                spec.class_bias[c] += 0.2
    return spec


def generate_tile(seed: int | np.random.Generator, size: int = 224, difficulty: float = 0.5,
                  classes: Sequence[int] | None = None, min_fraction: float = 0.02) -> SyntheticTile:
    """Render one synthetic H&E tile with its exact class map and image-level label.

    Args:
        seed: int seed or a numpy Generator (consumed).
        size: tile side, px (about 1 um/px, LUAD-HistoSeg's 10x).
        difficulty: 0 (textbook) .. 1 (stain, blur, noise and morphology overlap); 0.5 default.
        classes: foreground class indices that must appear (each gets a share of the tissue); None = random 1-3.
        min_fraction: a class is in ``labels`` when it covers at least this fraction of the tile.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if size < 16:
        raise ValueError(f"size must be >= 16 px, got {size}.")
    spec = tile_spec(rng, size, difficulty, classes, min_fraction)
    img, mask = render_region(spec, 0, 0, size, size, halo=6, rng=rng)
    return SyntheticTile(img, mask, label_from_mask(mask, min_fraction))


def _label_str(labels: np.ndarray) -> str:
    return "[" + " ".join(str(int(v)) for v in labels) + "]"


def _save_png(path: Path, arr: np.ndarray, palette: bool = False) -> None:
    """RGB PNG, or a palette PNG of a class map (values = class indices, LUAD-HistoSeg colours)."""
    im = Image.fromarray(arr)
    if palette:
        im = im.convert("P")  # mode "L" -> "P" keeps the values as palette indices
        im.putpalette(LUAD_HISTOSEG.pil_palette())
    with atomic_save(path) as tmp:
        im.save(tmp, format="PNG")
        _share(tmp)



def write_dataset(out_dir: str | os.PathLike, n_train: int = 200, n_val: int = 20, n_test: int = 20,
                  size: int = 224, seed: int = 0, difficulty: float = 0.5, shown_as: str | None = None) -> Path:
    """Write a LUAD-HistoSeg-layout synthetic dataset and return ``out_dir``.

    Layout: ``training/syn{seed}-{i:05d}-0-[a b c d].png`` (label in the name), ``val/img|mask/<name>.png``
    and ``test/img|mask/<name>.png`` (masks: palette PNG of the class map), ``README.md``. Files are written
    atomically; the same arguments always give the same bytes. ``shown_as``: the folder the README names (when
    ``out_dir`` is a folder built aside and renamed into place).
    """
    out = Path(out_dir)
    d = _check_difficulty(difficulty)
    for name, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if int(n) < 0:
            raise ValueError(f"{name} must be >= 0, got {n}.")
    root = np.random.SeedSequence(int(seed))
    splits = dict(zip(("training", "val", "test"), root.spawn(3)))
    for split, n in (("training", n_train), ("val", n_val), ("test", n_test)):
        seqs = splits[split].spawn(int(n))
        for i, ss in enumerate(seqs):
            tile = generate_tile(np.random.default_rng(ss), size=size, difficulty=d)
            tag = {"training": "", "val": "v", "test": "t"}[split]
            stem = f"syn{seed}{tag}-{i:05d}-0-{_label_str(tile.labels)}"
            if split == "training":
                _save_png(out / "training" / f"{stem}.png", tile.image)
            else:
                _save_png(out / split / "img" / f"{stem}.png", tile.image)
                _save_png(out / split / "mask" / f"{stem}.png", tile.mask, palette=True)
    readme = (
        "# Synthetic LUAD-HistoSeg-style dataset\n\n"
        "Generated by napari-wsss's synthetic H&E generator (no real patient data):\n\n"
        "```python\nfrom napari_wsss.data.synthetic import write_dataset\n"
        f"write_dataset({shown_as or str(out)!r}, n_train={n_train}, n_val={n_val}, n_test={n_test}, size={size}, "
        f"seed={seed}, difficulty={d})\n```\n\n"
        "- `training/*-[TE NEC LYM TAS].png`: image-level labels in the file name (1 = class covers >= 2% of the tile).\n"
        "- `val/` and `test/`: `img/` RGB tiles and `mask/` palette PNGs with the exact class map "
        "(0 TE, 1 NEC, 2 LYM, 3 TAS, 4 background = white glass).\n"
    )
    atomic_write_bytes(out / "README.md", readme.encode())
    return out
