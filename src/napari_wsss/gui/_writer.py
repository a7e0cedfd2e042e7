"""npe2 writer: a Labels layer as class-map masks with the schema's palette (LUAD-HistoSeg style).

napari label values (0 = background, class i = i + 1) are converted back to the class map (background = K)
with the layer's schema (``layer.metadata``; LUAD-HistoSeg when the layer carries none). A 2D layer becomes one
palette PNG or TIFF; a stack (N, H, W) becomes a multi-page TIFF (``.tif``) or a folder of PNGs
(``<name>/<name>_0000.png``, or one PNG per source tile name when the layer came from a tile folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_dir
from ..classes import LUAD_HISTOSEG, ClassSchema
from ..export.masks import write_class_map, write_tiff_mask
from ._layers import META_KEY

MAX_PNG_PIXELS = 2**28  # beyond this a single PNG is impractical: write a pyramidal slide export instead


def _schema(meta: dict) -> ClassSchema:
    d = (meta.get("metadata") or {}).get(META_KEY, {}).get("schema")
    return ClassSchema.from_dict(d) if d else LUAD_HISTOSEG


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write a Labels layer's data as palette mask(s); returns the paths written.

    Raises:
        ValueError: more than 3 dimensions, or a 2D plane too large for one PNG (with what to do instead).
    """
    schema = _schema(meta)
    if isinstance(data, (list, tuple)):  # multiscale: the finest level
        data = data[0]
    arr = np.asarray(data.compute() if hasattr(data, "compute") else data)
    p = Path(path)
    if p.suffix.lower() not in (".png", ".tif", ".tiff"):
        p = p.with_name(p.name + ".png")
    if arr.ndim == 2:
        if p.suffix.lower() == ".png" and arr.size > MAX_PNG_PIXELS:
            raise ValueError(f"The layer is {arr.shape[0]} x {arr.shape[1]} pixels, too large for one PNG; save it "
                             "as .tif, or export the project as a pyramidal TIFF / OME-Zarr (Export widget).")
        return [str(write_class_map(p, schema.from_labels(arr), schema))]
    if arr.ndim != 3:
        raise ValueError(f"Cannot write a Labels layer of shape {arr.shape} as masks; expected (H, W) or a stack "
                         "(N, H, W) of tiles.")
    cm = np.stack([schema.from_labels(a) for a in arr])
    if p.suffix.lower() in (".tif", ".tiff"):
        return [str(write_tiff_mask(p, cm, schema))]
    folder = p.with_suffix("")
    names = _tile_names(meta, len(cm)) or [f"{folder.name}_{i:04d}" for i in range(len(cm))]
    with atomic_dir(folder) as tmp:
        for name, plane in zip(names, cm):
            write_class_map(tmp / f"{name}.png", plane, schema)
    return [str(folder / f"{n}.png") for n in names]


def _tile_names(meta: dict, n: int) -> list[str] | None:
    """Source tile stems of a stack layer (the reader's metadata), when there is one per plane."""
    m = (meta.get("metadata") or {}).get(META_KEY, {})
    files = m.get("files")
    if files and len(files) == n and len({Path(f).stem for f in files}) == n:
        return [Path(f).stem for f in files]
    return None
