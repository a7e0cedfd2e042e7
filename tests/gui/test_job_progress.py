"""The progress bar when a job has ended: full after a result, never 100 % after a cancel or an error.

Walk-through: Segment's bar stayed at 83 % after "6 region(s) segmented" (the last report is "segmenting 6/6",
before the sixth plane) and read 0 % after a single tile.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from qtpy.QtCore import Qt

from napari_wsss.events import Progress
from napari_wsss.gui._worker import run_job
from ._plugin import SEGMENT, dock, open_path


@pytest.fixture
def segment(make_napari_viewer, tiny_dataset: Path, tiny_model: Path):  # noqa: ANN001, ANN201
    viewer = make_napari_viewer()
    open_path(viewer, tiny_dataset / "test")
    w = dock(viewer, SEGMENT)
    w.add_model_version(tiny_model)
    w.image_combo.setCurrentText("test")
    return w


def _run(qtbot, w, scope: str) -> None:  # noqa: ANN001
    w.scope_combo.setCurrentText(scope)
    qtbot.mouseClick(w.segment_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.job is not None and not w.job.running, timeout=60_000)


def _full(bar) -> bool:  # noqa: ANN001
    return bar.maximum() > 0 and bar.value() == bar.maximum()


@pytest.mark.parametrize("scope", ["current tile / image", "all tiles in the stack"])
def test_segment_bar_is_full_when_the_regions_are_segmented(qtbot, segment, scope: str) -> None:  # noqa: ANN001
    _run(qtbot, segment, scope)
    assert segment.last_error is None, segment.last_error
    assert "segmented" in segment.status.text()
    assert _full(segment.progress), (segment.progress.value(), segment.progress.maximum())


def test_segment_bar_is_not_full_after_a_cancel(qtbot, segment) -> None:  # noqa: ANN001
    segment.scope_combo.setCurrentText("all tiles in the stack")
    segment.segment()
    segment.cancel()
    qtbot.waitUntil(lambda: not segment.job.running, timeout=60_000)
    assert "Cancelled" in segment.status.text()
    assert not _full(segment.progress)


def _stops(should_stop):  # noqa: ANN001, ANN202
    yield Progress(0, None, "loading")  # a busy indicator
    raise ValueError("bad input")


def _ends(should_stop):  # noqa: ANN001, ANN202
    yield Progress(0, None, "loading")
    yield Progress(1, 4, "one of four")
    return "done"


@pytest.mark.parametrize("gen, full", [(_ends, True), (_stops, False)])
def test_every_widget_ends_its_bar_the_same_way(qtbot, segment, gen, full: bool) -> None:  # noqa: ANN001
    """The rule lives in the job controls every widget mixes in; here driven by a bare job on the Segment form."""
    segment._set_running(True)
    segment.job = run_job(gen, on_progress=segment._on_progress, on_error=lambda e: None,
                          on_finished=lambda: segment._set_running(False))
    qtbot.waitUntil(lambda: not segment.job.running, timeout=10_000)
    assert segment.job.outcome == ("result" if full else "error")
    assert _full(segment.progress) is full
    assert segment.progress.maximum() > 0  # no busy indicator left running
