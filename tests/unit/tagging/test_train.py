"""Training from a project's tags: the training set it writes, the version it adds, the errors it gives."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from napari_wsss.classes import LUAD_HISTOSEG
from napari_wsss.data.tiles import parse_labels_from_name
from napari_wsss.events import run_to_end
from napari_wsss.store import Project
from napari_wsss.tagging.tiles import folder_tiles
from napari_wsss.tagging.train import train_from_tags, write_tag_training_set

TINY = dict(epochs=1, batch_size=4, input_size=64, kernel_size=3, pretrained="none", device="cpu",
            backbone="small_cnn")


def _tagged_project(tile_folder: Path, tmp_path: Path, n: int) -> Project:
    p = Project.open(tile_folder, LUAD_HISTOSEG, root=tmp_path / "p.wsss")
    tiles = folder_tiles(tile_folder)
    p.register([{"key": t.key, "image": t.image} for t in tiles])
    tags = {}
    for t in tiles[:n]:
        lab = parse_labels_from_name(t.image, 4)
        tags[t.key] = [c.name for c, v in zip(LUAD_HISTOSEG.foreground, lab) if v]
    p.set_tags_many(tags, by="test")
    return p


def test_training_set_holds_exactly_the_tagged_tiles(tile_folder: Path, tmp_path: Path) -> None:
    p = _tagged_project(tile_folder, tmp_path, 6)
    p.set_tags(folder_tiles(tile_folder)[0].key, [])  # tagged "none": left out
    out = run_to_end(write_tag_training_set(p, tmp_path / "set"))
    with open(out / "labels.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and len(list((out / "training").iterdir())) == 5
    for r in rows:
        expect = parse_labels_from_name(r["filename"], 4)  # synthetic names carry the truth
        assert [int(r[c]) for c in LUAD_HISTOSEG.foreground_names] == expect.tolist()
    assert (out / "schema.json").is_file()


def test_train_from_tags_adds_a_project_version(tile_folder: Path, tmp_path: Path) -> None:
    from napari_wsss.inference.segmenter import load_segmenter
    from napari_wsss.models.card import load_card

    p = _tagged_project(tile_folder, tmp_path, 8)
    out = run_to_end(train_from_tags(p, "sshr", **TINY))
    assert out == p.models_dir / "sshr-tags1" and out in p.model_versions()
    card = load_card(out)
    assert card.method == "sshr" and card.class_schema.names == LUAD_HISTOSEG.names
    assert card.metrics["n_train_tiles"] == 8
    assert Path(card.training_data) == p.root / "training_sets" / "sshr-tags1"
    pred = load_segmenter(out, "cpu").predict(np.zeros((1, 64, 64, 3), np.uint8) + 200)
    assert pred.class_map.shape == (1, 64, 64)
    with pytest.raises(FileExistsError, match="already exists"):
        run_to_end(train_from_tags(p, "sshr", name="sshr-tags1", **TINY))


def test_no_tags_or_foreign_schema_are_refused(tile_folder: Path, tmp_path: Path) -> None:
    p = _tagged_project(tile_folder, tmp_path, 0)
    with pytest.raises(ValueError, match="no tile tagged"):
        run_to_end(train_from_tags(p, "sshr", **TINY))
    with pytest.raises(ValueError, match="project's own classes"):
        run_to_end(train_from_tags(p, "sshr", schema="bcss", **TINY))
    assert not (p.root / "training_sets" / "sshr-tags1").exists()


def test_with_corrections_fine_tunes_the_tag_model_on_them(tile_folder: Path, tmp_path: Path) -> None:
    from napari_wsss.models.card import load_card

    p = _tagged_project(tile_folder, tmp_path, 8)
    tiles = folder_tiles(tile_folder)
    for t in tiles[:2]:  # two corrected tiles: pixel supervision
        truth = np.full((64, 64), 4, np.uint8)
        truth[:32] = 0
        p.save_prediction(t.key, np.full((64, 64), 4, np.uint8), "none", image=t.image)
        p.save_correction(t.key, truth, np.ones((64, 64), bool))
    out = run_to_end(train_from_tags(p, "sshr", "tags", with_corrections=True,
                                     finetune_options={"epochs": 1, "min_epoch_crops": 8, "batch_size": 4,
                                                       "device": "cpu", "max_teacher_tiles": 2}, **TINY))
    assert out == p.models_dir / "tags-ft1" and (p.models_dir / "tags").is_dir()
    card = load_card(out)
    assert card.parent == "tags" and len(card.config["finetune"]["corrections"]) == 2


def _correct_two(p: Project, tile_folder: Path) -> None:
    for t in folder_tiles(tile_folder)[:2]:
        truth = np.full((64, 64), 4, np.uint8)
        truth[:32] = 0
        p.save_prediction(t.key, np.full((64, 64), 4, np.uint8), "none", image=t.image)
        p.save_correction(t.key, truth, np.ones((64, 64), bool))


def test_corrected_tiles_score_every_epoch_live_and_in_the_card(tile_folder: Path, tmp_path: Path) -> None:
    from napari_wsss.models.card import load_card

    p = _tagged_project(tile_folder, tmp_path, 8)
    _correct_two(p, tile_folder)
    seen = []
    out = run_to_end(train_from_tags(p, "sshr", **{**TINY, "epochs": 2}), seen.append)
    points = [(q.metrics["epoch"], q.metrics["val_mIoU"]) for q in seen if "val_mIoU" in q.metrics]
    assert [e for e, _ in points] == [1.0, 2.0] and all(0.0 <= v <= 1.0 for _, v in points)
    assert load_card(out).metrics["epoch_val_mIoU"] == [round(v, 4) for _, v in points]
    assert any("2 corrected tiles" in q.desc for q in seen)
    # without corrections (or validate=False) no validation point appears
    seen.clear()
    run_to_end(train_from_tags(p, "sshr", validate=False, **TINY), seen.append)
    assert not any("val_mIoU" in q.metrics for q in seen)


def test_pause_holds_the_run_and_cancel_leaves_no_version(tile_folder: Path, tmp_path: Path) -> None:
    from napari_wsss.events import Cancelled

    p = _tagged_project(tile_folder, tmp_path, 8)
    polls = {"n": 0}
    state = {"paused": False}

    def paused() -> bool:
        polls["n"] += 1
        return state["paused"]

    def stop() -> bool:  # the "user" cancels after the pause was polled 20 times
        return polls["n"] > 20 + state.get("at", 10**9)

    gen = train_from_tags(p, "sshr", paused=paused, should_stop=stop, **{**TINY, "epochs": 3})
    steps = []
    with pytest.raises(Cancelled):
        for q in gen:
            if "loss" in q.metrics:
                steps.append(q.step)
                if len(steps) == 2:  # pause after two batches: the run must wait, then the cancel ends it
                    state["paused"], state["at"] = True, polls["n"]
    assert len(steps) == 2 and polls["n"] > 20  # no batch ran while paused
    assert not p.models_dir.exists() or not any(p.models_dir.iterdir())  # no version, no checkpoint


def test_same_name_after_a_cancel_trains(tile_folder: Path, tmp_path: Path) -> None:
    """Before: Cancel, then Train again under the same name, was refused: 'training_sets/<name> already exists;
    choose a new version name', though no version of that name was ever made. The leftover set is rebuilt from
    the tags of the moment; a real version of the name is still refused."""
    from napari_wsss.events import Cancelled

    p = _tagged_project(tile_folder, tmp_path, 8)
    batches = []
    with pytest.raises(Cancelled):  # cancelled after its first batch, as the Train widget's Cancel does
        for q in train_from_tags(p, "sshr", "again", should_stop=lambda: bool(batches), **TINY):
            if "loss" in q.metrics:
                batches.append(q.step)
    assert (p.root / "training_sets" / "again").is_dir() and not (p.models_dir / "again").exists()
    p.set_tags(folder_tiles(tile_folder)[0].key, [])  # one tile untagged meanwhile: the rebuilt set follows
    out = run_to_end(train_from_tags(p, "sshr", "again", **TINY))
    assert out == p.models_dir / "again" and (out / "card.json").is_file()
    with open(p.root / "training_sets" / "again" / "labels.csv") as f:
        assert len(list(csv.DictReader(f))) == 7
    with pytest.raises(FileExistsError, match="already exists; choose a new version name"):
        run_to_end(train_from_tags(p, "sshr", "again", **TINY))
