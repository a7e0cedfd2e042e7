"""The annotation project's writer lock: one process at a time changes ``project.json`` and the files it indexes.

Two writers (two ``import`` runs, a viewer's autosave beside a CLI fine-tune) each read the index once; writing
their whole copy back would drop the other's changes. The lock is an OS file lock (``flock`` / ``msvcrt``) on
``project.lock`` in the project folder, so a killed holder releases it with its process: no stale lock to clean up.
Holding it, a writer re-reads the index and builds its change on what is saved (``Project._locked``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import TracebackType

LOCK_FILE = "project.lock"
WAIT_S = 30.0  # how long a writer waits for another before it gives up with a message (a batch takes seconds)

try:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # pragma: no cover - Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


class ProjectLock:
    """Exclusive lock on the project folder ``root`` (created if missing); a context manager, not re-entrant.

    Raises:
        TimeoutError: another process held the lock for longer than :data:`WAIT_S` seconds.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.path = Path(root) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> ProjectLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        deadline = time.monotonic() + WAIT_S
        delay = 0.005
        while not _try_lock(fd):
            if time.monotonic() > deadline:
                holder = _read_holder(fd)
                os.close(fd)
                raise TimeoutError(
                    f"another process{holder} is writing the annotation project {self.path.parent} and has not "
                    f"finished after {WAIT_S:g} s; nothing was saved. Try again when it is done (close the other "
                    "viewer or wait for the other napari-wsss command).")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, str(os.getpid()).encode())  # only for the message another writer shows
        self._fd = fd
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                _unlock(fd)
            finally:
                os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        pid = os.read(fd, 32).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
