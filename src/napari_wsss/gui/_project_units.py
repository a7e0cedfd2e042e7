"""Units: the project items inside a Labels layer (a tile of a stack, a whole image, a grid region of a slide).

Pure geometry over layer metadata and index tuples; ``ProjectSession`` keeps the list and tracks changes per unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..store import region_key
from ._layers import SLIDE_GRID, layer_meta, placement_factors


@dataclass(frozen=True)
class Unit:
    """One project item inside a Labels layer: ``index`` selects its pixels from ``layer.data``."""

    key: str
    index: tuple
    image: str | None = None
    region: list[int] | None = None

    def bbox(self) -> list[tuple[int, int]]:
        out = []
        for s in self.index:
            out.append((s, s + 1) if isinstance(s, (int, np.integer)) else (s.start, s.stop))
        return out


def slice_bbox(key: Any, shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """Per-axis [start, stop) of a paint atom's basic-slicing key or fancy index."""
    if not isinstance(key, tuple):
        key = (key,)
    out = []
    for ax, s in enumerate(key):
        if isinstance(s, slice):
            start, stop, _ = s.indices(shape[ax])
            out.append((start, stop))
        elif isinstance(s, (int, np.integer)):
            out.append((int(s), int(s) + 1))
        else:
            a = np.asarray(s)
            out.append((int(a.min()), int(a.max()) + 1) if a.size else (0, 0))
    out += [(0, n) for n in shape[len(out):]]
    return out


def static_units(image_layer: Any, kind: str) -> list[Unit]:
    """One unit per tile of a stack (``kind="tiles"``) or one for the whole single image."""
    meta = layer_meta(image_layer)
    if kind == "tiles":
        folder = Path(meta["folder"])
        out = []
        for i, (f, (h, w)) in enumerate(zip(meta["files"], meta["sizes"])):
            f = Path(f)
            rel = str(f.relative_to(folder)) if f.is_relative_to(folder) else str(f)
            out.append(Unit(f.stem, (i, slice(0, h), slice(0, w)), image=rel))
        return out
    h, w = image_layer.data.shape[:2]
    from ._layers import image_source

    p = Path(meta.get("path") or image_source(image_layer)[1])  # ours, or another reader's file
    return [Unit(p.stem, (slice(0, h), slice(0, w)), image=p.name)]


def slide_units(placement: dict[str, Any], shape: tuple[int, int]) -> list[Unit]:
    """Grid regions (``SLIDE_GRID`` level-0 px) covered by a slide result of ``shape`` at ``placement``."""
    (dy, dx), level = placement_factors(placement), int(placement["level"])
    oy, ox = (float(v) for v in placement["origin"])

    def cuts(origin: float, n: int, ds: float) -> list[int]:
        # cell boundaries in result pixels, aligned to the level-0 grid
        vals, k = {0, int(n)}, int(origin // SLIDE_GRID) + 1
        while k * SLIDE_GRID < origin + n * ds:
            vals.add(int(round((k * SLIDE_GRID - origin) / ds)))
            k += 1
        return sorted(v for v in vals if 0 <= v <= n)

    ys, xs = cuts(oy, shape[0], dy), cuts(ox, shape[1], dx)
    units = []
    for ya, yb in zip(ys, ys[1:]):
        for xa, xb in zip(xs, xs[1:]):
            r = [int(round(oy + ya * dy)), int(round(ox + xa * dx)), int(round(oy + yb * dy)),
                 int(round(ox + xb * dx)), level]
            units.append(Unit(region_key(*r), (slice(ya, yb), slice(xa, xb)), region=r))
    return units


def units_in(units: list[Unit], kind: str, bbox: list[tuple[int, int]]) -> list[int]:
    """Indices of the units a per-axis [start, stop) box overlaps (stacks: by tile index only)."""
    if kind == "tiles":
        lo, hi = bbox[0]
        return [i for i in range(max(0, lo), min(hi, len(units)))]
    out = []
    for i, u in enumerate(units):
        ub = u.bbox()
        if all(a < d and c < b for (a, b), (c, d) in zip(bbox[-2:], ub[-2:])):
            out.append(i)
    return out
