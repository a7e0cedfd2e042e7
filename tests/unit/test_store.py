"""The annotation project on disk: layout, atomic writes, reopening, crash safety, schema checks (no Qt)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_wsss.classes import BCSS_WSSS, LUAD_HISTOSEG
from napari_wsss.models.card import ModelCard
from napari_wsss.store import (
    Project,
    default_project_root,
    parse_region_key,
    region_key,
)


@pytest.fixture
def tiles(tmp_path: Path) -> Path:
    folder = tmp_path / "tiles"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 24, 3), 200, np.uint8)).save(folder / f"t{i}.png")
    return folder


def _cm(rng: np.random.Generator, shape=(16, 24)) -> np.ndarray:  # noqa: ANN001
    return rng.integers(0, 5, size=shape).astype(np.uint8)


def test_default_location_beside_the_data(tiles: Path, tmp_path: Path) -> None:
    assert default_project_root(tiles) == tiles.parent / "tiles.wsss"
    slide = tmp_path / "case1.ome.tif"
    slide.write_bytes(b"")
    assert default_project_root(slide) == tmp_path / "case1.wsss"
    assert default_project_root(tmp_path / "img.png") == tmp_path / "img.wsss"


def test_region_keys_round_trip() -> None:
    k = region_key(0, 1024, 1024, 2048, 1)
    assert k == "r0_1024_1024_2048_l1" and parse_region_key(k) == (0, 1024, 1024, 2048, 1)
    assert parse_region_key("t0") is None


def test_layout_is_readable_without_napari(tiles: Path, rng: np.random.Generator) -> None:
    p = Project.open(tiles, LUAD_HISTOSEG)
    p.register([{"key": f"t{i}", "image": f"t{i}.png"} for i in range(3)])
    pred = _cm(rng)
    card = ModelCard("sshr", "resnet18", LUAD_HISTOSEG.to_dict(), name="v1")
    p.save_prediction("t0", pred, card)
    corr = pred.copy()
    corr[2:6, 3:9] = 1
    touched = np.zeros(pred.shape, bool)
    touched[2:6, 3:9] = True
    p.save_correction("t0", corr, touched)

    root = tiles.parent / "tiles.wsss"
    index = json.loads((root / "project.json").read_text())
    assert index["format_version"] == 1 and index["schema"]["name"] == "LUAD-HistoSeg"
    rec = {r["key"]: r for r in index["items"]}
    assert set(rec) == {"t0", "t1", "t2"}
    assert rec["t0"]["status"] == "corrected" and rec["t0"]["model"] == "v1"
    assert rec["t0"]["touched_fraction"] == pytest.approx(touched.mean())
    assert rec["t1"]["status"] == "unreviewed" and rec["t1"]["mask"] is None
    # plain PIL reads every file
    with Image.open(root / rec["t0"]["mask"]) as im:
        assert im.mode == "P" and np.array_equal(np.asarray(im), corr)
    with Image.open(root / rec["t0"]["prediction"]) as im:
        assert np.array_equal(np.asarray(im), pred)
    with Image.open(root / rec["t0"]["touched"]) as im:
        assert im.mode == "1" and np.array_equal(np.asarray(im), touched)
    # nothing half-written is left behind
    assert not [f for f in root.rglob("*") if f.name.startswith(".")]


def test_reopen_restores_everything(tiles: Path, rng: np.random.Generator) -> None:
    p = Project.open(tiles)
    pred = _cm(rng)
    p.save_prediction("t1", pred, "v1", image="t1.png")
    corr = pred.copy()
    corr[0, 0] = 3 if pred[0, 0] != 3 else 2
    touched = np.zeros(pred.shape, bool)
    touched[0, 0] = True
    p.save_correction("t1", corr, touched)
    p.set_status("t2", "accepted")

    q = Project.open(tiles)
    assert q.schema.names == LUAD_HISTOSEG.names
    assert np.array_equal(q.load_mask("t1"), corr)
    assert np.array_equal(q.load_prediction("t1"), pred)
    assert np.array_equal(q.load_touched("t1"), touched)
    assert q.item("t1").image == "t1.png"
    assert q.counts() == {"total": 2, "unreviewed": 0, "corrected": 1, "accepted": 1, "reviewed": 2, "predicted": 1}


def test_kill_mid_edit_keeps_every_saved_edit(tiles: Path, rng: np.random.Generator) -> None:
    """A killed process never calls close(): the disk alone must hold every edit saved so far."""
    p = Project.open(tiles)
    cm = _cm(rng)
    p.save_prediction("t0", cm, "v1")
    touched = np.zeros(cm.shape, bool)
    for i in range(5):  # five autosaves of growing corrections
        cm[i, :] = 2
        touched[i, :] = True
        p.save_correction("t0", cm, touched)
    del p  # no close, no flush: what a SIGKILL leaves
    q = Project.open(tiles)
    assert np.array_equal(q.load_mask("t0"), cm)
    assert np.array_equal(q.load_touched("t0"), touched)
    assert q.item("t0").status == "corrected"


def test_interrupted_write_leaves_the_old_file(tiles: Path, rng: np.random.Generator,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    p = Project.open(tiles)
    old = _cm(rng)
    p.save_prediction("t0", old, "v1")

    def boom(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        p.save_correction("t0", np.zeros_like(old), np.ones(old.shape, bool))
    monkeypatch.undo()
    q = Project.open(tiles)
    assert np.array_equal(q.load_mask("t0"), old)
    assert q.item("t0").status == "unreviewed"
    assert not [f for f in q.root.rglob("*") if f.name.startswith(".")]


def test_protected_items_are_not_overwritten(tiles: Path, rng: np.random.Generator) -> None:
    p = Project.open(tiles)
    cm = _cm(rng)
    p.save_prediction("t0", cm, "v1")
    p.set_status("t0", "accepted")
    assert p.is_protected("t0")
    with pytest.raises(ValueError, match="accepted"):
        p.save_prediction("t0", np.zeros_like(cm), "v2")
    assert np.array_equal(p.load_mask("t0"), cm)
    p.save_prediction("t0", np.zeros_like(cm), "v2", force=True)
    assert p.item("t0").status == "unreviewed"
    assert list((p.root / "history").glob("t0.*.masks.png"))


def test_undo_back_to_prediction_unmarks_corrected(tiles: Path, rng: np.random.Generator) -> None:
    p = Project.open(tiles)
    cm = _cm(rng)
    p.save_prediction("t0", cm, "v1")
    p.save_correction("t0", cm, np.zeros(cm.shape, bool))
    assert p.item("t0").status == "unreviewed"


def test_schema_mismatch_is_a_clear_error(tiles: Path, rng: np.random.Generator) -> None:
    p = Project.open(tiles, LUAD_HISTOSEG)
    with pytest.raises(ValueError, match="uses classes"):
        Project.open(tiles, BCSS_WSSS)
    card = ModelCard("sshr", "resnet18", BCSS_WSSS.to_dict(), name="bcss-model")
    with pytest.raises(ValueError, match="predicts classes"):
        p.save_prediction("t0", _cm(rng), card)
    assert "t0" not in p


def test_bad_input_is_refused(tiles: Path, rng: np.random.Generator) -> None:
    p = Project.open(tiles)
    with pytest.raises(ValueError, match="outside"):
        p.save_prediction("t0", np.full((4, 4), 9, np.uint8), "v1")
    with pytest.raises(ValueError, match="shape"):
        p.save_correction("t0", _cm(rng), np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="Invalid item key"):
        p.save_prediction("../evil", _cm(rng), "v1")
    with pytest.raises(ValueError, match="status"):
        p.set_status("t0", "done")
    (p.root / "project.json").write_text("{broken")
    with pytest.raises(ValueError, match="damaged"):
        Project.open(tiles)


def test_model_versions(tiles: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from napari_wsss.models.card import save_model

    src = save_model(tmp_path / "ft-1", {"w": torch.zeros(1)}, ModelCard("sshr", "resnet18", LUAD_HISTOSEG.to_dict()))
    p = Project.open(tiles)
    assert p.model_versions() == []
    dst = p.add_model_version(src)
    assert p.model_versions() == [dst] and (dst / "weights.pt").is_file()
    bad = save_model(tmp_path / "bcss", {"w": torch.zeros(1)}, ModelCard("sshr", "resnet18", BCSS_WSSS.to_dict()))
    with pytest.raises(ValueError, match="predicts classes"):
        p.add_model_version(bad)


def test_set_model_records_provenance_atomically(tiles: Path, rng: np.random.Generator,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    p = Project.open(tiles)
    p.save_correction("t0", _cm(rng), np.ones((16, 24), bool))
    assert p.item("t0").model is None
    it = p.set_model("t0", "sshr-v2")
    assert it.model == "sshr-v2" and it.status == "corrected"  # the status is left alone
    assert Project.open(tiles).item("t0").model == "sshr-v2"  # written through to project.json

    def boom(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        p.set_model("t0", "sshr-v3")
    monkeypatch.undo()
    assert Project.open(tiles).item("t0").model == "sshr-v2"  # the old index, whole
    assert not [f for f in p.root.rglob("*") if f.name.startswith(".")]

    with pytest.raises(KeyError, match="No item"):
        p.set_model("missing", "v1")
    with pytest.raises(TypeError, match="version name"):
        p.set_model("t0", None)  # type: ignore[arg-type]
