"""Docking the plugin's widgets does not grow napari's window past its size (walk-through: Review, Export and
Segment docked grew a 1000 px high window to 1238 px, past the screen)."""

from __future__ import annotations

import numpy as np
import pytest

from ._plugin import EXPORT, REVIEW, SAM, SEGMENT, TAG, TRAIN, dock, open_path


def test_docking_three_widgets_keeps_the_window_within_its_size(make_napari_viewer, qtbot) -> None:  # noqa: ANN001
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1100, 800)
    qtbot.waitUntil(lambda: window.height() == 800, timeout=3000)
    for name in (REVIEW, EXPORT, SEGMENT):
        dock(viewer, name)
        qtbot.wait(100)
    qtbot.wait(300)
    assert window.height() <= 800, f"the window grew to {window.height()} px"
    assert window.width() <= 1100, f"the window grew to {window.width()} px wide"


def test_docked_forms_are_shown_at_their_full_width(make_napari_viewer, qtbot) -> None:  # noqa: ANN001
    """The scroll areas scroll up and down only: the README screenshot had Segment's model row and classes line
    cut off at the right behind a horizontal scroll bar."""
    from qtpy.QtWidgets import QScrollArea

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    for name in (SEGMENT, EXPORT):
        widget = dock(viewer, name)
        qtbot.wait(300)
        scroll = widget.findChild(QScrollArea)
        assert scroll is not None
        assert not scroll.horizontalScrollBar().isVisible()
        inner = scroll.widget()
        assert inner.width() >= inner.minimumSizeHint().width(), f"{name}: the form is squeezed below its width"
        assert scroll.viewport().width() >= inner.minimumSizeHint().width()


def _shows(button) -> bool:  # noqa: ANN001
    return button.visibleRegion().boundingRect().height() >= button.height() - 2


def test_docking_more_widgets_keeps_the_earlier_ones_main_buttons_on_screen(make_napari_viewer, qtbot,  # noqa: ANN001
                                                                             tmp_path) -> None:
    """Walk-through: Segment, then Review & correct and Fine-tune from the Plugins menu left Segment 120 px high, its
    Segment button scrolled out of sight (napari pushes earlier docks to their minimum)."""
    from ._plugin import FINETUNE

    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1280, 1000)
    qtbot.waitUntil(lambda: window.height() == 1000, timeout=3000)
    seg, review, ft = (dock(viewer, n) for n in (SEGMENT, REVIEW, FINETUNE))
    qtbot.waitUntil(lambda: _shows(seg.segment_btn) and _shows(review.accept_btn) and _shows(ft.start_btn),
                    timeout=3000)
    assert window.height() <= 1000


# napari's window on fresh settings (its layout's size hint, as a tester saw it): the size a first session docks at
DEFAULT_SIZE = (1089, 630)


@pytest.mark.parametrize("name", [TAG, TRAIN, SAM])
@pytest.mark.parametrize("after", [(), (SEGMENT, REVIEW)], ids=["alone", "under-segment-review"])
def test_docking_tag_train_or_sam_keeps_naparis_default_window_size(make_napari_viewer, qtbot, tiny_dataset,  # noqa: ANN001
                                                                    tmp_path, name: str, after: tuple) -> None:
    """Tester at napari's default size: Train alone grew the window from 630 to 943 px high, Segment + Review +
    Tag to 872 px, and napari saved that size for the next session (their forms did not scroll)."""
    import shutil

    from qtpy.QtWidgets import QScrollArea

    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(*DEFAULT_SIZE)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == DEFAULT_SIZE, timeout=3000)
    open_path(viewer, shutil.copytree(tiny_dataset / "training", tmp_path / "case"))  # Tag shows its class keys
    for other in after:
        dock(viewer, other)
        qtbot.wait(100)
    widget = dock(viewer, name)
    qtbot.wait(400)  # napari lays the docks out, _dock_room resizes them
    assert window.height() <= DEFAULT_SIZE[1], f"docking {name} grew the window to {window.height()} px high"
    assert window.width() <= DEFAULT_SIZE[0], f"docking {name} grew the window to {window.width()} px wide"
    assert widget.findChild(QScrollArea) is not None, f"{name}'s form does not scroll when its dock is short"


def test_sam_refine_docked_after_a_segmentation_keeps_the_default_width(make_napari_viewer, qtbot, tmp_path) -> None:  # noqa: ANN001
    """Walk-through at the default size: SAM refine's class list, filled from a gland segmentation ("gland (colon
    gland (epithelium and lumen))"), made its dock 602 px wide and the window grew from 1089 to 1197 px."""
    from napari.layers import Labels

    from napari_wsss.classes import load_schema
    from napari_wsss.gui._layers import labels_layer_kwargs

    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(*DEFAULT_SIZE)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == DEFAULT_SIZE, timeout=3000)
    viewer.add_image(np.full((64, 64, 3), 200, np.uint8), name="tissue", rgb=True)
    kw = labels_layer_kwargs(load_schema("glas"), "tissue segmentation [sshr-glas]",
                             meta={"kind": "segmentation", "image": "tissue", "model": "sshr-glas"})
    viewer.add_layer(Labels(np.ones((64, 64), np.uint8), **kw))
    seg = dock(viewer, SEGMENT)
    qtbot.wait(200)
    sam = dock(viewer, SAM)
    qtbot.wait(400)
    assert any("epithelium and lumen" in sam.class_combo.itemText(i) for i in range(sam.class_combo.count()))
    # no wider than Segment's form needs (was 602 px against 453: the right dock column widened by 150 px)
    assert sam.minimumSizeHint().width() <= seg.minimumSizeHint().width(), sam.minimumSizeHint()
    assert window.width() <= DEFAULT_SIZE[0], f"docking SAM refine grew the window to {window.width()} px wide"
