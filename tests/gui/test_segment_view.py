"""Segment's "visible field of view" follows the camera on every kind of layer, and "too large" says what works.

Walk-through on the real single-level CMU slide (2967 x 2220, one level): napari's ``corner_pixels`` stays the
whole extent of a single-level layer at every zoom, so zoomed in 4x the field of view was still the whole slide and
was refused as too large, with advice (zoom in and segment the field of view) that could not work.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from napari_wsss.gui.segment_widget import SegmentWidget
from tests._slides import real_slide, write_svs
from ._plugin import SEGMENT, dock, open_path

VIEW, WHOLE, SLIDE = ("visible field of view", "whole image (coarsest level that fits)",
                      "whole slide, full resolution (tiled, saved as zarr)")


def _wait(qtbot, w: SegmentWidget) -> None:  # noqa: ANN001
    qtbot.waitUntil(lambda: w.job is not None and not w.job.running, timeout=120_000)


def _zoomed_in(viewer, qtbot, factor: float = 4) -> None:  # noqa: ANN001
    """Fit the image, then zoom in ``factor`` times about its centre, as a user does with the wheel."""
    from napari_wsss.gui._layers import camera

    qtbot.wait(300)  # a dock's first show fits the view once (_view.fit_view_when_shown): zoom after it
    viewer.reset_view()
    camera(viewer).zoom *= factor
    qtbot.wait(200)  # the canvas draws at the new zoom


def _segment(qtbot, w: SegmentWidget, scope: str) -> None:  # noqa: ANN001
    w.scope_combo.setCurrentText(scope)
    w.segment()
    if w.job is not None:
        _wait(qtbot, w)


def _single_level_slide(tmp_path: Path) -> Path:
    img = np.random.default_rng(3).integers(60, 220, (300, 400, 3), dtype=np.uint8)
    return write_svs(tmp_path / "one.svs", img, n_levels=1, mpp=0.5, mag=20)


def test_field_of_view_of_a_single_level_slide_is_what_the_camera_shows(qtbot, make_napari_viewer, tmp_path: Path,  # noqa: ANN001
                                                                       tiny_model: Path, monkeypatch) -> None:
    from napari_wsss.gui import segment_widget

    monkeypatch.setattr(segment_widget, "MAX_PIXELS", 150 * 200)  # the whole 300 x 400 slide is too large
    viewer = make_napari_viewer(show=True)
    open_path(viewer, _single_level_slide(tmp_path))
    image = viewer.layers[-1]
    assert image.multiscale and len(image.data) == 1
    w = dock(viewer, SEGMENT)
    w.add_model_version(tiny_model)
    _zoomed_in(viewer, qtbot)
    _segment(qtbot, w, VIEW)
    assert w.last_error is None, w.last_error
    placement = w.last_result_layer.metadata["napari_wsss"]["placement"]
    h, w_ = w.last_result_layer.data.shape
    oy, ox = placement["origin"]
    assert placement["level"] == 0 and h < 300 and w_ < 400 and h * w_ <= 150 * 200
    # the region is the one on screen: around the centre the camera looks at, inside the slide
    cy, cx = image.world_to_data(viewer.scene.camera.center[-2:])
    assert oy <= cy <= oy + h and ox <= cx <= ox + w_ and oy + h <= 300 and ox + w_ <= 400
    canvas_h, canvas_w = viewer.canvas.size
    zoom = viewer.scene.camera.zoom
    assert abs(h - min(300, canvas_h / zoom)) <= 2 and abs(w_ - min(400, canvas_w / zoom)) <= 2


def test_too_large_whole_single_level_slide_gives_advice_that_works(qtbot, make_napari_viewer, tmp_path: Path,  # noqa: ANN001
                                                                   tiny_model: Path, monkeypatch) -> None:
    from napari_wsss.gui import segment_widget

    monkeypatch.setattr(segment_widget, "MAX_PIXELS", 150 * 200)
    viewer = make_napari_viewer(show=True)
    open_path(viewer, _single_level_slide(tmp_path))
    w = dock(viewer, SEGMENT)
    w.add_model_version(tiny_model)
    viewer.reset_view()
    qtbot.wait(200)
    _segment(qtbot, w, WHOLE)
    msg = str(w.last_error)
    assert "too large" in msg and "coarsest" not in msg  # it has one level: no coarser one was tried
    assert "'whole slide, full resolution'" in msg and "'visible field of view'" in msg
    # both ways out work: the tiled full-resolution run, and the field of view zoomed in
    _segment(qtbot, w, SLIDE)
    assert w.last_error is None, w.last_error
    assert w.last_result_layer.metadata["napari_wsss"]["complete"] is True
    _zoomed_in(viewer, qtbot)
    _segment(qtbot, w, VIEW)
    assert w.last_error is None, w.last_error


def test_field_of_view_of_a_plain_image_crops_to_what_is_shown(qtbot, make_napari_viewer, tiny_model: Path,  # noqa: ANN001
                                                              ) -> None:
    """A plain (non-pyramid) image, e.g. a large PNG: "visible field of view" segmented the whole image."""
    viewer = make_napari_viewer(show=True)
    img = np.random.default_rng(5).integers(60, 220, (360, 480, 3), dtype=np.uint8)
    viewer.add_image(img, name="big", rgb=True)
    w = dock(viewer, SEGMENT)
    w.add_model_version(tiny_model)
    w.image_combo.setCurrentText("big")
    _zoomed_in(viewer, qtbot)
    _segment(qtbot, w, VIEW)
    assert w.last_error is None, w.last_error
    conf = next(ly.data for ly in viewer.layers if ly.name.startswith("big confidence"))
    ys, xs = np.nonzero(conf > 0)  # only the segmented region has a confidence
    h, w_ = ys.max() + 1 - ys.min(), xs.max() + 1 - xs.min()
    assert 16 <= h < 360 and 16 <= w_ < 480
    canvas_h, canvas_w = viewer.canvas.size
    zoom = viewer.scene.camera.zoom
    assert abs(h - min(360, canvas_h / zoom)) <= 2 and abs(w_ - min(480, canvas_w / zoom)) <= 2


def test_field_of_view_outside_the_image_says_pan_to_it(qtbot, make_napari_viewer, tiny_model: Path) -> None:  # noqa: ANN001
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.full((200, 200, 3), 120, np.uint8), name="tile", rgb=True)
    w = dock(viewer, SEGMENT)
    w.add_model_version(tiny_model)
    _zoomed_in(viewer, qtbot)
    viewer.scene.camera.center = (0, 5000, 5000)
    qtbot.wait(100)
    _segment(qtbot, w, VIEW)
    assert w.job is None and "pan to the image" in str(w.last_error)


def test_real_single_level_slide_zoomed_in_segments_the_field_of_view(qtbot, make_napari_viewer, tmp_path: Path,  # noqa: ANN001
                                                                     tiny_model: Path) -> None:
    """The walk-through's slide and its 4x zoom, at the real size limit."""
    slide = Path(shutil.copy(real_slide("cmu-1-small-region.svs"), tmp_path))  # a project may be made beside it
    viewer = make_napari_viewer(show=True)
    open_path(viewer, slide)
    image = viewer.layers[-1]
    h0, w0 = image.level_shapes[0]
    w = dock(viewer, SEGMENT)
    w.add_model_version(tiny_model)
    _zoomed_in(viewer, qtbot)
    _segment(qtbot, w, VIEW)
    assert w.last_error is None, w.last_error
    h, w_ = w.last_result_layer.data.shape
    assert h < h0 and w_ < w0



def test_a_second_field_of_view_keeps_the_first_on_screen(qtbot, make_napari_viewer, tmp_path: Path,  # noqa: ANN001
                                                         tiny_model: Path) -> None:
    """Walk-through on the real TCGA SVS: the whole view segmented, then a zoomed-in detail segmented, and the rest
    of the slide's labels were gone (the layer was replaced). The first view stays, read-only, cleared under the
    new one; the new one is the result corrected; the same view again replaces it, as before."""
    from napari_wsss.gui._slide_views import EARLIER

    from ._plugin import REVIEW

    viewer = make_napari_viewer(show=True)
    open_path(viewer, _single_level_slide(tmp_path))
    w = dock(viewer, SEGMENT)
    review = dock(viewer, REVIEW)
    w.add_model_version(tiny_model)
    qtbot.wait(300)
    viewer.reset_view()
    _segment(qtbot, w, VIEW)  # the whole slide is on screen
    assert w.last_error is None, w.last_error
    first = w.last_result_layer
    assert first.data.shape == (300, 400) and first.data.min() > 0
    first.paint((5, 5), 1 if first.data[5, 5] != 1 else 2, refresh=True)  # a correction on the first view
    painted = int(first.data[5, 5])
    _zoomed_in(viewer, qtbot)
    _segment(qtbot, w, VIEW)  # a detail
    second = w.last_result_layer
    assert second.name == "one segmentation [tiny-sshr]" and second.editable and second.data.shape[0] < 300
    earlier = [ly for ly in viewer.layers if ly.metadata.get("napari_wsss", {}).get("kind") == EARLIER]
    assert len(earlier) == 1 and earlier[0].visible and not earlier[0].editable
    assert "earlier view 1, read-only" in earlier[0].name
    oy, ox = (int(v) for v in second.metadata["napari_wsss"]["placement"]["origin"])
    h, w_ = second.data.shape
    kept = np.asarray(earlier[0].data)
    assert (kept[oy + 2:oy + h - 2, ox + 2:ox + w_ - 2] == 0).all()  # the new result alone where they overlap
    assert (kept[:oy] > 0).all() and (kept[:, :ox] > 0).all()  # the first one around it
    assert review.labels_layer is not None and review.labels_layer.name == second.name  # the new one is corrected
    assert kept[5, 5] == painted  # the correction shows in the earlier view, and was saved before it was kept
    from napari_wsss.store import Project

    corrected = [it for it in Project.open(tmp_path / "one.svs").items() if it.status == "corrected"]
    assert len(corrected) == 1 and corrected[0].region[:2] == [0, 0]  # the first view's top-left grid region
    _segment(qtbot, w, VIEW)  # the same detail again: replaced, no new earlier view
    assert sum(ly.metadata.get("napari_wsss", {}).get("kind") == EARLIER for ly in viewer.layers) == 1
