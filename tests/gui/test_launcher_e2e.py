"""The user's path end to end, through the real ``napari`` launcher in child processes (no fixture help).

Process 1: ``napari FOLDER --plugin napari-wsss -w napari-wsss Segment "Review & correct"``; a startup script
(napari's own setting) segments every tile, paints one, accepts another and fine-tunes one epoch from the
Fine-tune widget docked as the Plugins menu does. Training after the viewer exists is what segfaulted under
Mesa llvmpipe when torch imported triton. Process 2 reopens the folder and reports what the viewer restored.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_wsss.classes import LUAD_HISTOSEG
from napari_wsss.store import Project

DRIVER = Path(__file__).with_name("_launcher_driver.py")
NAPARI = Path(sys.executable).with_name("napari")


def _launch(tmp: Path, folder: Path, phase: str, model: Path, widgets: list[str]) -> dict:
    config = tmp / f"settings-{phase}.yaml"
    config.write_text(f"application:\n  startup_script: {DRIVER}\n")
    report = tmp / f"report-{phase}.json"
    env = dict(os.environ, NAPARI_CONFIG=str(config), WSSS_E2E_PHASE=phase, WSSS_E2E_MODEL=str(model),
               WSSS_E2E_REPORT=str(report))
    env.pop("NAPARI_WSSS_NO_THREADS", None)
    proc = subprocess.run([str(NAPARI), str(folder), "--plugin", "napari-wsss", "-w", "napari-wsss", *widgets],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"napari exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert report.is_file(), f"the startup script wrote no report\n{proc.stderr[-3000:]}"
    out = json.loads(report.read_text())
    assert out["error"] is None, out["error"]
    return out


@pytest.mark.skipif(not NAPARI.is_file(), reason=f"no napari launcher beside {sys.executable}")
def test_launcher_segment_paint_accept_finetune_then_reopen(tmp_path: Path, tiny_dataset: Path,
                                                            tiny_model: Path) -> None:
    folder = Path(shutil.copytree(tiny_dataset / "test", tmp_path / "case"))
    first = _launch(tmp_path, folder, "first", tiny_model, ["Segment", "Review & correct"])
    assert first["segment_error"] is None and first["n_predicted"] == 3
    assert first["finetune_error"] is None, first["finetune_error"]
    assert len(first["finetune_projects"]) == 1  # one session for all the docked widgets' proxies

    project = Project.open(folder)  # what is on disk after the launcher exited
    painted, accepted = first["painted"], first["accepted"]
    assert painted["n_changed"] > 50
    item = project.item(painted["key"])
    assert item.status == "corrected" and item.model == "tiny-sshr"
    assert project.load_mask(painted["key"])[20, 20] == painted["label"] - 1
    acc = project.item(accepted)
    assert acc.status == "accepted"
    acc_mask = project.load_mask(accepted)
    assert acc_mask is not None  # an accepted tile keeps its mask (it came back empty before)
    shown = np.asarray(first["accepted_mask"], np.uint8)
    assert np.array_equal(LUAD_HISTOSEG.to_labels(acc_mask), shown[: acc_mask.shape[0], : acc_mask.shape[1]])
    new = Path(first["new_version"])
    assert new.parent == project.models_dir and (new / "weights.pt").is_file()
    assert project.model_versions() == [new]

    second = _launch(tmp_path, folder, "reopen", tiny_model, ["Review & correct", "Segment"])
    restored = np.asarray(second["restored"], np.uint8)
    assert restored[1, 20, 20] == painted["label"]
    assert np.array_equal(restored[0][: acc_mask.shape[0], : acc_mask.shape[1]], LUAD_HISTOSEG.to_labels(acc_mask))
    assert "(1 corrected, 1 accepted)" in second["counts"]
    assert any(new.name in v for v in second["versions"])
