"""The tiles to tag: every image of a tile folder, or a grid over the tissue of a slide.

A slide is cut at pyramid ``level`` into ``tile`` x ``tile`` level pixels; only full tiles over tissue are kept
(edge remainders are left out: a trainer wants tiles of one size). A tile's project key is its region key
``r{y0}_{x0}_{y1}_{x1}_l{level}`` (level-0 bounds, :func:`napari_wsss.store.region_key`), so a tag, a
correction and a prediction of the same square land on the same project item.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..store_records import region_key


@dataclass(frozen=True)
class TagTile:
    """One tile to tag: ``image`` (a tile file, relative to the folder) or ``region`` (slide, level-0 bounds)."""

    key: str
    image: str | None = None
    region: tuple[int, int, int, int, int] | None = None  # y0, x0, y1, x1 (level 0), level

    def level_box(self, downsample: float) -> tuple[int, int, int, int]:
        """The region in pixels of its own level: (y0, x0, y1, x1)."""
        y0, x0, y1, x1, _ = self.region  # type: ignore[misc]
        return tuple(int(round(v / downsample)) for v in (y0, x0, y1, x1))  # type: ignore[return-value]


def folder_tiles(folder: str | Path, files: list[str | Path] | None = None) -> list[TagTile]:
    """One tile per image of ``folder`` (or of ``files``, e.g. the viewer's stack order); key = file stem."""
    from ..data.tiles import list_images

    folder = Path(folder)
    paths = [Path(f) for f in files] if files is not None else list_images(folder)
    out = []
    for p in paths:
        rel = str(p.relative_to(folder)) if p.is_relative_to(folder) else str(p)
        out.append(TagTile(p.stem, image=rel))
    return out


def slide_tiles(levels: list[Any], downsamples: list[float], tile: int, level: int = 0,
                min_tissue: float = 0.05) -> list[TagTile]:
    """Full ``tile`` x ``tile`` tiles of ``level`` over tissue, row by row (reading order).

    Args:
        levels: the slide's pyramid ((H, W, 3) arrays, level 0 first; ``data.slide.Slide.levels``).
        downsamples: level-0 pixels per level pixel, per level.
        tile: tile side in pixels of ``level``.
        min_tissue: least tissue share of a tile (judged on a coarse level, ``tissue_blocks``).

    Raises:
        ValueError: a level the slide lacks, or a tile larger than the level.
    """
    from ..inference.slide_segmentation import tissue_blocks

    if not 0 <= level < len(levels):
        raise ValueError(f"Level {level} does not exist; the slide has levels 0..{len(levels) - 1}.")
    h, w = levels[level].shape[:2]
    if tile < 16 or tile > min(h, w):
        raise ValueError(f"Tile size {tile} px does not fit level {level} ({h} x {w} px); choose 16..{min(h, w)}.")
    n_i, n_j = h // tile, w // tile
    tissue = tissue_blocks(levels, level, tile, min_tissue)
    ds = float(downsamples[level])
    out = []
    for i in range(n_i):
        for j in range(n_j):
            if tissue is not None and not tissue[i, j]:
                continue
            y0, x0 = i * tile, j * tile
            r = (int(round(y0 * ds)), int(round(x0 * ds)), int(round((y0 + tile) * ds)),
                 int(round((x0 + tile) * ds)), level)
            out.append(TagTile(region_key(*r), region=r))
    if tissue is None:  # no coarse level to judge from: judge each tile itself (small slides)
        from ..data.tiles import is_background

        keep = []
        for t in out:
            y0, x0, y1, x1 = t.level_box(ds)
            img = np.asarray(levels[level][y0:y1:4, x0:x1:4])
            if (~is_background(img, min_size=4)).mean() >= min_tissue:
                keep.append(t)
        out = keep
    return out


def edge_remainder_text(height: int, width: int, tile: int) -> str:
    """Say plainly which edge strips a grid of ``tile`` px leaves untiled on a ``height`` x ``width`` level ("" when
    none). They are left out, not tagged as partial tiles, because every trainer batches tiles of one size and a
    padded or stretched remainder would teach the wrong scale or a false glass border."""
    right, bottom = width % tile, height % tile
    parts = [f"{right} px at the right" if right else "", f"{bottom} px at the bottom" if bottom else ""]
    parts = [x for x in parts if x]
    if not parts:
        return ""
    return (f"Edge strips not tiled: {' and '.join(parts)} (less than one {tile} px tile; trainers need tiles of one "
            "size). Choose a tile size that divides the level to cover them.")


def read_tile(t: TagTile, source: str | Path, slide: Any = None) -> np.ndarray:
    """(H, W, 3) uint8 pixels of a tile: its file (relative to the ``source`` folder) or its slide region."""
    from ..data.tiles import read_rgb

    if t.image is not None:
        p = Path(t.image)
        src = Path(source)
        return read_rgb(p if p.is_absolute() else (src if src.is_dir() else src.parent) / p)
    if slide is None:
        raise ValueError(f"Tile {t.key} is a slide region; open the slide ({source}) to read it.")
    level = t.region[4]  # type: ignore[index]
    y0, x0, y1, x1 = t.level_box(slide.downsamples[level])
    return slide.read_region(y0, x0, y1, x1, level)


def tile_of_item(item: Any) -> TagTile:
    """The tile a project item stands for (a tagged item of a tile folder or slide grid)."""
    if item.region is not None:
        return TagTile(item.key, region=tuple(int(v) for v in item.region))  # type: ignore[arg-type]
    return TagTile(item.key, image=item.image)


def grid_shape(n_tiles: int) -> tuple[int, int]:
    """Rows and columns of a near-square overview grid for ``n_tiles``."""
    cols = max(1, math.ceil(math.sqrt(n_tiles)))
    return max(1, math.ceil(n_tiles / cols)), cols
