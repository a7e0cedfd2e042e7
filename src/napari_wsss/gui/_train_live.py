"""Pause and a live validation plot for the Train widget (kept apart so the widget's file stays small).

Pause sets an Event the run's ``paused`` callable reads (``events.pausable`` waits at the next batch); the plot
shows ``metrics["val_mIoU"]`` per epoch, which training from tags reports when the project has corrected tiles.
"""

from __future__ import annotations

import threading
from typing import Any

from ..events import Progress


class LiveTrainingMixin:
    """Mixed in before ``JobControlsMixin``: adds ``pause_btn``, ``plot`` (a ``ScorePlot``) and ``val_scores``."""

    def _init_live(self) -> None:
        from qtpy.QtWidgets import QPushButton

        from .finetune_widget import ScorePlot

        self._pause = threading.Event()
        self.val_scores: list[float] = []
        self.pause_btn = QPushButton("Pause")
        self.pause_btn.setCheckable(True)
        self.pause_btn.setEnabled(False)
        self.pause_btn.setToolTip("hold the training after the current batch; press again to resume")
        self.plot = ScorePlot()
        self.plot.setToolTip("mIoU on the project's corrected tiles after each epoch (training from tags; the "
                             "tag trainer never sees their pixels)")
        self.pause_btn.toggled.connect(self.set_paused)

    @property
    def paused(self) -> Any:
        """The callable a core run polls: True while the Pause button is down."""
        return self._pause.is_set

    def _reset_live(self) -> None:
        self._pause.clear()
        self.pause_btn.setChecked(False)
        self.val_scores = []
        self.plot.set_values([])

    def set_paused(self, paused: bool) -> None:
        (self._pause.set if paused else self._pause.clear)()
        self.pause_btn.setText("Resume" if paused else "Pause")
        if self.job is not None and self.job.running:  # type: ignore[attr-defined]
            self.status.setText("paused (after the current batch)" if paused else "resumed")  # type: ignore[attr-defined]

    def cancel(self) -> None:
        super().cancel()  # type: ignore[misc]
        self._pause.clear()  # a paused run must wake up to see the cancel

    def _set_running(self, running: bool) -> None:
        super()._set_running(running)  # type: ignore[misc]
        self.pause_btn.setEnabled(running)
        if not running:
            self.pause_btn.setChecked(False)

    def _live_point(self, p: Progress) -> str:
        """Record an epoch's validation score (plot it); the text to add to the progress line."""
        v = p.metrics.get("val_mIoU")
        if v is None or v != v:  # absent or NaN
            return ""
        self.val_scores.append(float(v))
        self.plot.set_values(self.val_scores)
        return f" · mIoU on corrected tiles {v:.3f}"
