"""Undo log of the image files an index change depends on, so a failed ``project.json`` write can be taken back."""

from __future__ import annotations

import os
import secrets
import shutil
import warnings
from pathlib import Path


class FileUndo:
    """Files a pending index change replaced, created or removed, with what they held before.

    The index is written after the image files it points to (a crash then leaves it pointing to whole files), so
    by the time an index write fails those files have already changed. :meth:`undo` puts them back, so disk and
    memory agree on the old state; :meth:`forget` drops the backups once the index is written.
    Backups are hidden hard links (a copy where the file system has none) beside each file.
    """

    def __init__(self) -> None:
        self._log: dict[Path, Path | None] = {}  # file -> backup of its old content (None: it did not exist)

    def keep(self, path: Path) -> None:
        """Call before replacing or creating ``path`` (atomically, by rename): its current content is kept."""
        path = Path(path)
        if path in self._log:
            return  # the first backup holds the state before the change; later ones are intermediate
        backup = None
        if path.is_file():
            backup = _backup_name(path)
            try:
                os.link(path, backup)  # the writer renames a new file over path: the link keeps the old one
            except OSError:
                shutil.copy2(path, backup)
        self._log[path] = backup

    def remove(self, path: Path) -> None:
        """Remove ``path`` now, recoverably: it is renamed to a hidden backup until :meth:`forget`."""
        path = Path(path)
        if path in self._log:
            path.unlink(missing_ok=True)
        elif path.is_file():
            backup = _backup_name(path)
            os.replace(path, backup)
            self._log[path] = backup

    def absorb(self, other: FileUndo) -> None:
        """Take over ``other``'s log: a change made inside a batch is undone with the batch."""
        for path, backup in other._log.items():
            if path not in self._log:
                self._log[path] = backup
            elif backup is not None:  # the batch already holds the older state of this file
                backup.unlink(missing_ok=True)
        other._log.clear()

    def undo(self) -> None:
        """Put every logged file back as it was; one that cannot be restored keeps its backup (with a warning)."""
        for path, backup in reversed(list(self._log.items())):
            try:
                if backup is None:
                    path.unlink(missing_ok=True)
                elif path.is_file() and os.path.samefile(path, backup):  # never replaced: drop the link
                    backup.unlink()
                else:
                    os.replace(backup, path)
            except OSError as e:
                warnings.warn(f"Could not restore {path} after a failed project write ({e}); its previous "
                              f"content is in {backup}.", RuntimeWarning, stacklevel=2)
        self._log.clear()

    def forget(self) -> None:
        """The index now points to the new files: drop the backups."""
        for backup in self._log.values():
            if backup is not None:
                try:
                    backup.unlink(missing_ok=True)
                except OSError:
                    pass  # a hidden leftover is harmless; the index and the files already agree
        self._log.clear()


def _backup_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.bak")
