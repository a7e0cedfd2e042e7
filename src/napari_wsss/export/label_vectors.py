"""A zarr label pyramid (``segment_slide``'s output) as GeoJSON class polygons for QuPath, with bounded memory."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..classes import ClassSchema
from .vectors import class_map_to_features, write_geojson

MAX_SIDE = 8192  # longest label side traced: a 40x slide's polygons come from a level this size, not level 0


def geojson_level(shape: tuple[int, int], n_levels: int, max_side: int = MAX_SIDE) -> int:
    """Finest label-pyramid level whose longer side is at most ``max_side`` (the coarsest if none is)."""
    need = math.ceil(math.log2(max(shape) / max_side)) if max(shape) > max_side else 0
    return min(max(0, need), n_levels - 1)


def write_label_pyramid_geojson(labels_zarr: str | Path, dst: str | Path, downsample: float = 1.0,
                                item: str | None = None, **properties: Any) -> Path:
    """Write the class polygons of a label pyramid as a GeoJSON FeatureCollection in slide level-0 pixels.

    Args:
        labels_zarr: zarr group with ``labels/0..L`` (uint8 napari labels: 0 background, class i = i + 1, level
            ``l`` strided ``2**l`` from level 0) and the class schema in its ``schema`` attribute.
        dst: the .geojson file (written atomically).
        downsample: slide level-0 pixels per ``labels/0`` pixel (the segmented level's downsample).
        item: recorded in each feature's properties; ``properties``: the collection's.
    Polygons are traced on the finest level no wider than ``MAX_SIDE`` px, so an edge is accurate to that
    level's pixel size; coordinates follow QuPath's convention (``export.vectors``).
    """
    import zarr

    root = zarr.open_group(str(labels_zarr), mode="r")
    schema = ClassSchema.from_dict(root.attrs["schema"])
    n_levels = len(list(root["labels"].array_keys()))
    lv = geojson_level(tuple(root["labels/0"].shape), n_levels)
    lab = np.asarray(root[f"labels/{lv}"][:])
    feats = class_map_to_features(schema.from_labels(lab), schema, downsample=downsample * 2**lv, item=item)
    return write_geojson(dst, feats, traced_level=lv, **properties)
