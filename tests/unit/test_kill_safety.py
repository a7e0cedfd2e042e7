"""kill -9 in the middle of a command: nothing the user had is lost, nothing half-written looks complete, and the
rerun succeeds. Each command runs as a child process and is killed when it reports a given step (deterministic,
unlike a timer); benchmarks/faults.py kills them at random moments."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_wsss.classes import LUAD_HISTOSEG
from napari_wsss.store import Project

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "NAPARI_WSSS_THREADS": "1"}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "napari_wsss.cli", *args], capture_output=True, text=True, env=ENV,
                          timeout=300)


def kill_at(marker: str, *args: str) -> bool:
    """Run the CLI, SIGKILL it when a stderr line holds ``marker``; True when it was killed there."""
    p = subprocess.Popen([sys.executable, "-m", "napari_wsss.cli", *args], stderr=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, text=True, env=ENV)
    assert p.stderr is not None
    for line in p.stderr:
        if marker in line:
            p.send_signal(signal.SIGKILL)
            p.wait()
            return True
    p.wait()
    return False


def digest(folder: Path) -> dict[str, bytes]:
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()
            and f.name != "project.lock"}


def project(tmp_path: Path, n: int = 4) -> Project:
    rng = np.random.default_rng(0)
    (tmp_path / "tiles").mkdir()
    p = Project.open(tmp_path / "tiles", LUAD_HISTOSEG)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(tmp_path / "tiles" / f"t{i}.png")
        p.register([{"key": f"t{i}", "image": f"t{i}.png"}])
        m = rng.integers(0, 4, (48, 40)).astype(np.uint8)
        p.save_prediction(f"t{i}", m, "v1")
        p.save_correction(f"t{i}", m, np.ones(m.shape, bool))
    return p


def test_export_overwrite_killed_keeps_the_earlier_set(tmp_path: Path) -> None:
    from napari_wsss.export.manifest import verify_manifest

    p = project(tmp_path)
    assert cli("export", "--project", str(p.root), "--out", str(tmp_path / "set")).returncode == 0
    earlier, before = digest(tmp_path / "set"), digest(p.root)
    assert kill_at("exporting t2", "export", "--project", str(p.root), "--out", str(tmp_path / "set"), "--overwrite")
    assert digest(tmp_path / "set") == earlier and digest(p.root) == before
    assert cli("export", "--project", str(p.root), "--out", str(tmp_path / "set"), "--overwrite").returncode == 0
    assert not verify_manifest(tmp_path / "set")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["set", "tiles", "tiles.wsss"]  # the kill's leftover cleaned


def test_import_killed_leaves_a_project_that_loads_and_a_rerun_completes(tmp_path: Path) -> None:
    p = project(tmp_path)
    assert cli("export", "--project", str(p.root), "--out", str(tmp_path / "set")).returncode == 0
    new = tmp_path / "new.wsss"
    assert kill_at("importing t2", "import", str(tmp_path / "set"), "--project", str(new))
    if new.exists():  # whatever the kill left: every item the index lists has its whole mask
        q = Project.load(new)
        assert all(q.load_mask(it.key) is not None for it in q.items() if it.mask)
    assert cli("import", str(tmp_path / "set"), "--project", str(new), "--overwrite").returncode == 0
    q = Project.load(new)
    assert all(np.array_equal(q.load_mask(f"t{i}"), p.load_mask(f"t{i}")) for i in range(4))


def test_predict_killed_leaves_only_whole_masks_and_the_inputs(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    (tmp_path / "he").mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(100, 230, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "he" / f"i{i}.png")
    before = digest(tmp_path / "he")
    out = tmp_path / "o"
    assert kill_at("[ 50.0%]", "predict", str(tmp_path / "he"), "-o", str(out), "--batch-size", "1")
    assert digest(tmp_path / "he") == before
    for f in out.glob("*.png"):
        if not f.name.startswith("."):  # a temporary file, never a name a mask has
            with Image.open(f) as im:
                assert np.asarray(im).shape == (64, 64)
    assert cli("predict", str(tmp_path / "he"), "-o", str(out), "--overwrite").returncode == 0
    assert sorted(f.name for f in out.iterdir()) == [f"i{i}.png" for i in range(6)]


def test_finetune_killed_writes_no_version_and_leaves_the_project(tmp_path: Path) -> None:
    from napari_wsss.resources import default_model_dir

    p = project(tmp_path)
    before = digest(p.root)
    args = ["finetune", "--project", str(p.root), "--base", str(default_model_dir()), "--epochs", "1",
            "--batch-size", "4", "--set", "min_epoch_crops=1", "--patience", "0", "--switch-every", "0"]
    if not kill_at("fine-tune: loading", *args):
        pytest.fail("the fine-tune ended before the step it is killed at")
    assert digest(p.root) == before and p.model_versions() == []
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    assert [v.name for v in Project.load(p.root).model_versions()] == ["sshr-default-ft1"]
