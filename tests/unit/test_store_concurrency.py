"""Two writers on one annotation project (two CLI runs, a viewer's autosave beside an import): no update is lost."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest

from napari_wsss.classes import LUAD_HISTOSEG
from napari_wsss.store import Project


def _project(tmp_path: Path, n: int) -> Path:
    p = Project.open(tmp_path / "tiles", LUAD_HISTOSEG, root=tmp_path / "p.wsss")
    p.register([{"key": f"t{i}"} for i in range(n)])
    return p.root


def test_two_project_objects_interleaving_keep_both_changes(tmp_path: Path) -> None:
    root = _project(tmp_path, 3)
    a, b = Project.load(root), Project.load(root)  # each holds its own copy of the index
    a.save_correction("t0", np.ones((4, 4), np.uint8), np.ones((4, 4), bool))
    b.set_status("t1", "accepted")
    a.set_status("t2", "accepted")
    b.register([{"key": "t3"}])
    saved = Project.load(root)
    assert saved.item("t0").status == "corrected" and saved.load_mask("t0") is not None
    assert saved.item("t1").status == "accepted" and saved.item("t2").status == "accepted"
    assert "t3" in saved and len(saved.items()) == 4


def test_a_change_builds_on_the_saved_record_not_a_stale_copy(tmp_path: Path) -> None:
    root = _project(tmp_path, 1)
    a, b = Project.load(root), Project.load(root)
    a.set_model("t0", "v2")
    b.set_status("t0", "accepted")  # b read t0 before a's change: the model a recorded must survive
    saved = Project.load(root).item("t0")
    assert saved.model == "v2" and saved.status == "accepted"


def test_batches_of_two_objects_merge(tmp_path: Path) -> None:
    root = _project(tmp_path, 4)
    a, b = Project.load(root), Project.load(root)
    with a.batch():
        a.set_status("t0", "accepted")
    with b.batch():
        b.set_status("t1", "accepted")
    assert [it.status for it in Project.load(root).items()][:2] == ["accepted", "accepted"]


def _writer(root: str, keys: list[str]) -> None:
    p = Project.load(root)
    for k in keys:
        p.set_status(k, "accepted")


@pytest.mark.parametrize("n", [2, 4])
def test_processes_lose_no_update(tmp_path: Path, n: int) -> None:
    root = _project(tmp_path, 24)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(root), [f"t{i}" for i in range(j, 24, n)])) for j in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert {it.status for it in Project.load(root).items()} == {"accepted"}


def test_a_writer_that_never_lets_go_gets_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_wsss import _store_lock

    root = _project(tmp_path, 1)
    monkeypatch.setattr(_store_lock, "WAIT_S", 0.2)
    ctx = mp.get_context("fork")
    held, release = ctx.Event(), ctx.Event()

    def hold() -> None:
        with _store_lock.ProjectLock(root):
            held.set()
            release.wait(30)

    proc = ctx.Process(target=hold)
    proc.start()
    try:
        assert held.wait(30)
        with pytest.raises(TimeoutError, match="another process .* is writing"):
            Project.load(root).set_status("t0", "accepted")
    finally:
        release.set()
        proc.join(30)
    assert Project.load(root).set_status("t0", "accepted").status == "accepted"  # free again
