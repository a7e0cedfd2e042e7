"""The first-view fit (``gui._view``) through the viewer a docked widget gets, on napari's current camera API."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ._plugin import SEGMENT, dock, open_path


def test_fit_uses_the_scene_camera_without_deprecation_warnings(make_napari_viewer, tmp_path: Path) -> None:  # noqa: ANN001
    """napari 0.9 deprecated ``viewer.camera``: every check of the view warned (a DeprecationWarning per dock)."""
    from PIL import Image

    from napari_wsss.gui._view import fit_view_if_cropped, view_shows_all

    (tmp_path / "tiles").mkdir()
    Image.fromarray(np.full((64, 400, 3), 200, np.uint8)).save(tmp_path / "tiles" / "a.png")
    viewer = make_napari_viewer()
    open_path(viewer, tmp_path / "tiles")
    proxy = dock(viewer, SEGMENT).viewer  # the PublicOnlyProxy napari hands the widget
    viewer.scene.camera.zoom = 50.0  # zoomed far in: the tile no longer fits
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        warnings.simplefilter("error", FutureWarning)
        assert not view_shows_all(proxy)
        assert fit_view_if_cropped(proxy)
        assert view_shows_all(proxy)
