"""What every widget that runs core work shares: Cancel, the busy state, the progress bar, error display."""

from __future__ import annotations

from typing import Any

from ..events import Progress
from ._worker import Job


def with_button(field: Any, button: Any) -> Any:
    """A form row: ``field`` stretching, ``button`` (e.g. Browse…) beside it."""
    from qtpy.QtWidgets import QHBoxLayout

    row = QHBoxLayout()
    row.addWidget(field, 1)
    row.addWidget(button)
    return row


def scrolling_layout(widget: Any) -> Any:
    """The layout of ``widget``'s content inside a frameless scroll area; returns the content's QVBoxLayout.

    A dock's content then scrolls when the dock is short instead of asking for its full height: stacked docks
    (Review, Export, Segment) grew napari's window past the screen, and squeezed rows overlapped.
    """
    from qtpy.QtCore import QEvent, QSize, Qt
    from qtpy.QtWidgets import QScrollArea, QVBoxLayout, QWidget

    class _VerticalScroll(QScrollArea):
        """Scrolls up and down only: asks for the content's full width (a dock narrower than its form cut the
        model row and the classes line off at the right behind a horizontal scroll bar) but little height."""

        def _extra(self) -> int:
            return self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()

        def minimumSizeHint(self) -> Any:  # noqa: N802  (Qt's name)
            inner_hint = self.widget().minimumSizeHint()
            return QSize(inner_hint.width() + self._extra(), min(inner_hint.height(), 120))

        def sizeHint(self) -> Any:  # noqa: N802
            hint = self.widget().sizeHint()
            return QSize(hint.width() + self._extra(), hint.height())

        def eventFilter(self, obj: Any, event: Any) -> bool:  # noqa: N802
            # the form's width grows after docking (model names, the classes line): tell the dock
            if obj is self.widget() and event.type() == QEvent.LayoutRequest:
                self.updateGeometry()
            return super().eventFilter(obj, event)

    inner = QWidget()
    scroll = _VerticalScroll()
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QScrollArea.NoFrame)
    scroll.setWidget(inner)
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll)
    return QVBoxLayout(inner)


def wrapping_label(text: str = "") -> Any:
    """A word-wrapped QLabel that keeps the height its text needs at the dock's width.

    A plain wrapped label reports the height of its text laid out wide; a narrow dock squeezed between others
    then cut lines off (the model's "trained on" line was unreadable under Review & correct).
    """
    from qtpy.QtWidgets import QLabel, QSizePolicy

    class _Wrapping(QLabel):
        _need = 0

        def minimumSizeHint(self) -> Any:  # noqa: N802  (Qt's name)
            hint = super().minimumSizeHint()
            if self._need:
                hint.setHeight(self._need)
            return hint

        def sizeHint(self) -> Any:  # noqa: N802  (Qt's name; QLabel's own is the text wrapped 80 px wide)
            return self.minimumSizeHint()

        def resizeEvent(self, event: Any) -> None:  # noqa: N802  (Qt's name)
            super().resizeEvent(event)
            # only at a real width: while the dock is being laid out the label is briefly a few px wide
            need = self.heightForWidth(self.width()) if self.width() >= 80 else 0
            if need != self._need:
                self._need = need
                self.updateGeometry()

    label = _Wrapping(text)
    label.setWordWrap(True)
    # a long message (a path, a traceback line) wraps inside the dock instead of widening the main window
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    label.setMinimumWidth(1)
    return label


def show_progress(bar: Any, p: Progress) -> None:
    """Put a Progress on a QProgressBar (a busy indicator when the total is unknown)."""
    if p.total:
        bar.setMaximum(p.total)
        bar.setValue(p.step)
    else:
        bar.setMaximum(0)


def end_progress(bar: Any, outcome: str | None) -> None:
    """The bar when a job has ended: full after a result (a run's last report is rarely its total: Segment stayed
    at 83 % after "6 region(s) segmented" and at 0 % after one tile); after a cancel or an error a real bar stays
    where it stopped and a busy indicator stops empty, never reading 100 %."""
    if outcome == "result":
        bar.setRange(0, max(1, bar.maximum()))
        bar.setValue(bar.maximum())
    elif bar.maximum() == 0:
        bar.setRange(0, 1)
        bar.reset()


class JobControlsMixin:
    """Mixed into a QWidget that has ``progress`` (QProgressBar), ``status`` (QLabel) and ``cancel_btn``.

    Subclasses list the buttons to disable while a job runs (``_run_buttons``) and may refine the progress text
    (``_progress_text``); ``job`` and ``last_error`` are what tests and callers inspect.
    """

    job: Job | None = None
    last_error: BaseException | None = None

    def _init_job_controls(self) -> None:
        """Create ``cancel_btn`` (off until a job runs), ``progress`` and a word-wrapped ``status``."""
        from qtpy.QtWidgets import QProgressBar, QPushButton

        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.progress = QProgressBar()
        self.status = wrapping_label()

    def _run_buttons(self) -> list[Any]:
        raise NotImplementedError

    def _progress_text(self, p: Progress) -> str:
        return p.desc

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def _set_running(self, running: bool) -> None:
        for b in self._run_buttons():
            b.setEnabled(not running)
        self.cancel_btn.setEnabled(running)
        if running:  # busy until the job's first report: the last run's bar is not this one's
            self.progress.setRange(0, 0)
        else:
            end_progress(self.progress, getattr(self.job, "outcome", None))

    def _on_progress(self, p: Progress) -> None:
        show_progress(self.progress, p)
        self.status.setText(self._progress_text(p))

    def _show_error(self, exc: BaseException) -> None:
        from napari.utils.notifications import show_error

        self.last_error = exc
        msg = job_error_message(exc)
        self.status.setText(f"Error: {msg}")
        show_error(msg)


# What a user's input can cause; their messages already say what to do. Anything else is the job dying.
_INPUT_ERRORS = (ValueError, KeyError, FileNotFoundError, FileExistsError, PermissionError, NotADirectoryError,
                 IsADirectoryError)


def job_error_message(exc: BaseException) -> str:
    """The message for a failed job: an input error as it is; a job that died says what it means for the work.

    A crash inside torch, an out-of-memory or a bug must not read like the user's mistake, and the user must know
    that the corrections (autosaved to the project) and earlier results are untouched: jobs write their results
    only when they finish (a slide's partial zarr is marked incomplete).
    """
    if isinstance(exc, _INPUT_ERRORS):
        return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    hint = " Try a smaller batch or region, or the CPU." if isinstance(exc, MemoryError) or \
        "out of memory" in str(exc).lower() else ""
    return (f"the job stopped ({type(exc).__name__}: {exc}). Nothing you made was lost: corrections are saved in "
            f"the project and no earlier result was overwritten; the viewer is still usable.{hint}")
