"""The worker adapter's callbacks when the form they update is gone (a dock closed while its job runs)."""

from __future__ import annotations

import pytest

from napari_wsss.events import Progress
from napari_wsss.gui._worker import run_job


def _two_steps(should_stop=None):  # noqa: ANN001, ANN202
    yield Progress(1, 2, "one")
    yield Progress(2, 2, "two")
    return "done"


def test_callbacks_on_a_deleted_widget_are_quiet_and_the_job_still_finishes(qtbot) -> None:  # noqa: ANN001
    from qtpy import sip
    from qtpy.QtWidgets import QPushButton

    btn = QPushButton("Start")
    sip.delete(btn)  # what closing a dock does to its form's buttons
    with pytest.raises(RuntimeError, match="has been deleted"):
        btn.setEnabled(True)
    results = []
    job = run_job(_two_steps, on_progress=lambda p: btn.setText(p.desc),
                  on_result=lambda v: (results.append(v), btn.setEnabled(True)),
                  on_finished=lambda: btn.setEnabled(True))
    qtbot.waitUntil(lambda: not job.running, timeout=10_000)
    assert results == ["done"]  # the result still arrives; the dead button is skipped without an error


def test_other_runtime_errors_are_not_swallowed() -> None:
    from napari_wsss.gui._worker import _unless_deleted

    def boom(_value):  # noqa: ANN001, ANN202
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        _unless_deleted(boom)(1)
    assert _unless_deleted(None) is None
