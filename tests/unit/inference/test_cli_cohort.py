"""``napari-wsss predict SLIDES... --out DIR`` as a cohort: a local cluster, a scheduler address, kill/resume,
a corrupt slide (exit code 2, the others finish)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from napari_wsss.cli import main

from .conftest import make_slides

REPO = Path(__file__).resolve().parents[3]


def _statuses(out: Path) -> dict[str, str]:
    return {e["name"]: e["status"] for e in json.loads((out / "cohort.json").read_text())["slides"]}


def _complete(out: Path, name: str) -> bool:
    return zarr.open_group(str(out / name / "labels.zarr"), mode="r").attrs["complete"] is True


def _wait_group_gone(pgid: int, timeout: float = 30) -> None:
    """Until the killed process group's last process (a worker) has exited: a rerun treats the half-built
    folders of live processes as someone else's work in progress."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


@pytest.fixture(scope="module")
def scheduler():
    """An existing Dask cluster, as a lab's would be: the CLI only gets its address."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cl:
        yield cl.scheduler_address


def test_folder_on_local_cluster_then_rerun_skips(tiny_model: Path, tmp_path: Path, capsys) -> None:
    make_slides(tmp_path / "slides", 3, mixed=True)  # pyramidal TIFF, OME-TIFF, Aperio-style SVS
    out = tmp_path / "out"
    cmd = ["predict", str(tmp_path / "slides"), "--model", str(tiny_model), "-o", str(out), "--workers", "2"]
    assert main(cmd) == 0
    err = capsys.readouterr().err
    assert "3 slide(s) on 2 Dask worker(s)" in err and "dashboard" in err
    assert _statuses(out) == {f"slide{i}": "done" for i in range(3)}
    assert all(_complete(out, f"slide{i}") for i in range(3))
    assert main(cmd) == 0  # the same command again: nothing to do
    assert _statuses(out) == {f"slide{i}": "skipped" for i in range(3)}


def test_same_command_on_a_scheduler_address(tiny_model: Path, tmp_path: Path, scheduler: str,
                                             capsys) -> None:
    slides = make_slides(tmp_path / "slides", 3, mixed=True)
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "slides"), "--model", str(tiny_model), "-o", str(out),
                 "--scheduler", scheduler]) == 0
    assert scheduler in capsys.readouterr().err
    assert _statuses(out) == {f"slide{i}": "done" for i in range(3)}
    assert all(_complete(out, f"slide{i}") for i in range(3))
    # a CSV manifest names the outputs by its id column; --geojson adds one GeoJSON per slide for QuPath
    csv = tmp_path / "cohort.csv"
    csv.write_text("path,id\n" + "".join(f"slides/{p.name},case{i}\n" for i, p in enumerate(slides)))
    out2 = tmp_path / "out2"
    assert main(["predict", str(csv), "--model", str(tiny_model), "-o", str(out2), "--scheduler", scheduler,
                 "--geojson"]) == 0
    assert _statuses(out2) == {f"case{i}": "done" for i in range(3)}
    assert sorted(p.name for p in (out2 / "geojson").iterdir()) == [f"case{i}.geojson" for i in range(3)]
    assert main(["predict", str(csv), "--model", str(tiny_model), "-o", str(out2), "--scheduler", scheduler,
                 "--workers", "2"]) == 2
    assert "Give one of them" in capsys.readouterr().err


def test_corrupt_slide_exit_code_2_others_finish(tiny_model: Path, tmp_path: Path, scheduler: str,
                                                 capsys) -> None:
    make_slides(tmp_path / "slides", 2)
    (tmp_path / "slides" / "corrupt.svs").write_bytes(b"II*\x00" + os.urandom(3000))
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "slides"), "--model", str(tiny_model), "-o", str(out),
                 "--scheduler", scheduler]) == 2
    err = capsys.readouterr().err
    assert "1 of 3 slide(s) failed: corrupt (" in err
    manifest = json.loads((out / "cohort.json").read_text())
    failed = [e for e in manifest["slides"] if e["status"] == "failed"]
    assert [e["name"] for e in failed] == ["corrupt"] and "corrupt.svs" in failed[0]["error"]
    assert _statuses(out) == {"corrupt": "failed", "slide0": "done", "slide1": "done"}
    # the rerun retries the failed slide only (and fails it again), the others stay finished
    assert main(["predict", str(tmp_path / "slides"), "--model", str(tiny_model), "-o", str(out),
                 "--scheduler", scheduler]) == 2
    assert _statuses(out) == {"corrupt": "failed", "slide0": "skipped", "slide1": "skipped"}


def test_killed_run_resumes_without_redoing_finished_slides(tiny_model: Path, tmp_path: Path,
                                                           scheduler: str) -> None:
    """SIGKILL the CLI (and its worker) once some slides are finished; the rerun redoes only the rest."""
    n = 4
    make_slides(tmp_path / "slides", n, shape=(512, 512))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "napari_wsss.cli", "predict", str(tmp_path / "slides"), "--model", str(tiny_model),
           "-o", str(out), "--workers", "1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    # its own process group, so the kill takes the worker processes it started too (a crash of the machine)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        done: list[str] = []
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                done = [k for k, v in _statuses(out).items() if v == "done"]
            except (OSError, ValueError):
                done = []
            if done:
                break
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
        _wait_group_gone(proc.pid)
    assert done and len(done) < n, f"the run should be killed midway (finished before the kill: {done})"
    # what is there is whole: every visible slide folder is a finished one
    visible = sorted(p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert set(done) <= set(visible) and all((out / v / "summary.json").is_file() for v in visible)
    stamps = {v: (out / v / "summary.json").stat().st_mtime_ns for v in visible}

    # the rerun (on the test's cluster: no second start-up to wait for; the output folder is what counts)
    assert main(["predict", str(tmp_path / "slides"), "--model", str(tiny_model), "-o", str(out),
                 "--scheduler", scheduler]) == 0
    st = _statuses(out)
    assert {k for k, v in st.items() if v == "skipped"} == set(visible)
    assert {k for k, v in st.items() if v == "done"} == {f"slide{i}" for i in range(n)} - set(visible)
    assert stamps == {v: (out / v / "summary.json").stat().st_mtime_ns for v in visible}  # not redone
    assert all(_complete(out, f"slide{i}") for i in range(n))
    assert not [p for p in out.iterdir() if p.name.endswith((".partial", ".old"))]  # killed halves cleaned up
    lab = np.asarray(zarr.open_group(str(out / "slide3" / "labels.zarr"), mode="r")["labels/0"][:])
    assert lab.shape == (512, 512) and lab.max() > 0


def test_refused_before_any_work(tiny_model: Path, tmp_path: Path, capsys) -> None:
    """Options that cannot work for a cohort are refused in one line before a cluster starts or a file is written."""
    import torch

    make_slides(tmp_path / "slides", 2, shape=(256, 256))
    base = ["predict", str(tmp_path / "slides"), "--model", str(tiny_model)]
    assert main([*base, "-o", str(tmp_path / "slides")]) == 2
    assert "folder of input slides" in capsys.readouterr().err
    assert main([*base, "-o", str(tmp_path / "x.zarr")]) == 2
    err = capsys.readouterr().err
    assert "one folder per slide" in err and "runs even one slide" not in err  # a folder of slides is a cohort
    one = ["predict", str(sorted((tmp_path / "slides").iterdir())[0]), "--model", str(tiny_model)]
    assert main([*one, "-o", str(tmp_path / "x.zarr"), "--geojson"]) == 2  # one slide made a cohort by --geojson
    assert "a cohort (--geojson runs even one slide as a cohort) writes one folder per slide" in capsys.readouterr().err
    assert main([*base, "-o", str(tmp_path / "o"), "--confidence"]) == 2
    assert "confidence/" in capsys.readouterr().err
    if not torch.cuda.is_available():  # where CUDA exists the option is valid
        assert main([*base, "-o", str(tmp_path / "o"), "--device", "cuda"]) == 2
        assert "not available" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "x.zarr").exists()
