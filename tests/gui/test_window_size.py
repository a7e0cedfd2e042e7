"""Docking the plugin's widgets does not grow napari's window past its size (walk-through: Review, Export and
Segment docked grew a 1000 px high window to 1238 px, past the screen)."""

from __future__ import annotations

from ._plugin import EXPORT, REVIEW, SEGMENT, dock


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
