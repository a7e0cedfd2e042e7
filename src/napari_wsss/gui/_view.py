"""Keeping the first view of an image whole when the plugin's docks take room from the canvas."""

from __future__ import annotations

from typing import Any


def view_shows_all(viewer: Any) -> bool:
    """True when every visible image layer's (y, x) extent lies inside the canvas at the current camera."""
    from napari.layers import Image

    from ._layers import camera

    cam = camera(viewer)  # viewer.scene.camera: napari 0.9 deprecated viewer.camera (a warning on every call)
    h, w = viewer.canvas.size
    zoom = cam.zoom
    cy, cx = cam.center[-2:]
    if not (h > 1 and w > 1 and zoom > 0):
        return True
    y0, y1, x0, x1 = cy - h / zoom / 2, cy + h / zoom / 2, cx - w / zoom / 2, cx + w / zoom / 2
    for layer in viewer.layers:
        if isinstance(layer, Image) and layer.visible:
            (ly0, lx0), (ly1, lx1) = layer.extent.world[:, -2:]
            if ly0 < y0 - 0.5 or lx0 < x0 - 0.5 or ly1 > y1 + 0.5 or lx1 > x1 + 0.5:
                return False
    return True


def fit_view_if_cropped(viewer: Any) -> bool:
    """Reset the view when an image no longer fits the canvas; returns whether it did.

    napari fits the view to the canvas it has when a layer is added; a file opened before the window shows is
    fitted to the default canvas (600 px wide), and docking Segment and Review beside it on a laptop-sized
    window leaves a narrower canvas, so a wide tile showed only in part until the user pressed "reset view".
    Called once when a plugin dock first shows (the canvas then has its real size); the user's own zoom and pan
    after that are left alone.
    """
    if view_shows_all(viewer):
        return False
    viewer.reset_view()
    return True


def fit_view_when_shown(widget: Any, viewer: Any) -> None:
    """From a dock widget's first ``showEvent``: fit the view once the layout has settled."""
    from qtpy.QtCore import QTimer

    if getattr(widget, "_view_fitted", False):
        return
    widget._view_fitted = True
    QTimer.singleShot(150, lambda: fit_view_if_cropped(viewer))


def visible_box(viewer: Any, layer: Any) -> tuple[int, int, int, int] | None:
    """(y0, x0, y1, x1) in ``layer``'s data pixels (level 0 of a pyramid) that the canvas shows, clipped to the
    image; every pixel drawn even in part is in. None when the canvas has no size yet (nothing drawn).

    From the camera (centre, zoom) and the canvas size, for any layer: napari's ``layer.corner_pixels`` is the
    visible area only for a multiscale layer of several levels; on a single-level slide or a plain image it stays
    the whole extent at every zoom, and zooming in to segment the field of view still asked for the whole image.

    Raises:
        ValueError: the view is 3D (the field of view is a 2D notion).
    """
    import numpy as np

    from ._layers import camera

    if viewer.dims.ndisplay != 2:
        raise ValueError("The visible field of view needs the 2D view; switch the viewer to 2D and segment again.")
    cam = camera(viewer)
    h, w = viewer.canvas.size
    if not (h > 1 and w > 1 and cam.zoom > 0):
        return None
    cy, cx = cam.center[-2:]
    hy, hx = h / cam.zoom / 2, w / cam.zoom / 2
    point = np.asarray(viewer.dims.point, float)  # the current tile's position on the other axes
    ay, ax = viewer.dims.displayed[-2:]  # the world axes on screen (transposed views included)
    corners = []
    for y in (cy - hy, cy + hy):
        for x in (cx - hx, cx + hx):
            p = point.copy()
            p[ay], p[ax] = y, x
            corners.append(np.asarray(layer.world_to_data(p), float)[-2:])
    lo, hi = np.min(corners, 0), np.max(corners, 0)
    eps = 1e-6  # a view edge exactly on a pixel edge leaves that pixel out
    # pixel i spans i - 0.5 .. i + 0.5 in data coordinates
    y0, x0 = (int(np.floor(v + 0.5 + eps)) for v in lo)
    y1, x1 = (int(np.ceil(v + 0.5 - eps)) for v in hi)
    shape = layer.level_shapes[0] if layer.multiscale else layer.data.shape[:-1] if layer.rgb else layer.data.shape
    ih, iw = shape[-2:]  # napari's level shapes leave the colour axis out
    return max(0, y0), max(0, x0), min(int(ih), y1), min(int(iw), x1)
