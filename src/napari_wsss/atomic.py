"""Atomic writes: a reader (or a crash) never sees a half-written file or folder."""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask_mode(mode: int = 0o666) -> int:
    """``mode`` as the process umask would leave it (mkstemp files start as 0600, unlike open())."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


@contextmanager
def atomic_save(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; on success it replaces ``path``, on error it is removed.

    For writers that want a file name (``torch.save``, ``PIL.Image.save``, ``tifffile.imwrite``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextmanager
def atomic_dir(target: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it is renamed to ``target``.

    The last step checks again: a ``target`` filled by someone else meanwhile (two exports to one new folder) is
    refused, not replaced. An overwrite swaps the two folders in one step where the system can (Linux); elsewhere
    it renames twice, and a kill between the renames is repaired by the next call on ``target`` (the old copy is
    put back). Folders that killed runs left beside ``target`` are removed then too. An existing empty folder
    is taken over: the new one gets its permissions (a shared folder stays shared); a symbolic link to a folder
    is followed (the folder it names is written, the link stays).

    Raises:
        FileExistsError: if ``target`` exists and is not empty and ``overwrite`` is False, or was filled while
            the new folder was built.
    """
    target = Path(target)
    if target.is_symlink():
        target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(target)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} is a file, not a folder; choose a new folder (nothing was written).")
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{target} already exists and is not empty; choose a new folder or pass overwrite=True (--overwrite)."
        )
    tmp = partial_dir(target)
    try:
        yield tmp
        if target.is_dir():
            shutil.copymode(target, tmp)  # the user's folder keeps its permissions (group, setgid)
        if overwrite and target.exists():
            replace_dir(tmp, target)
        else:
            _rename_new(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _rename_new(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``, which must not exist or be an empty folder (the rename itself checks)."""
    try:
        os.rename(tmp, target)
    except OSError as e:
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise FileExistsError(
                f"{target} appeared while this was being written (another run writing the same folder?); "
                "nothing was replaced. Choose a new folder, or pass overwrite=True (--overwrite).") from None
        raise


def partial_dir(target: Path) -> Path:
    """A new empty folder beside ``target`` to build it in, named so :func:`clean_leftovers` knows it as ours."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".partial", dir=target.parent))
    os.chmod(tmp, _umask_mode(0o777))  # mkdtemp makes 0700 folders
    return tmp


def replace_dir(tmp: Path, target: Path) -> None:
    """Put the folder ``tmp`` (a :func:`partial_dir`) in place of the folder ``target``, removing the old one."""
    if _exchange(tmp, target):  # tmp now holds the old folder
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.old")
    os.replace(target, old)
    os.replace(tmp, target)  # a kill before this line: clean_leftovers puts ``old`` back on the next call
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a libc without it (musl, old glibc)
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):  # file system or kernel without it
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def clean_leftovers(target: Path) -> None:
    """Repair what killed runs left beside ``target``: put back an old copy a kill hid mid-overwrite, remove
    half-built folders. Only names this module makes, of processes no longer running, are touched."""
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(\d+)\.\w+\.(partial|old)$")
    left = []
    for p in target.parent.iterdir():
        m = pattern.match(p.name)
        if m and p.is_dir() and not _alive(int(m[1])):
            left.append((m[2] == "old", p.stat().st_mtime, p))
    for is_old, _, p in sorted(left, reverse=True):  # the newest old copy first
        if is_old and not target.exists():
            os.rename(p, target)
        else:
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (on Windows, where signal 0 would end it, assume it does)."""
    if pid == os.getpid() or sys.platform == "win32":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
