from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from napari_wsss.atomic import atomic_dir, atomic_save, atomic_write_json


def test_atomic_save_keeps_old_file_on_error(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_save(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert p.read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.txt"]  # no temp file left


def test_written_files_get_normal_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        p = atomic_write_json(tmp_path / "x.json", {"a": 1})
        with atomic_dir(tmp_path / "d") as d:
            (d / "f").write_text("1")
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_atomic_dir_refuses_non_empty_target(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "keep").write_text("user data")
    with pytest.raises(FileExistsError, match="overwrite"):
        with atomic_dir(tmp_path / "t"):
            pass
    with pytest.raises(ValueError):
        with atomic_dir(tmp_path / "new") as d:
            (d / "partial").write_text("x")
            raise ValueError("fail")
    assert not (tmp_path / "new").exists()
    assert (tmp_path / "t" / "keep").read_text() == "user data"
