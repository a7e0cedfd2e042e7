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


def test_two_writers_to_one_new_folder_the_second_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "out"
    first, second = atomic_dir(target), atomic_dir(target)
    d1, d2 = first.__enter__(), second.__enter__()  # both checked before either finished
    (d1 / "a").write_text("first")
    (d2 / "b").write_text("second")
    first.__exit__(None, None, None)
    with pytest.raises(FileExistsError, match="appeared"):
        second.__exit__(None, None, None)
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # the refused copy is not left behind


def _killed_inside(tmp_path: Path, at: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run an overwrite of ``tmp_path/out`` in a child process that dies (os._exit) at ``at``."""
    import napari_wsss.atomic as atomic

    pid = os.fork()
    if pid == 0:  # the child: no pytest teardown, no finally blocks after the kill
        try:
            real_replace = os.replace

            def dying_replace(src, dst):  # noqa: ANN001, ANN202
                if at == "between" and Path(dst) == tmp_path / "out":
                    os._exit(9)
                real_replace(src, dst)

            monkeypatch.setattr(atomic.os, "replace", dying_replace)
            monkeypatch.setattr(atomic, "_exchange", lambda a, b: False, raising=False)  # two renames
            with atomic_dir(tmp_path / "out", overwrite=True) as d:
                (d / "new").write_text("new")
                if at == "building":
                    os._exit(9)
        finally:
            os._exit(1)
    os.waitpid(pid, 0)


def test_a_kill_between_the_two_renames_of_an_overwrite_keeps_the_old_copy(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old").write_text("user data")
    _killed_inside(tmp_path, "between", monkeypatch)
    with pytest.raises(FileExistsError):  # the next run finds the old copy back in place, and refuses
        with atomic_dir(tmp_path / "out"):
            pass
    assert (tmp_path / "out" / "old").read_text() == "user data"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_an_overwrite_swaps_in_place(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old").write_text("x")
    with atomic_dir(tmp_path / "out", overwrite=True) as d:
        (d / "new").write_text("y")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_partial_folders_of_killed_runs_are_cleaned_not_those_of_live_ones(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _killed_inside(tmp_path, "building", monkeypatch)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")]  # the kill left one
    live = tmp_path / f".out.{os.getpid()}.0123abcd.partial"  # a run still building (this process is alive)
    live.mkdir()
    other = tmp_path / ".notes.partial"  # not ours: a name this code never makes
    other.mkdir()
    with atomic_dir(tmp_path / "out") as d:
        (d / "f").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".notes.partial", live.name, "out"])


def test_an_existing_empty_folder_is_filled_keeping_its_permissions(tmp_path: Path) -> None:
    """A shared (group-writable, setgid) empty folder the user made stays shared once the export lands in it."""
    (tmp_path / "out").mkdir()
    os.chmod(tmp_path / "out", 0o2770)
    with atomic_dir(tmp_path / "out") as d:
        (d / "f").write_text("1")
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o2770
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["f"]


def test_a_link_to_a_folder_is_followed_and_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with atomic_dir(tmp_path / "link") as d:
        (d / "f").write_text("1")
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / "f").read_text() == "1"
    (tmp_path / "file").write_text("user data")
    with pytest.raises(FileExistsError, match="is a file"):
        with atomic_dir(tmp_path / "file", overwrite=True):
            pass
    assert (tmp_path / "file").read_text() == "user data"
