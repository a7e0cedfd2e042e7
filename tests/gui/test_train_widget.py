"""Drive the Train widget: options from the registries, SegMix/PCM switches, progress, cancel, the new version
appearing in the Segment widget."""

from __future__ import annotations

from pathlib import Path

import pytest
from qtpy.QtCore import Qt

from napari_wsss.gui.train_widget import TrainWidget
from napari_wsss.models.card import load_card
from ._plugin import SEGMENT, TRAIN, dock


@pytest.fixture
def widget(make_napari_viewer, tiny_dataset: Path, tmp_path: Path):  # noqa: ANN001, ANN201
    w = dock(make_napari_viewer(), TRAIN)
    w.data_edit.setText(str(tiny_dataset))
    w.out_edit.setText(str(tmp_path / "gui-sshr"))
    w.epochs_spin.setValue(1)
    w.size_spin.setValue(32)
    w.batch_spin.setValue(4)
    w.device_combo.setCurrentText("cpu")
    return w


def _wait(qtbot, w: TrainWidget, timeout: int = 120_000) -> None:  # noqa: ANN001
    qtbot.waitUntil(lambda: w.job is not None and not w.job.running, timeout=timeout)


def test_choices_come_from_registries(widget: TrainWidget) -> None:
    from napari_wsss.models._registry import BACKBONES, METHODS

    methods = [widget.method_combo.itemText(i) for i in range(widget.method_combo.count())]
    assert "sshr" in methods and set(methods) <= set(METHODS.names())
    assert [widget.backbone_combo.itemText(i) for i in range(widget.backbone_combo.count())] == BACKBONES.names()
    assert widget.method_combo.currentText() == "sshr" and widget.cam_box.isEnabled()
    assert not widget.patch_spin.isEnabled()
    widget.segmix_check.setChecked(True)
    assert widget.patch_spin.isEnabled()
    if "mil" in methods:  # not a CAM trainer: no SegMix/PCM options offered or passed
        widget.method_combo.setCurrentText("mil")
        assert not widget.cam_box.isEnabled() and "segmix" not in widget.options()


def test_pretrained_weights_option(widget: TrainWidget) -> None:
    widget.backbone_combo.setCurrentText("small_cnn")
    widget.pretrained_check.setChecked(True)
    assert not widget.pretrained_check.isEnabled() and "pretrained" not in widget.options()  # no weights exist
    widget.backbone_combo.setCurrentText("resnet18")
    assert widget.pretrained_check.isEnabled() and widget.options()["pretrained"] is True
    widget.pretrained_check.setChecked(False)
    assert "pretrained" not in widget.options()  # the trainers' "auto": cached weights only


def test_stain_jitter_option(widget: TrainWidget) -> None:
    assert "hed_scale" not in widget.options()  # off by default: the trainers' default
    widget.hed_spin.setValue(0.05)
    assert widget.options()["hed_scale"] == pytest.approx(0.05) and widget.options()["hed_shift"] == pytest.approx(0.05)


def test_train_with_segmix_pcm_adds_version_to_segment_widget(qtbot, widget: TrainWidget) -> None:  # noqa: ANN001
    seg = dock(widget.viewer, SEGMENT)
    widget.segmix_check.setChecked(True)
    widget.patch_spin.setValue(16)
    widget.pcm_check.setChecked(True)
    seen = []
    widget.job = None
    orig = widget._on_progress
    widget._on_progress = lambda p: (seen.append(p), orig(p))  # type: ignore[method-assign]
    qtbot.mouseClick(widget.train_btn, Qt.LeftButton)
    _wait(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    out = widget.last_result
    card = load_card(out)
    assert card.method == "sshr" and card.config["segmix"] and card.config["pcm"]
    assert card.config["segmix_patch"] == 16 and card.input_size == 32
    assert any("segmix_patch" in p.metrics for p in seen)
    assert seg.version_combo.currentData() == str(out) and seg.method_combo.currentText() == "sshr"
    assert "Trained model version" in widget.status.text()


def test_train_mil_to_ifkd_from_the_widget(qtbot, widget: TrainWidget, tmp_path: Path) -> None:  # noqa: ANN001
    """The whole two-stage method from the Train widget: a MIL teacher beside the student, the student in Segment."""
    seg = dock(widget.viewer, SEGMENT)
    widget.method_combo.setCurrentText("ifkd")
    assert not widget.cam_box.isEnabled()  # SegMix/PCM are CAM-network options
    widget.out_edit.setText(str(tmp_path / "gui-ifkd"))
    qtbot.mouseClick(widget.train_btn, Qt.LeftButton)
    _wait(qtbot, widget, 180_000)
    assert widget.last_error is None, widget.last_error
    out = widget.last_result
    card = load_card(out)
    assert card.method == "ifkd" and card.config["teacher_name"] == "gui-ifkd-teacher"
    assert load_card(tmp_path / "gui-ifkd-teacher").method == "mil"
    assert seg.version_combo.currentData() == str(out) and seg.method_combo.currentText() == "ifkd"


def test_cancel_keeps_no_model(qtbot, widget: TrainWidget, monkeypatch) -> None:  # noqa: ANN001
    widget.epochs_spin.setValue(50)
    widget.train()
    widget.cancel()
    _wait(qtbot, widget)
    assert widget.last_result is None and widget.last_error is None
    assert "Cancelled" in widget.status.text()
    assert not (Path(widget.out_edit.text()) / "card.json").exists()
    assert widget.train_btn.isEnabled() and not widget.cancel_btn.isEnabled()


def test_bad_input_is_explained(widget: TrainWidget, tmp_path: Path) -> None:
    widget.data_edit.setText(str(tmp_path / "nope"))
    widget.train()
    assert widget.job is None and "does not exist" in str(widget.last_error)
    widget.data_edit.setText(str(tmp_path))
    widget.out_edit.setText("")
    widget.train()
    assert "output" in str(widget.last_error)


def test_real_images_with_masks_to_a_patch_set_then_train_with_its_classes(qtbot, make_napari_viewer,  # noqa: ANN001
                                                                          tmp_path) -> None:
    """The pathologist's real data as it comes (images/ + masks/, 255 = gland): Make patch set cuts it into a
    weakly labelled set split by image, the classes follow the set (colon-gland), and Train makes a version of
    those classes. Before: the widget had no classes choice and always trained LUAD's four."""
    import json

    import numpy as np
    from PIL import Image

    from napari_wsss.models.card import load_card

    src = tmp_path / "glas"
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (src / sub).mkdir(parents=True)
    for i, (h, w) in enumerate([(96, 128), (80, 112), (112, 96), (96, 96), (88, 120)]):  # mixed sizes
        img = rng.integers(120, 200, (h, w, 3), dtype=np.uint8)
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4: 3 * h // 4, : w // 2] = 255
        img[mask > 0] = (150, 60, 140)
        Image.fromarray(img).save(src / "images" / f"train_{i}.png")
        Image.fromarray(mask).save(src / "masks" / f"train_{i}.png")
    viewer = make_napari_viewer()
    w = dock(viewer, TRAIN)
    w.src_edit.setText(str(src))
    w.schema_combo.setCurrentText("glas")
    w.patch_size_spin.setValue(32)
    w.make_patches()
    qtbot.waitUntil(lambda: w.job is not None and not w.job.running, timeout=60_000)
    assert w.last_error is None, w.last_error
    data = tmp_path / "glas-patches32"
    assert w.data_edit.text() == str(data)
    split = json.loads((data / "split.json").read_text())
    assert {v["split"] for v in split["images"].values()} == {"train", "val"}  # by image, never by patch
    w.schema_combo.setCurrentText("luad")
    w.data_edit.setText("")
    w.data_edit.setText(str(data))  # the set names its classes
    assert w.schema_combo.currentText() == "glas"
    w.out_edit.setText(str(tmp_path / "m"))
    w.epochs_spin.setValue(1)
    w.size_spin.setValue(32)
    w.batch_spin.setValue(8)
    w.train()
    qtbot.waitUntil(lambda: w.job is not None and not w.job.running, timeout=180_000)
    assert w.last_error is None, w.last_error
    assert load_card(tmp_path / "m").class_schema.foreground_names == ["gland", "non-gland"]


def test_an_exported_gland_set_trains_with_its_own_classes(qtbot, make_napari_viewer, tmp_path: Path) -> None:  # noqa: ANN001
    """Walk-through: training on an exported gland set with the form's default classes (LUAD) failed on its file
    names. The exported set's manifest names its classes: choosing it as the data chooses them, and says so."""
    import numpy as np
    from PIL import Image

    from napari_wsss.classes import GLAS
    from napari_wsss.events import run_to_end
    from napari_wsss.export.training_set import export_project
    from napari_wsss.store import Project

    tiles = tmp_path / "glands"
    tiles.mkdir()
    rng = np.random.default_rng(0)
    project = Project.open(tiles, GLAS)
    for i in range(6):
        img = rng.integers(150, 220, (48, 48, 3), dtype=np.uint8)
        cm = np.full((48, 48), GLAS.index_of("non-gland"), np.uint8)
        cm[8:24 + i, 8:30] = GLAS.index_of("gland")
        img[cm == 0] = (150, 60, 140)
        Image.fromarray(img).save(tiles / f"g{i}.png")
        project.register([{"key": f"g{i}", "image": f"g{i}.png"}])
        project.save_correction(f"g{i}", cm, np.ones((48, 48), bool))
    out = run_to_end(export_project(project.root, tmp_path / "glands-export"))
    w = dock(make_napari_viewer(), TRAIN)
    assert w.schema_combo.currentText() == "luad"
    w.data_edit.setText(str(out))
    assert w.schema_combo.currentText() == "glas" and "manifest.json" in w.status.text()
    w.out_edit.setText(str(tmp_path / "m"))
    w.epochs_spin.setValue(1)
    w.size_spin.setValue(32)
    w.batch_spin.setValue(4)
    w.device_combo.setCurrentText("cpu")
    w.train()
    _wait(qtbot, w)
    assert w.last_error is None, w.last_error
    assert load_card(tmp_path / "m").class_schema.foreground_names == ["gland", "non-gland"]


def test_status_after_training_says_where_segment_lists_the_version(make_napari_viewer, tiny_dataset: Path,  # noqa: ANN001
                                                                   tiny_model: Path, tmp_path: Path) -> None:
    """The status sent the user to Browse… for a version Segment already listed (a project's models/)."""
    import shutil

    from napari_wsss.store import Project
    from ._plugin import REVIEW, open_path

    folder = tmp_path / "tiles"
    shutil.copytree(tiny_dataset / "test" / "img", folder)
    viewer = make_napari_viewer()
    open_path(viewer, folder)
    dock(viewer, REVIEW)  # opens the tiles' annotation project
    train = dock(viewer, TRAIN)
    version = Project.load(folder.parent / "tiles.wsss").add_model_version(tiny_model, "sshr-tags1")
    train._on_result(version)  # what a run from the project's tags returns: a folder in its models/
    assert "Browse" not in train.status.text()
    assert "Segment (Plugins > WSSS tissue segmentation > Segment) lists it as 'sshr-tags1 (project)'" in train.status.text()
    seg = dock(viewer, SEGMENT)
    seg.method_combo.setCurrentText("sshr")
    assert "sshr-tags1 (project)" in [seg.version_combo.itemText(i) for i in range(seg.version_combo.count())]
    train._on_result(version)  # with Segment docked: it selects it, under that label
    assert Path(seg.version_combo.currentData()).resolve() == version.resolve()
    assert "the Segment widget lists it as 'sshr-tags1 (project)' and has it selected" in train.status.text()
    train._on_result(tiny_model)  # a folder outside any project: Segment docked lists it by its folder name
    assert "lists it as 'tiny-sshr'" in train.status.text()


def test_segment_selects_an_added_project_version_not_the_last_row(make_napari_viewer, tiny_dataset: Path,  # noqa: ANN001
                                                                   tiny_model: Path, tmp_path: Path) -> None:
    """A project's version is listed before browsed ones; adding it selected the list's last row (another model)."""
    import shutil

    from napari_wsss.store import Project
    from ._plugin import REVIEW, open_path

    folder = tmp_path / "tiles"
    shutil.copytree(tiny_dataset / "test" / "img", folder)
    viewer = make_napari_viewer()
    open_path(viewer, folder)
    dock(viewer, REVIEW)
    seg = dock(viewer, SEGMENT)
    seg.add_model_version(tiny_model)  # browsed: the last row
    version = Project.load(folder.parent / "tiles.wsss").add_model_version(tiny_model, "sshr-tags1")
    label = seg.add_model_version(version)
    assert Path(seg.version_combo.currentData()).resolve() == version.resolve()
    assert label == "sshr-tags1 (project)"
    rows = [Path(seg.version_combo.itemData(i)).resolve() for i in range(seg.version_combo.count())]
    assert len(rows) == len(set(rows))  # each folder listed once
