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
