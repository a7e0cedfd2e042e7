"""Measure how long the Qt event loop stalls: the gaps between ticks of a fast QTimer.

A viewer whose event loop is free ticks every ``interval_ms``; a gap of 300 ms means the user saw a frozen
window for that long (no repaint, no brush stroke). The test suite and ``benchmarks/viewer_responsiveness.py``
both use this while a segmentation runs in the worker.
"""

from __future__ import annotations

import time

import numpy as np


class StallMeter:
    """Record the gaps between ticks of a ``interval_ms`` QTimer on the calling (GUI) thread."""

    def __init__(self, interval_ms: int = 10) -> None:
        from qtpy.QtCore import QTimer

        self.interval_ms = interval_ms
        self.ticks: list[float] = []
        self._timer = QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def start(self) -> StallMeter:
        self.ticks = [time.perf_counter()]
        self._timer.start()
        return self

    def stop(self) -> StallMeter:
        self._timer.stop()
        self.ticks.append(time.perf_counter())
        return self

    @property
    def gaps_ms(self) -> np.ndarray:
        return np.diff(np.asarray(self.ticks)) * 1000.0

    def stats(self) -> dict[str, float]:
        """``{"p50", "p95", "max"}`` gap in ms and ``"n"`` ticks."""
        g = self.gaps_ms
        if not g.size:
            return {"p50": float("nan"), "p95": float("nan"), "max": float("nan"), "n": 0}
        return {"p50": float(np.percentile(g, 50)), "p95": float(np.percentile(g, 95)), "max": float(g.max()),
                "n": int(g.size)}
