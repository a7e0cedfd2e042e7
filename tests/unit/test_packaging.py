"""The npe2 manifest is valid and napari finds it from the editable install and from a built wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_manifest_file_is_valid() -> None:
    from npe2 import PluginManifest

    pm = PluginManifest.from_file(REPO / "napari.yaml")
    assert pm.name == "napari-wsss"
    ids = {c.id for c in pm.contributions.commands}
    assert {"napari-wsss.get_reader", "napari-wsss.segment_widget", "napari-wsss.sample_tiles"} <= ids
    assert any(w.display_name == "Segment" for w in pm.contributions.widgets)


def test_installed_distribution_exposes_manifest() -> None:
    # what napari does at start-up: entry point "napari.manifest" -> napari_wsss:napari.yaml
    from npe2 import PluginManifest

    pm = PluginManifest.from_distribution("napari-wsss")
    assert pm.name == "napari-wsss"
    out = subprocess.run([sys.executable, "-m", "npe2", "validate", "napari-wsss"], capture_output=True, text=True)
    assert out.returncode == 0 and "valid" in out.stdout, out.stdout + out.stderr


@pytest.mark.slow
def test_wheel_contains_manifest_models_and_sample_data(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", str(tmp_path), str(REPO)],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        manifest = zf.read("napari_wsss/napari.yaml").decode()
        entry_points = next(zf.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert manifest == (REPO / "napari.yaml").read_text()
    assert "napari_wsss:napari.yaml" in entry_points and "napari_wsss.cli:main" in entry_points
    shipped = {p.relative_to(REPO / "models").as_posix() for p in (REPO / "models").rglob("*") if p.is_file()}
    assert {f"napari_wsss/shipped_models/{s}" for s in shipped} <= names
    samples = {p.relative_to(REPO / "sample_data").as_posix() for p in (REPO / "sample_data").rglob("*") if p.is_file()}
    assert {f"napari_wsss/sample_data/{s}" for s in samples} <= names
