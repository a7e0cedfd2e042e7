"""Segment docked alone, Review & correct docked after it: the order of the Plugins menu, and of a first try.

Walk-through at napari's default window on real GlaS tiles: Review found a project of the default classes with
nothing predicted, switched it to the gland model's classes and retired the segmentation on screen (hidden,
read-only); a class button then said "segment the image first". Reads real GlaS images from ../shared/data/glas
(copied into the test's temporary folder) and skips, saying why, where they are absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt

from napari_wsss.store import Project

from .._glas import glas_copy
from ._plugin import REVIEW, SEGMENT, dock, open_path

NAMES = ("train_1.png", "train_3.png")


def test_review_docked_after_segment_corrects_the_segmentation_on_screen(qtbot, make_napari_viewer,  # noqa: ANN001
                                                                         tmp_path: Path) -> None:
    folder = glas_copy(tmp_path / "colon", NAMES)
    viewer = make_napari_viewer()
    open_path(viewer, folder)
    seg = dock(viewer, SEGMENT)
    assert seg.version_combo.currentText() == "sshr-glas (shipped)"
    seg.scope_combo.setCurrentText("all tiles in the stack")
    qtbot.mouseClick(seg.segment_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: seg.job is not None and not seg.job.running, timeout=240_000)
    assert seg.last_error is None, seg.last_error
    layer = seg.last_result_layer
    shown = np.array(layer.data)

    review = dock(viewer, REVIEW)
    assert layer.visible and layer.editable  # not retired as "old classes"
    assert np.array_equal(np.array(layer.data), shown)
    assert review.labels_layer is not None and review.labels_layer.name == layer.name
    assert [b.text().split(": ")[-1] for b in review.palette_buttons][:2] == ["gland", "non-gland"]
    project = Project.load(folder.parent / "colon.wsss")
    assert project.schema.names[:2] == ["gland", "non-gland"] and project.counts()["predicted"] == 2
    assert "1 / 2" in review.position_label.text() or "2 / 2" in review.position_label.text()

    review.palette_buttons[1].click()  # a class button works: paint mode on the segmentation
    assert review.last_error is None, review.last_error
    assert layer.mode == "paint" and layer.selected_label == 2
    layer.paint((int(viewer.dims.current_step[0]), 30, 30), 2, refresh=True)
    review.session.flush()
    key = review.session.units[int(viewer.dims.current_step[0])].key
    assert Project.open(folder).item(key).status == "corrected"
