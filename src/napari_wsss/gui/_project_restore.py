"""Reopening a folder, image or slide: the masks stored in its project become a segmentation Labels layer again.

A slide's stored regions are put back at the level of the latest one, in one array covering them all (or only the
latest region when that array would exceed ``MAX_RESTORE_PIXELS``).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from ._layers import labels_layer_kwargs, level_factors, result_geometry, segmentation_name
from ._project_units import Unit

if TYPE_CHECKING:
    from ._project_session import ProjectSession

MAX_RESTORE_PIXELS = 4096 * 4096


def restore_layer(session: ProjectSession) -> Any:
    """Show the stored masks as a segmentation layer (reopening a folder/slide). None when none saved."""
    items = [it for it in session.project.items() if it.mask is not None]
    if not items:
        return None
    version = Counter(it.model or "restored" for it in items).most_common(1)[0][0]
    name = segmentation_name(session.image_layer.name, version)
    if session.kind == "slide":
        data, placement, units = _restore_slide(session, items)
        if data is None:
            return None
    else:
        placement = {"kind": "stack" if session.kind == "tiles" else "single"}
        units = session.units
        data = np.zeros(session.image_layer.data.shape[:-1], np.uint8)
        by_key = {it.key for it in items}
        for u in units:
            if u.key in by_key:
                mask = session.project.load_mask(u.key)
                if mask is not None and mask.shape == data[u.index].shape:
                    data[u.index] = session.schema.to_labels(mask)
    meta = {"kind": "segmentation", "model": version, "image": session.image_layer.name, "placement": placement,
            "restored_from": str(session.project.root)}
    scale, translate = result_geometry(session.image_layer, placement)
    layer = session.viewer.add_labels(data, scale=scale, translate=translate,
                                      **labels_layer_kwargs(session.schema, name, meta=meta))
    session.attach(layer, units if session.kind == "slide" else None)
    return layer


def _restore_slide(session: ProjectSession, items: list[Any]) -> tuple[Any, dict, list[Unit]]:
    latest = max(items, key=lambda it: it.updated)
    level = latest.region[4] if latest.region else 0
    items = [it for it in items if it.region and it.region[4] == level]
    y0, x0 = min(it.region[0] for it in items), min(it.region[1] for it in items)
    y1, x1 = max(it.region[2] for it in items), max(it.region[3] for it in items)
    dy, dx = level_factors(session.image_layer.data, level)
    if ((y1 - y0) / dy) * ((x1 - x0) / dx) > MAX_RESTORE_PIXELS:
        items, (y0, x0, y1, x1) = [latest], latest.region[:4]
    h, w = int(round((y1 - y0) / dy)), int(round((x1 - x0) / dx))
    data = np.zeros((h, w), np.uint8)
    units = []
    for it in items:
        ya, xa = int(round((it.region[0] - y0) / dy)), int(round((it.region[1] - x0) / dx))
        mask = session.project.load_mask(it.key)
        if mask is None:
            continue
        mh, mw = min(mask.shape[0], h - ya), min(mask.shape[1], w - xa)
        data[ya:ya + mh, xa:xa + mw] = session.schema.to_labels(mask[:mh, :mw])
        units.append(Unit(it.key, (slice(ya, ya + mh), slice(xa, xa + mw)), region=it.region))
    placement = {"kind": "slide", "level": level, "downsample": [dy, dx], "origin": (y0, x0)}
    return data, placement, units
