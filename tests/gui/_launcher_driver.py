"""Startup script for the real ``napari`` launcher (test_launcher_e2e.py): plays a pathologist's session.

napari runs it (settings ``application.startup_script``) before it opens the command line's folder and docks
the ``-w`` widgets; it schedules :func:`drive` on the event loop, which then finds everything the way a user
sees it: the folder opened by the napari-wsss reader, Segment and Review docked from the manifest, Fine-tune
docked as Plugins > WSSS tissue segmentation > Fine-tune does. It writes what it saw to ``WSSS_E2E_REPORT`` (JSON) and
closes the viewer, so the launcher exits.

Phases (``WSSS_E2E_PHASE``): ``first`` segments all tiles, paints tile 1, accepts tile 0, fine-tunes one
epoch; ``reopen`` only reports what the viewer restored.
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import napari
import numpy as np
from qtpy.QtCore import QTimer

REPORT = Path(os.environ["WSSS_E2E_REPORT"])
PHASE = os.environ.get("WSSS_E2E_PHASE", "first")
MODEL = os.environ.get("WSSS_E2E_MODEL", "")
Wait = Callable[[], bool]


def _docked(viewer: Any, cls_name: str) -> Any:
    for w in viewer.window.dock_widgets.values():
        if type(w).__name__ == cls_name:
            return w
    return None


def first(viewer: Any, report: dict) -> Iterator[Wait]:
    yield lambda: _docked(viewer, "SegmentWidget") is not None and _docked(viewer, "ReviewWidget") is not None
    seg, review = _docked(viewer, "SegmentWidget"), _docked(viewer, "ReviewWidget")
    yield lambda: review.session is not None
    seg.add_model_version(MODEL)
    seg.scope_combo.setCurrentText("all tiles in the stack")
    seg.segment_btn.click()
    yield lambda: seg.job is not None and not seg.job.running
    report["segment_error"] = None if seg.last_error is None else str(seg.last_error)
    layer = review.labels_layer
    report["n_predicted"] = review.session.project.counts()["predicted"]
    viewer.dims.set_current_step(0, 1)
    yield lambda: review.session.unit_index_at() == 1
    before = int(layer.data[1][20, 20])
    for btn in review.palette_buttons:  # a class the model did not predict there
        btn.click()
        if layer.selected_label not in (before, 0):
            break
    label = int(layer.selected_label)
    layer.paint((1, 20, 20), label)  # a brush dab, as a click in paint mode makes
    report["painted"] = {"key": review.session.units[1].key, "label": label, "yx": [20, 20],
                         "n_changed": int((np.asarray(layer.data[1]) == label).sum())}
    viewer.dims.set_current_step(0, 0)
    yield lambda: review.session.unit_index_at() == 0
    review.accept_btn.click()
    report["accepted"] = review.session.units[0].key
    report["accepted_mask"] = np.asarray(layer.data[0]).tolist()
    review.session.flush()
    _, ft = viewer.window.add_plugin_dock_widget("napari-wsss", "Fine-tune")
    report["finetune_projects"] = [ft.project_combo.itemText(i) for i in range(ft.project_combo.count())]
    ft.add_base_version(MODEL)
    ft.epochs_spin.setValue(1)
    ft.start_btn.click()
    yield lambda: ft.job is not None and not ft.job.running
    report["finetune_error"] = None if ft.last_error is None else str(ft.last_error)
    report["new_version"] = None if ft.last_result is None else str(ft.last_result)


def reopen(viewer: Any, report: dict) -> Iterator[Wait]:
    yield lambda: _docked(viewer, "ReviewWidget") is not None
    review = _docked(viewer, "ReviewWidget")
    yield lambda: review.labels_layer is not None
    layer = review.labels_layer
    report["layer"] = layer.name
    report["restored"] = np.asarray(layer.data).tolist()
    report["counts"] = review.counts_label.text()
    seg = _docked(viewer, "SegmentWidget")
    report["versions"] = [seg.version_combo.itemText(i) for i in range(seg.version_combo.count())] if seg else []


def drive() -> None:
    viewer = napari.current_viewer()
    report: dict = {"phase": PHASE}
    steps = (first if PHASE == "first" else reopen)(viewer, report)
    state: dict = {"wait": lambda: True, "ticks": 0}
    timer = QTimer()

    def finish(error: str | None = None) -> None:
        timer.stop()
        report["error"] = error
        REPORT.write_text(json.dumps(report))
        viewer.close()

    def tick() -> None:
        state["ticks"] += 1
        if state["ticks"] > 5400:  # 540 s at 100 ms (the fine-tune is a check fit and a refit)
            finish("timed out waiting for the GUI")
            return
        try:
            if not state["wait"]():
                return
            state["wait"] = next(steps)
        except StopIteration:
            finish()
        except Exception:
            finish(traceback.format_exc())

    timer.timeout.connect(tick)
    timer.start(100)
    drive.timer = timer  # type: ignore[attr-defined]  # keep it alive


QTimer.singleShot(0, drive)
