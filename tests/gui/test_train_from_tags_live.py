"""Training from tags in the Train widget, as docked from the manifest: Pause holds it, the corrected tiles give a
live validation point per epoch, Cancel leaves no model version in the project."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from napari_wsss.data.tiles import parse_labels_from_name
from napari_wsss.gui.train_widget import SOURCE_TAGS

from ._plugin import TAG, TRAIN, dock, open_path


@pytest.fixture
def tagged(make_napari_viewer, tmp_path: Path, tiny_dataset: Path):  # noqa: ANN001, ANN201
    """A viewer with a tile folder open, all 8 tiles tagged from their names and two of them corrected."""
    tiles = Path(shutil.copytree(tiny_dataset / "training", tmp_path / "case"))
    viewer = make_napari_viewer()
    open_path(viewer, tiles)
    tag = dock(viewer, TAG)
    project = tag.session.project
    schema = project.schema
    project.set_tags_many({t.key: [c.name for c, v in zip(schema.foreground, parse_labels_from_name(t.image, 4)) if v]
                           for t in tag.tiles}, by="test")
    for t in tag.tiles[:2]:
        truth = np.full((64, 64), 4, np.uint8)
        truth[:32] = 0
        project.save_prediction(t.key, np.full((64, 64), 4, np.uint8), "none", image=t.image)
        project.save_correction(t.key, truth, np.ones((64, 64), bool))
    train = dock(viewer, TRAIN)
    train.source_combo.setCurrentText(SOURCE_TAGS)
    train.backbone_combo.setCurrentText("small_cnn")
    train.size_spin.setValue(64)
    train.batch_spin.setValue(4)
    train.device_combo.setCurrentText("cpu")
    return train, project


def _first_batch(qtbot, train) -> None:  # noqa: ANN001
    qtbot.waitUntil(lambda: "loss" in train.status.text() or not train.job.running, timeout=60_000)
    assert train.job.running, train.last_error


def test_pause_holds_training_and_validation_points_appear(qtbot, tagged) -> None:  # noqa: ANN001
    train, project = tagged
    train.epochs_spin.setValue(2)
    train.out_edit.setText("live")
    train.train_btn.click()
    _first_batch(qtbot, train)
    train.pause_btn.click()
    assert train.pause_btn.text() == "Resume" and "paused" in train.status.text()
    qtbot.wait(500)  # progress already queued before the pause lands
    held = train.progress.value()
    qtbot.wait(1500)
    assert train.progress.value() == held and train.job.running  # nothing advanced while paused
    train.pause_btn.click()
    qtbot.waitUntil(lambda: not train.job.running, timeout=120_000)
    assert train.last_error is None, train.last_error
    assert train.last_result == project.models_dir / "live" and (train.last_result / "card.json").is_file()
    assert len(train.val_scores) == 2 and train.plot.values == train.val_scores  # one point per epoch
    assert all(0.0 <= v <= 1.0 for v in train.val_scores)


def test_cancel_leaves_no_version(qtbot, tagged) -> None:  # noqa: ANN001
    train, project = tagged
    train.epochs_spin.setValue(5)
    train.out_edit.setText("cancelled")
    train.train_btn.click()
    _first_batch(qtbot, train)
    train.pause_btn.click()  # held mid-run, then cancelled: the paused run must wake to stop
    train.cancel_btn.click()
    qtbot.waitUntil(lambda: not train.job.running, timeout=60_000)
    assert train.last_error is None and train.last_result is None
    assert "Cancelled" in train.status.text()
    assert not any(p.name.startswith("cancelled") for p in project.models_dir.glob("*"))  # no version, no checkpoint
    assert not train.pause_btn.isEnabled()


def test_project_choice_names_the_tags_classes(qtbot, make_napari_viewer, tmp_path: Path, tiny_dataset: Path) -> None:  # noqa: ANN001
    """Before: with 'the open project's tags' the greyed classes row still read 'luad' while the project (and the
    model it trains) held gland / non-gland; the project choice now names the classes the tags are of."""
    from napari_wsss.classes import GLAS

    tiles = Path(shutil.copytree(tiny_dataset / "training", tmp_path / "colon"))
    viewer = make_napari_viewer()
    open_path(viewer, tiles)
    tag = dock(viewer, TAG)
    tag.session.choose_classes(GLAS)
    tag.session.project.set_tags(tag.tiles[0].key, ["gland"])
    train = dock(viewer, TRAIN)
    train.source_combo.setCurrentText(SOURCE_TAGS)
    assert train.project_combo.currentText() == "colon.wsss (1 tagged, classes gland, non-gland)"
