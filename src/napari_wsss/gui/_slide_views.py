"""Earlier fields of view of a slide stay on screen when another one is segmented.

Segmenting the visible field of view (or a drawn rectangle) of a slide, then another one, replaced the first
result: the labels of the whole view segmented first vanished when the pathologist zoomed in and segmented a
detail (walk-through on the real TCGA SVS). Now the earlier result stays as a read-only layer ("earlier view")
with the pixels the new result covers cleared, so the new, editable result shows alone where they overlap and the
earlier one around it. Its corrections were saved to the project before (the session flushes first); only the
newest result is corrected and tracked. Segmenting the same view again replaces it, as before.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._layers import META_KEY, layer_meta, same, unwrap

EARLIER = "earlier view"


def world_box(scale: Any, translate: Any, shape: tuple[int, ...]) -> tuple[float, float, float, float]:
    """(y0, x0, y1, x1) in world units that the pixels of a 2-D layer cover (napari centres pixel j at t + j s)."""
    (sy, sx), (ty, tx) = np.asarray(scale, float)[-2:], np.asarray(translate, float)[-2:]
    h, w = shape[-2:]
    return ty - sy / 2, tx - sx / 2, ty + (h - 0.5) * sy, tx + (w - 0.5) * sx


def keep_earlier_view(viewer: Any, old: Any, scale: Any, translate: Any, shape: tuple[int, ...],
                      session: Any = None) -> bool:
    """Keep ``old`` (a slide result layer) as a read-only earlier view before a result of another view takes its
    name; returns whether it was kept (False: the same view again, or nothing of it left outside the new one)."""
    if layer_meta(old).get("placement", {}).get("kind") != "slide" or old.multiscale:
        return False
    if tuple(old.data.shape) == tuple(shape) and np.allclose(old.scale[-2:], np.asarray(scale)[-2:]) \
            and np.allclose(old.translate[-2:], np.asarray(translate)[-2:]):
        return False  # the same view segmented again: replaced
    data = np.array(old.data)
    ny0, nx0, ny1, nx1 = world_box(scale, translate, shape)
    (sy, sx), (ty, tx) = np.asarray(old.scale, float)[-2:], np.asarray(old.translate, float)[-2:]
    ya, yb = max(0, math.ceil((ny0 - ty) / sy)), min(data.shape[0], math.floor((ny1 - ty) / sy) + 1)
    xa, xb = max(0, math.ceil((nx0 - tx) / sx)), min(data.shape[1], math.floor((nx1 - tx) / sx) + 1)
    if ya < yb and xa < xb:
        data[ya:yb, xa:xb] = 0  # the new result shows alone there (transparent, not blended)
    if not data.any():
        return False  # wholly inside the new view: nothing of it to keep
    if session is not None:
        session.flush()  # the user's strokes on it are saved before it stops being tracked
        if session.labels is not None and same(session.labels, old):
            session.detach()
    old.data = data
    old.editable = False
    meta = dict(old.metadata.get(META_KEY, {}))
    n = sum(1 for ly in viewer.layers if layer_meta(ly).get("kind") == EARLIER and ly.name.startswith(old.name))
    old.metadata = {**old.metadata, META_KEY: {**meta, "kind": EARLIER}}
    unwrap(old).name = f"{old.name} ({EARLIER} {n + 1}, read-only)"
    return True
