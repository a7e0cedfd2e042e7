"""The annotation project on disk: layout, atomic writes, reopening, crash safety, schema checks (no Qt)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_wsss.classes import BCSS_WSSS, LUAD_HISTOSEG
from napari_wsss import store
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


def test_read_only_or_shipped_data_keeps_its_project_in_the_user_data_folder(tiles: Path, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_wsss.resources import sample_data_dir

    monkeypatch.setenv("NAPARI_WSSS_DATA_DIR", str(tmp_path / "data"))
    sample = default_project_root(sample_data_dir() / "luad_synthetic" / "test")
    assert sample.name == "test.wsss" and (tmp_path / "data" / "projects") in sample.parents
    monkeypatch.setattr(store.os, "access", lambda path, mode: False)  # a folder the user cannot write
    root = default_project_root(tiles)
    assert root.name == "tiles.wsss" and (tmp_path / "data" / "projects") in root.parents and root != sample
    monkeypatch.undo()
    tiles.parent.chmod(0o555)  # marked read-only for everyone: root too keeps out (os.access says yes to root)
    try:
        from napari_wsss.resources import user_data_dir

        assert (user_data_dir() / "projects") in default_project_root(tiles).parents
    finally:
        tiles.parent.chmod(0o755)
    Project.open(tiles)  # a project already beside the data stays there, writable or not
    monkeypatch.setattr(store.os, "access", lambda path, mode: False)
    assert default_project_root(tiles) == tiles.parent / "tiles.wsss"


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


# -- a failed index write: memory stays what the disk holds ------------------------------------------------


def _disk_files(root: Path) -> dict[str, bytes]:
    """Every file of the project but the index, with its bytes (history/ and hidden leftovers included)."""
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*"))
            if f.is_file() and f.name != "project.json"}


def _records(p: Project) -> list[dict]:
    return [asdict(it) for it in p.items()]


def _assert_memory_is_disk(p: Project, files_before: dict[str, bytes]) -> None:
    q = Project.load(p.root)
    assert _records(p) == _records(q) and p.counts() == q.counts()
    assert _disk_files(p.root) == files_before  # image files put back, new ones removed
    assert not [f for f in p.root.rglob("*") if f.name.startswith(".")]  # no temp files or backups left
    for it in q.items():  # the index points only to files that exist
        assert all((p.root / rel).is_file() for rel in (it.mask, it.prediction, it.touched) if rel)


def _fail_index_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "atomic_write_json", disk_full)


@pytest.fixture
def worked(tiles: Path, rng: np.random.Generator) -> Project:
    """t0 predicted then corrected, t1 predicted, t2 registered only."""
    p = Project.open(tiles)
    p.register([{"key": f"t{i}", "image": f"t{i}.png"} for i in range(3)])
    for key in ("t0", "t1"):
        p.save_prediction(key, _cm(rng), "v1")
    touched = np.zeros((16, 24), bool)
    touched[:4] = True
    p.save_correction("t0", np.where(touched, 2, p.load_mask("t0")).astype(np.uint8), touched)
    return p


def _touched(rng: np.random.Generator) -> np.ndarray:
    return rng.random((16, 24)) < 0.3


CHANGES: dict[str, Callable[[Project, np.random.Generator], object]] = {
    "register": lambda p, rng: p.register([{"key": "t9", "image": "t9.png"}, {"key": "t1"}]),
    "save_prediction_new_item": lambda p, rng: p.save_prediction("t5", _cm(rng), "v2", image="t5.png"),
    "save_prediction_registered": lambda p, rng: p.save_prediction("t2", _cm(rng), "v2"),
    "save_prediction_replaces": lambda p, rng: p.save_prediction("t1", _cm(rng), "v2"),
    "save_prediction_force": lambda p, rng: p.save_prediction("t0", _cm(rng), "v2", force=True),
    "save_correction": lambda p, rng: p.save_correction("t1", _cm(rng), _touched(rng)),
    "save_correction_again": lambda p, rng: p.save_correction("t0", _cm(rng), _touched(rng)),
    "save_correction_new_item": lambda p, rng: p.save_correction("r0_0_16_24_l0", _cm(rng), _touched(rng)),
    "set_status": lambda p, rng: p.set_status("t1", "accepted"),
    "set_status_new_item": lambda p, rng: p.set_status("t7", "accepted"),
    "set_model": lambda p, rng: p.set_model("t0", "v9"),
}


@pytest.mark.parametrize("change", CHANGES)
def test_failed_index_write_changes_nothing(worked: Project, rng: np.random.Generator, change: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    before, files_before = _records(worked), _disk_files(worked.root)
    _fail_index_writes(monkeypatch)
    with pytest.raises(OSError, match="No space"):
        CHANGES[change](worked, rng)
    monkeypatch.undo()
    assert _records(worked) == before
    _assert_memory_is_disk(worked, files_before)
    CHANGES[change](worked, rng)  # the project still works once the disk has room again
    assert _records(worked) == _records(Project.load(worked.root)) != before


def test_failed_image_write_puts_the_earlier_files_back(worked: Project, rng: np.random.Generator,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """save_correction writes the mask, then the touched map: when the second fails, the first is undone."""
    before, files_before = _records(worked), _disk_files(worked.root)

    def disk_full(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "atomic_save", disk_full)  # the touched-map writer
    with pytest.raises(OSError):
        worked.save_correction("t0", _cm(rng), _touched(rng))
    monkeypatch.undo()
    assert _records(worked) == before
    _assert_memory_is_disk(worked, files_before)


def test_batch_failing_at_its_write_rolls_back_every_change(worked: Project, rng: np.random.Generator,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    before, files_before = _records(worked), _disk_files(worked.root)
    with pytest.raises(OSError, match="No space"):
        with worked.batch():
            worked.register([{"key": "t9", "image": "t9.png"}])
            worked.save_prediction("t2", _cm(rng), "v2")
            worked.save_correction("t1", _cm(rng), _touched(rng))
            worked.save_prediction("t1", _cm(rng), "v3", force=True)  # replaces the correction just made
            worked.save_prediction("t0", _cm(rng), "v3", force=True)
            worked.set_model("t2", "v4")
            with worked.batch():  # nested: joins the outer write
                worked.set_status("t2", "accepted")
            assert worked.item("t2").status == "accepted" and worked.counts()["total"] == 4  # seen inside
            assert Project.load(worked.root).item("t2").status == "unreviewed"  # not written yet
            _fail_index_writes(monkeypatch)
    monkeypatch.undo()
    assert _records(worked) == before
    _assert_memory_is_disk(worked, files_before)


def test_batch_keeps_the_changes_made_before_an_error(worked: Project) -> None:
    with pytest.raises(RuntimeError):
        with worked.batch():
            worked.set_status("t1", "accepted")
            raise RuntimeError("stopped")
    assert Project.load(worked.root).item("t1").status == "accepted" == worked.item("t1").status
