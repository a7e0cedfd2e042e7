"""Data side of IFKD fine-tuning: project items -> tile records, per-pixel targets, the training Dataset.

Split from ``ifkd.py`` (the loss and the loop); see its docstring for what the targets mean.

Geometry: every tile (any size or shape) is rescaled by the base model's working scale (``ModelCard.working_scale``,
the factor inference applies) into a :class:`ScaledTile`, and the network trains on ``input_size`` crops of it
(:class:`TargetDataset`), never on a tile squeezed to a square. The image, the teacher's map, the stored mask,
the full-weight pixels and the valid pixels are rescaled by the same factor onto the same pixel grid and cut by
the same crop box; pixels past a tile's edge are padded as white glass with no target (``valid`` False).
Memory: a tile is kept only at the working scale, about ``6 + 2 K`` bytes per working-scale pixel (image,
float16 targets, masks); its full-resolution image is read again from its file (a slide region: from the
slide, :class:`RegionSource`) when the teacher changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

CORRECTED = ("corrected", "accepted")

# -- targets ---------------------------------------------------------------------------------------------------

def build_targets(teacher: np.ndarray, mask: np.ndarray | None = None, full: np.ndarray | None = None,
                  labels: np.ndarray | None = None) -> np.ndarray:
    """Combine the teacher's map with the user's corrections.

    Args:
        teacher: (K, H, W) float teacher scores in [0, 1].
        mask: (H, W) uint8 stored class map (class-map convention, background = K), or None.
        full: (H, W) bool, pixels whose target is the mask with full weight (touched / accepted), or None.
        labels: (K,) image-level multi-hot label, or (K, H, W) per pixel (a mosaic of labelled patches,
            ``data.patch_mosaic``), or None; absent classes get a zero target (negatives).
    Returns:
        (K, H, W) float32 target: one-hot of ``mask`` where ``full`` (background -> all zeros), the teacher
        elsewhere.
    """
    k = teacher.shape[0]
    target = np.array(teacher, dtype=np.float32, copy=True)
    if labels is not None:
        labels = np.asarray(labels, dtype=np.float32)
        target *= labels if labels.ndim == 3 else labels[:, None, None]
    if mask is not None and full is not None and full.any():
        onehot = (np.asarray(mask)[None] == np.arange(k)[:, None, None]).astype(np.float32)
        target[:, full] = onehot[:, full]
    return target



@dataclass
class ScaledTile:
    """One training tile at the working scale: what :class:`TargetDataset` cuts its crops from.

    Attributes:
        image: (h, w, 3) uint8, the tile rescaled by the working scale.
        mask, full, valid: (h, w) uint8 stored class map (or None), bool full-weight pixels, bool pixels that
            take part (tissue or corrected); rescaled with nearest neighbours on the image's pixel grid.
        target: (h, w, K) float16 combined target (:func:`build_targets`), set by :meth:`set_teacher`.
        repeat: how many times over its crops are drawn per epoch (corrected tiles are few).
    """

    key: str
    path: Path | RegionSource | None
    source_shape: tuple[int, int]
    image: np.ndarray
    mask: np.ndarray | None
    full: np.ndarray
    valid: np.ndarray
    labels: np.ndarray | None = None
    repeat: int = 1
    target: np.ndarray | None = None
    source: np.ndarray | None = None  # the full-resolution image when there is no file to read it again from

    @property
    def needs_teacher(self) -> bool:
        """False for accepted tiles: the user vouched for every pixel, the teacher's map is not used."""
        return not bool(self.full.all())

    def set_teacher(self, teacher: np.ndarray | None, k: int) -> None:
        """Combine the teacher's (K, h, w) map at the working scale (None: zeros) with the corrections."""
        if teacher is None:
            teacher = np.zeros((k, *self.image.shape[:2]), np.float32)
        if tuple(teacher.shape[-2:]) != tuple(self.image.shape[:2]):
            raise ValueError(f"Tile {self.key!r}: teacher map {teacher.shape[-2:]} does not match the tile at the "
                             f"working scale {self.image.shape[:2]}; rescale it with data.scale.rescale first.")
        self.target = build_targets(teacher, self.mask, self.full, self.labels).transpose(1, 2, 0).astype(np.float16)


def scale_record(record: TileRecord, scale: float, repeat: int = 1, glass_min_size: int = 64) -> ScaledTile:
    """A full-resolution tile record -> :class:`ScaledTile` at ``scale`` (the base card's working scale).

    ``glass_min_size``: the base model's glass rule (``inference.predict.glass_min_size``; 0 = no glass), so the
    pixels inference calls glass are the ones that take no part.
    """
    from ..data.scale import rescale
    from ..data.tiles import is_background

    full = record.full if record.full is not None else np.zeros(record.image.shape[:2], bool)
    glass = (is_background(record.image, min_size=glass_min_size) if glass_min_size > 0
             else np.zeros(record.image.shape[:2], bool))
    valid = ~glass | full
    if record.valid is not None:
        valid &= record.valid
    labels = record.labels
    if labels is not None and np.ndim(labels) == 3:  # per-pixel labels: onto the working-scale grid
        labels = rescale(np.moveaxis(labels, 0, -1), scale, nearest=True)
        labels = np.moveaxis(labels if labels.ndim == 3 else labels[..., None], -1, 0)
    return ScaledTile(record.key, record.path, tuple(record.image.shape[:2]), rescale(record.image, scale),
                      None if record.mask is None else rescale(record.mask, scale, nearest=True),
                      rescale(full, scale, nearest=True), rescale(valid, scale, nearest=True), labels, repeat,
                      source=record.image if record.path is None else None)


class TargetDataset(torch.utils.data.Dataset):
    """Crops of tiles at the working scale: ``(image (3,S,S), target (K,S,S), full (S,S) bool, valid (S,S) bool)``.

    Each epoch draws ``data.scale.n_crops`` random crops per tile (times its ``repeat``): about one pass over
    its pixels, fresh positions every epoch. A tile of the model's training size is exactly one crop. With
    ``min_len`` an epoch makes as many passes as it takes to draw at least that many crops.
    """

    def __init__(self, tiles: Sequence[ScaledTile], size: int, mean: Sequence[float], std: Sequence[float], *,
                 flips: bool = True, seed: int = 0, hed: tuple[float, float] = (0.0, 0.0), min_len: int = 0) -> None:
        from ..data.scale import n_crops

        self.tiles, self.size = list(tiles), int(size)
        self.index = np.asarray([i for i, t in enumerate(self.tiles)
                                 for _ in range(n_crops(t.image.shape, self.size) * t.repeat)], np.int64)
        if 0 < len(self.index) < min_len:  # few tiles: more passes per epoch (same shares per tile)
            self.index = np.resize(self.index, int(min_len))
        self.mean, self.std, self.flips, self.hed = tuple(mean), tuple(std), flips, hed
        self.rng = np.random.default_rng(seed)
        self.crop_rng = np.random.default_rng([seed, 1])

    def __len__(self) -> int:
        return len(self.index)

    def crop(self, tile: int, y: int, x: int) -> list[np.ndarray]:
        """Image, target, full and valid of ``tiles[tile]`` at ``[y:y+S, x:x+S]``, padded past its edge."""
        from ..data.scale import crop_pad

        t, s = self.tiles[tile], self.size
        if t.target is None:
            raise ValueError(f"Tile {t.key!r} has no target yet; call set_teacher before training on it.")
        return [crop_pad(t.image, y, x, s, 255), crop_pad(t.target, y, x, s, 0), crop_pad(t.full, y, x, s, False),
                crop_pad(t.valid, y, x, s, False)]

    def __getitem__(self, i: int):
        from ..data.datasets import _augment, normalise
        from ..data.scale import random_crop_origin

        tile = int(self.index[i])
        y, x = random_crop_origin(self.tiles[tile].image.shape, self.size, self.crop_rng)
        img, tgt, full, valid = _augment(self.crop(tile, y, x), self.rng, self.flips, False, self.hed)
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
    labels: np.ndarray | None = None  # (K,) image-level label from the file name, or (K, H, W) per pixel
    touched_pixels: int = 0
    path: Path | RegionSource | None = None  # its file or slide region (read again when the teacher changes);
    # None: ``image`` is kept (a mosaic of patches, data.patch_mosaic)
    valid: np.ndarray | None = None  # (H, W) bool, pixels that may take part (None: all but glass)


@dataclass(frozen=True)
class RegionSource:
    """Where a reviewed region of a whole slide gets its pixels: it has no file of its own, so fine-tuning reads it
    from the slide (at the level its mask is stored at) whenever a tile file would be read."""

    slide: Path
    region: tuple[int, ...]  # [y0, x0, y1, x1] level-0 pixels, end-exclusive, then the level
    shape: tuple[int, int]  # (H, W) of the stored mask at that level

    def is_file(self) -> bool:
        return self.slide.is_file()

    def read(self) -> np.ndarray:
        """(H, W, 3) uint8, the mask's size (the slide's edge padded as white glass)."""
        from ..data.slide import open_slide

        slide = open_slide(self.slide)
        try:
            y0, x0, level = self.region[0], self.region[1], self.region[4]
            ds = float(slide.downsamples[level])
            ly0, lx0 = int(round(y0 / ds)), int(round(x0 / ds))
            lh, lw = slide.levels[level].shape[:2]
            img = slide.read_region(ly0, lx0, min(lh, ly0 + self.shape[0]), min(lw, lx0 + self.shape[1]), level)
        finally:
            slide.close()
        out = np.full((*self.shape, 3), 255, np.uint8)
        out[: img.shape[0], : img.shape[1]] = img[..., :3]
        return out


def item_source(project: Any, item: Any) -> Path | RegionSource | None:
    """A tile item's file, or a slide region's :class:`RegionSource`; None when the item says neither."""
    path = item_image_path(project, item)
    if path is not None or item.region is None or not item.shape:
        return path
    return RegionSource(Path(project.source), tuple(int(v) for v in item.region), tuple(item.shape[:2]))


def read_tile(source: Path | RegionSource) -> np.ndarray:
    """(H, W, 3) uint8 pixels of a tile file or a slide region."""
    from ..data.tiles import read_rgb

    return source.read() if isinstance(source, RegionSource) else read_rgb(source)


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
    """Items the user corrected or accepted that have a stored mask and pixels to read (a tile file, or the slide
    of a region)."""
    out = []
    for it in project.items():
        if it.status in CORRECTED and it.mask is not None:
            src = item_source(project, it)
            if src is not None and src.is_file():
                out.append(it)
    return out


def _read_record(project: Any, item: Any, with_mask: bool) -> TileRecord:
    from ..data.tiles import parse_labels_from_name

    path = item_source(project, item)
    image = read_tile(path)
    try:
        labels = parse_labels_from_name(path.name, project.schema.n_foreground) if isinstance(path, Path) else None
    except ValueError:
        labels = None
    rec = TileRecord(item.key, item.status, image, labels=labels, path=path)
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
