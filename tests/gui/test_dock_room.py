"""At napari's default window size, docking a third widget must leave every main button one click away.

Walk-through at the size napari opens with on fresh settings (about 1089 x 630): with Segment, Review & correct and
Fine-tune stacked, Segment's button and Review's Accept were scrolled out of sight and Fine-tune's "Use this
version" sat below its view. Where the column cannot show each main button, the plugin's docks are tabbed.
"""

from __future__ import annotations

from ._plugin import EXPORT, FINETUNE, REVIEW, SEGMENT, dock

DEFAULT_SIZE = (1089, 630)


def _shows(button) -> bool:  # noqa: ANN001
    return button.isVisible() and button.visibleRegion().boundingRect().height() >= button.height() - 2


def _dock_of(widget):  # noqa: ANN001, ANN202
    from qtpy.QtWidgets import QDockWidget

    d = widget.parentWidget()
    while not isinstance(d, QDockWidget):
        d = d.parentWidget()
    return d


def test_short_window_tabs_the_docks_so_each_main_button_shows(make_napari_viewer, qtbot) -> None:  # noqa: ANN001
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(*DEFAULT_SIZE)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == DEFAULT_SIZE, timeout=3000)
    seg = dock(viewer, SEGMENT)
    qtbot.wait(300)
    review = dock(viewer, REVIEW)
    qtbot.wait(300)
    ft = dock(viewer, FINETUNE)
    docks = [_dock_of(w) for w in (seg, review, ft)]
    qtbot.waitUntil(lambda: set(window.tabifiedDockWidgets(docks[2])) == set(docks[:2]), timeout=3000)
    qtbot.waitUntil(lambda: _shows(ft.start_btn), timeout=3000)  # the dock just docked is in front, button shown
    for w, button in ((seg, seg.segment_btn), (review, review.accept_btn)):
        _dock_of(w).raise_()  # the user clicks its tab
        qtbot.waitUntil(lambda b=button: _shows(b), timeout=3000)
    ex = dock(viewer, EXPORT)  # a fourth joins the tabs
    qtbot.waitUntil(lambda: _dock_of(ex) in window.tabifiedDockWidgets(docks[0]), timeout=3000)
    qtbot.waitUntil(lambda: _shows(ex.export_btn), timeout=3000)
    assert window.height() <= DEFAULT_SIZE[1]


def test_tall_window_keeps_the_docks_stacked(make_napari_viewer, qtbot) -> None:  # noqa: ANN001
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1280, 1000)
    qtbot.waitUntil(lambda: window.height() == 1000, timeout=3000)
    seg, review = dock(viewer, SEGMENT), dock(viewer, REVIEW)
    qtbot.waitUntil(lambda: _shows(seg.segment_btn) and _shows(review.accept_btn), timeout=3000)
    assert not window.tabifiedDockWidgets(_dock_of(seg))  # room for both: stacked, as napari docks them


def test_tag_hides_the_segmentation_only_while_its_tab_is_in_front(make_napari_viewer, qtbot, tiny_dataset,  # noqa: ANN001
                                                                   tiny_model, tmp_path) -> None:  # noqa: ANN001
    """Walk-through after tabbing: Qt leaves a tabbed-away dock 'visible' (no hideEvent), so Tag, docked last,
    kept the segmentation hidden when the user clicked Review's tab, and Review could not paint on it."""
    import shutil

    from qtpy.QtCore import Qt

    from ._plugin import TAG, open_path

    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(*DEFAULT_SIZE)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == DEFAULT_SIZE, timeout=3000)
    open_path(viewer, shutil.copytree(tiny_dataset / "test", tmp_path / "case"))
    seg = dock(viewer, SEGMENT)
    seg.add_model_version(tiny_model)
    seg.scope_combo.setCurrentText("all tiles in the stack")
    qtbot.mouseClick(seg.segment_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: seg.job is not None and not seg.job.running, timeout=60_000)
    layer = seg.last_result_layer
    review = dock(viewer, REVIEW)
    qtbot.wait(300)
    ft = dock(viewer, FINETUNE)  # three docks: tabbed at this size
    qtbot.waitUntil(lambda: bool(window.tabifiedDockWidgets(_dock_of(ft))), timeout=3000)
    tag = dock(viewer, TAG)
    qtbot.waitUntil(lambda: _dock_of(tag) in window.tabifiedDockWidgets(_dock_of(seg)), timeout=3000)
    qtbot.waitUntil(lambda: not layer.visible, timeout=3000)  # Tag in front: tiles tagged without the model's colours
    _dock_of(review).raise_()  # the user clicks Review's tab
    qtbot.waitUntil(lambda: layer.visible, timeout=3000)
    review.palette_buttons[0].click()
    assert layer.mode == "paint" and review.last_error is None
    _dock_of(tag).raise_()  # and back to Tag
    qtbot.waitUntil(lambda: not layer.visible, timeout=3000)
