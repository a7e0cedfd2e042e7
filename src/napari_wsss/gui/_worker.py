"""The single adapter between core generators and Qt: runs them in a napari thread worker.

Core functions are generators that yield ``Progress`` and return a result; they poll a ``should_stop``
callable. Here that callable is a ``threading.Event`` set by the Cancel button. With
``NAPARI_WSSS_NO_THREADS=1`` the generator runs synchronously on the calling thread (a fallback for
platforms where thread workers misbehave; see micro-sam issue 740) and the same callbacks fire.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Generator
from typing import Any

from ..events import Cancelled, Progress

class Job:
    """A running core generator: ``cancel()`` asks it to stop at its next check."""

    def __init__(self) -> None:
        self.stop_event = threading.Event()
        self.worker: Any = None
        self.done = threading.Event()
        # how it ended, set before on_finished: "result" (on_result ran), "error" or "cancelled"; None while running
        self.outcome: str | None = None

    def should_stop(self) -> bool:
        return self.stop_event.is_set()

    def cancel(self) -> None:
        self.stop_event.set()

    @property
    def running(self) -> bool:
        return not self.done.is_set()


def run_job(
    gen_fn: Callable[..., Generator[Progress, None, Any]],
    *args: Any,
    on_progress: Callable[[Progress], Any] | None = None,
    on_result: Callable[[Any], Any] | None = None,
    on_error: Callable[[BaseException], Any] | None = None,
    on_cancelled: Callable[[], Any] | None = None,
    on_finished: Callable[[], Any] | None = None,
    **kwargs: Any,
) -> Job:
    """Start ``gen_fn(*args, should_stop=job.should_stop, **kwargs)`` off the Qt thread.

    Callbacks run on the Qt thread. A ``Cancelled`` exception from the core calls ``on_cancelled`` instead of
    ``on_error``; other exceptions go to ``on_error`` (default: a napari error notification).
    """
    job = Job()
    on_progress, on_result, on_error, on_cancelled, on_finished = (
        _unless_deleted(cb) for cb in (on_progress, on_result, on_error, on_cancelled, on_finished))

    def _error(exc: BaseException) -> None:
        job.outcome = "cancelled" if isinstance(exc, Cancelled) else "error"
        if isinstance(exc, Cancelled):
            if on_cancelled is not None:
                on_cancelled()
        elif on_error is not None:
            on_error(exc)
        else:
            from napari.utils.notifications import show_error

            show_error(f"{type(exc).__name__}: {exc}")

    def _result(value: Any) -> None:
        if on_result is not None:
            on_result(value)
        job.outcome = "result"

    def _finished() -> None:
        job.done.set()
        if on_finished is not None:
            on_finished()

    if os.environ.get("NAPARI_WSSS_NO_THREADS") == "1":
        _run_sync(gen_fn, args, kwargs, job, on_progress, _result, _error)
        _finished()
        return job

    from napari.qt.threading import create_worker

    def _returned(value: Any) -> None:
        if isinstance(value, _Failed):
            _error(value.exc)
        else:
            _result(value)

    # Exceptions come back as a _Failed result, never raised into the worker: superqt treats a RuntimeError
    # escaping a worker as "the Qt object was deleted" and silently drops it (no errored, no finished), and
    # torch reports most failures (CUDA errors, out of memory) as RuntimeError; the job would stay "running".
    worker = create_worker(_guarded, gen_fn, args, kwargs, job.should_stop, _start_thread=False,
                           _ignore_errors=True)
    if on_progress is not None:
        worker.yielded.connect(on_progress)
    worker.returned.connect(_returned)
    worker.errored.connect(_error)
    worker.finished.connect(_finished)
    job.worker = worker
    worker.start()
    return job


def _unless_deleted(callback: Callable[..., Any] | None) -> Callable[..., Any] | None:
    """``callback``, quiet when the widget it updates is gone: a dock closed while its job runs (the job still
    finishes and writes its result; only the closed form is no longer there to show it)."""
    if callback is None:
        return None

    def call(*a: Any) -> Any:
        try:
            return callback(*a)
        except RuntimeError as exc:
            if "has been deleted" not in str(exc):  # PyQt/PySide: "wrapped C/C++ object ... has been deleted"
                raise
            return None

    return call


class _Failed:
    """A job's exception, carried back as its return value (see run_job)."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _guarded(gen_fn: Callable[..., Generator[Progress, None, Any]], args: tuple, kwargs: dict,
             should_stop: Callable[[], bool]) -> Generator[Progress, None, Any]:
    try:
        return (yield from gen_fn(*args, should_stop=should_stop, **kwargs))
    except Exception as exc:  # noqa: BLE001  (every failure reaches on_error / on_cancelled)
        return _Failed(exc)


def _run_sync(gen_fn, args, kwargs, job, on_progress, on_result, on_error) -> None:  # noqa: ANN001
    gen = gen_fn(*args, should_stop=job.should_stop, **kwargs)
    try:
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                if on_result is not None:
                    on_result(stop.value)
                return
            if on_progress is not None:
                on_progress(p)
    except Exception as exc:  # mirrored from the worker's errored signal
        on_error(exc)
