"""Drive the Fine-tune widget: a short fine-tune from corrections in the worker, a new version listed, cancel."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_wsss.classes import LUAD_HISTOSEG
from napari_wsss.data.tiles import read_mask
from napari_wsss.gui.finetune_widget import FinetuneWidget
from napari_wsss.store import Project
from ._plugin import FINETUNE, SEGMENT, dock


@pytest.fixture
def corrected_project(tmp_path: Path, tiny_dataset: Path) -> Project:
    """The tiny test tiles in their own folder with a project: two corrected with the truth, one accepted."""
    folder = tmp_path / "tiles"
    shutil.copytree(tiny_dataset / "test" / "img", folder)
    project = Project.open(folder, LUAD_HISTOSEG)
    files = sorted(folder.glob("*.png"))
    project.register([{"key": f.stem, "image": f.name} for f in files])
    for i, f in enumerate(files):
        mask = read_mask(tiny_dataset / "test" / "mask" / f.name, LUAD_HISTOSEG)
        touched = np.zeros(mask.shape, bool)
        touched[: mask.shape[0] // 2] = True
        project.save_correction(f.stem, mask, touched)
        if i == 2:
            project.set_status(f.stem, "accepted")
    return project


@pytest.fixture
def widget(make_napari_viewer, corrected_project: Project, tiny_model: Path):  # noqa: ANN001, ANN201
    w = dock(make_napari_viewer(), FINETUNE)
    w.set_project(corrected_project.root)
    w.add_base_version(tiny_model)
    w.epochs_spin.setValue(2)
    return w


def test_short_finetune_lists_a_new_version(qtbot, widget: FinetuneWidget, corrected_project: Project) -> None:  # noqa: ANN001
    from napari_wsss.gui._responsiveness import StallMeter

    assert "2 corrected, 1 accepted" in widget.counts_label.text()
    shown = []  # what the bar and its line showed after every report
    on_progress = widget._on_progress

    def record(p) -> None:  # noqa: ANN001
        on_progress(p)
        shown.append((widget.progress.value(), widget.progress.maximum(), widget.status.text()))

    widget._on_progress = record
    meter = StallMeter().start()
    qtbot.mouseClick(widget.start_btn, Qt.LeftButton)
    # a check fit and a refit (the dense default): ~1 min on an idle 2-core machine, longer beside other jobs
    qtbot.waitUntil(lambda: widget.job is not None and not widget.job.running, timeout=400_000)
    stats = meter.stop().stats()
    assert widget.last_error is None, widget.last_error
    # one bar over both fits that never moves back (it ran to 98 % in the check, then restarted for the refit)
    assert shown and all(m == shown[0][1] > 0 for _, m, _ in shown)
    values = [v for v, _, _ in shown]
    assert values == sorted(values) and values[-1] == shown[0][1]
    texts = [t for _, _, t in shown]
    assert any(t.startswith("checking on 1 tile kept out of training (run 1 of 2): epoch 2/2") for t in texts)
    assert any(t.startswith("final fit on all 3 tiles you reviewed (run 2 of 2): epoch 1/2") for t in texts)
    assert widget.last_result == corrected_project.models_dir / "tiny-sshr-ft1"
    assert "tiny-sshr-ft1" in widget.version_names()
    assert corrected_project.model_versions() == [widget.last_result]
    assert widget.use_btn.isEnabled() and "New version tiny-sshr-ft1" in widget.status.text()
    assert len(widget.plot.values) == 3  # before + 2 epochs
    from napari_wsss.models.card import load_card

    card = load_card(widget.last_result)
    after = card.metrics["held_out"]["after"]
    # the plot's caption and the verdict name the same number, the version written's (walk-through: 0.807 / 0.857)
    assert widget.plot.caption == f"held-out mIoU {after:.3f} (the version written)"
    assert f"-> {after:.3f}" in widget.status.text()  # the default student: a segmentation network, an ifkd version
    assert card.method == "ifkd" and card.config["finetune"]["student"] == "dense"
    assert card.config["teacher"] == "tiny-sshr"
    print(f"event-loop gaps during the fine-tune: {stats}")
    # "Use this version" hands it to a Segment widget

    seg = dock(widget.viewer, SEGMENT)
    assert widget.use_version() is seg
    assert seg.version_combo.currentData() == str(widget.last_result)


def test_cancel_writes_nothing(qtbot, widget: FinetuneWidget, corrected_project: Project) -> None:  # noqa: ANN001
    widget.set_paused(True)  # start paused: the worker waits before its first batch
    widget.start()
    widget.set_paused(True)
    qtbot.waitUntil(lambda: "epoch" in widget.status.text() or "paused" in widget.status.text()
                    or "teacher" in widget.status.text(), timeout=60_000)
    qtbot.mouseClick(widget.cancel_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: not widget.job.running, timeout=60_000)
    assert "Cancelled" in widget.status.text()
    assert corrected_project.model_versions() == []
    assert not any(p.name.startswith(".") for p in corrected_project.root.rglob("*") if p.is_dir())


def test_base_starts_on_a_version_of_the_projects_classes(make_napari_viewer, tmp_path: Path,  # noqa: ANN001
                                                          tiny_dataset: Path) -> None:
    """A project of gland classes starts on the shipped gland model, not on the demo listed first (which cannot
    fine-tune it)."""
    from napari_wsss.classes import GLAS

    folder = Path(shutil.copytree(tiny_dataset / "test" / "img", tmp_path / "glands"))
    project = Project.open(folder, GLAS)
    f = sorted(folder.glob("*.png"))[0]
    project.register([{"key": f.stem, "image": f.name}])
    mask = np.zeros((64, 64), np.uint8)
    project.save_correction(f.stem, mask, np.ones(mask.shape, bool))
    w = dock(make_napari_viewer(), FINETUNE)
    w.set_project(project.root)
    assert w.base_combo.currentText().startswith("sshr-glas"), w.base_combo.currentText()


def test_segment_lists_the_new_version_when_it_is_done(qtbot, make_napari_viewer, corrected_project: Project,  # noqa: ANN001
                                                       tiny_model: Path) -> None:
    """Without "Use this version": the Segment widget docked beside it lists the new version once it exists."""
    from ._plugin import REVIEW, open_path

    viewer = make_napari_viewer()
    open_path(viewer, Path(corrected_project.source))
    dock(viewer, REVIEW)
    seg = dock(viewer, SEGMENT)
    seg.method_combo.setCurrentText("sshr")
    ft = dock(viewer, FINETUNE)
    ft.add_base_version(tiny_model)
    ft.epochs_spin.setValue(1)
    qtbot.mouseClick(ft.start_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: ft.job is not None and not ft.job.running, timeout=120_000)
    assert ft.last_error is None, ft.last_error
    listed = [seg.version_combo.itemText(i) for i in range(seg.version_combo.count())]
    assert any(t.startswith("tiny-sshr-ft1 (project") for t in listed), listed
    # the status says where it is listed and how to use it, not only the held-out verdict
    # under the label Segment shows on its method (sshr), not the one the version has under its own (ifkd)
    shown = [t for i, t in enumerate(listed)
             if Path(seg.version_combo.itemData(i)).resolve() == ft.last_result.resolve()]
    assert shown == ["tiny-sshr-ft1 (project, ifkd)"], listed
    assert ("Segment (Plugins > WSSS tissue segmentation > Segment) lists it as 'tiny-sshr-ft1 (project, "
            "ifkd)' under the method 'sshr'") in ft.status.text()
    assert "'Use this version' selects it in Segment" in ft.status.text()


def test_browsing_to_the_tile_folder_finds_its_project(make_napari_viewer, corrected_project: Project) -> None:  # noqa: ANN001
    """A pathologist browses to the tiles they reviewed, not to the hidden-looking ``<tiles>.wsss`` beside them
    (walk-through: 'No annotation project at .../tiles (no project.json)')."""
    w = dock(make_napari_viewer(), FINETUNE)
    w.set_project(corrected_project.source)
    assert w.project_root() == Path(corrected_project.root).resolve()
    assert w.counts_label.text().startswith("2 corrected, 1 accepted")
    with pytest.raises(FileNotFoundError, match="no project.json"):
        w.set_project(Path(corrected_project.source).parent)  # a folder that is neither: still refused clearly


def test_use_this_version_on_a_slide_segments_the_whole_slide_again(qtbot, make_napari_viewer, pyramid_tiff: Path,  # noqa: ANN001
                                                                    tiny_model: Path, monkeypatch) -> None:
    """Walk-through on a real SVS: "Use this version" left Segment's region at 'current tile / image', which a slide
    too big for one go refuses, and still said "Re-segmenting the unreviewed tiles"."""
    from napari_wsss.gui import segment_widget
    from ._plugin import REVIEW, open_path

    monkeypatch.setattr(segment_widget, "MAX_PIXELS", 64 * 64)  # a slide too big to segment in one go
    viewer = make_napari_viewer()
    open_path(viewer, pyramid_tiff)
    review = dock(viewer, REVIEW)
    seg = dock(viewer, SEGMENT)
    seg.add_model_version(tiny_model)
    seg.scope_combo.setCurrentText("whole slide, full resolution (tiled, saved as zarr)")
    seg.segment()
    qtbot.waitUntil(lambda: not seg.job.running, timeout=60_000)
    first = seg.last_result_layer.metadata["napari_wsss"]["zarr"]
    review.set_status("accepted")
    seg.scope_combo.setCurrentText("current tile / image")  # where a user may have left it
    ft = dock(viewer, FINETUNE)
    assert ft.counts_label.text().startswith("0 corrected, 1 accepted") and ft.counts_label.text().endswith(" regions")
    ft.last_result = review.session.project.add_model_version(tiny_model, "tiny-ft1")  # as a finished fine-tune
    assert ft.use_version() is seg
    assert ft.status.text().startswith("Re-segmenting the unreviewed regions with tiny-ft1")
    qtbot.waitUntil(lambda: not seg.job.running, timeout=60_000)
    assert seg.last_error is None, seg.last_error
    assert seg.scope_combo.currentText().startswith("whole slide, full resolution")
    assert seg.last_result_layer.metadata["napari_wsss"]["zarr"] != first  # a new whole-slide result
    # when Segment is done the line says so (walk-through: "Re-segmenting …" stayed after it had finished)
    qtbot.waitUntil(lambda: ft.status.text().startswith("tiny-ft1 in use. Segment: "), timeout=10_000)
    assert ft.status.text().endswith(seg.status.text()) and "Re-segmenting" not in ft.status.text()
    ft._on_result(ft.last_result)  # the status at the end of a fine-tune names the slide's units too
    assert ft.status.text().endswith("re-segments the unreviewed regions."), ft.status.text()


def test_progress_line_names_the_run_the_loss_and_whose_score(widget: FinetuneWidget) -> None:
    """Walk-through on real GlaS images: "epoch 1/8 · held-out mIoU 0.989" showed the base model's score as if
    epoch 1 had earned it, and the loss was a single batch's (it swung from 0.28 to 1.84)."""
    from napari_wsss.events import Progress

    run = "checking on 1 tile kept out of training (run 1 of 2)"
    widget._on_progress(Progress(120, 1000, f"{run}: epoch 1/8", {"loss": 0.61, "lr": 1e-3, "held_out_base": 0.989}))
    text = widget.status.text()
    assert text.startswith(f"{run}: epoch 1/8") and "loss 0.610 (epoch mean)" in text
    assert "held-out mIoU of the base model 0.989 (before training)" in text
    assert (widget.progress.value(), widget.progress.maximum()) == (120, 1000)
    assert widget.plot.values == [0.989]
    widget._on_progress(Progress(180, 1000, f"{run}: epoch 1/8 done",
                                 {"loss": 0.55, "held_out_base": 0.989, "held_out": 0.912, "epoch": 1.0}))
    widget._on_progress(Progress(190, 1000, f"{run}: epoch 2/8",
                                 {"loss": 0.5, "held_out_base": 0.989, "held_out": 0.912, "epoch": 1.0}))
    assert "held-out mIoU 0.912 after epoch 1 (base model 0.989)" in widget.status.text()
    assert widget.plot.values == [0.989, 0.912]
    final = "final fit on all 3 tiles you reviewed (run 2 of 2)"  # no tile held out: the check's plot stays
    widget._on_progress(Progress(600, 1000, f"{final}: epoch 1/8", {"loss": 0.7}))
    assert widget.status.text() == f"{final}: epoch 1/8 · loss 0.700 (epoch mean)"
    assert widget.plot.values == [0.989, 0.912] and widget.progress.value() == 600


def test_the_verdict_names_the_version_as_segment_lists_it(make_napari_viewer, corrected_project: Project,  # noqa: ANN001
                                                            tiny_model: Path, tmp_path: Path) -> None:
    """Walk-through: the verdict said Segment lists the new version as 'sshr-glas-ft1 (project)'; under the method
    Segment had selected it read 'sshr-glas-ft1 (project, fine-tuned: ifkd)', cut off in the combo (now
    'sshr-glas-ft1 (project, ifkd)')."""
    import json

    from ._plugin import REVIEW, open_path

    # a version listed under two methods, as a fine-tuned IFKD student of an SSHR base is (here: sshr and multistage)
    twin = Path(shutil.copytree(tiny_model, tmp_path / "twin"))
    card = json.loads((twin / "card.json").read_text())
    card["config"]["finetune"] = {"base_method": "multistage"}
    (twin / "card.json").write_text(json.dumps(card))
    viewer = make_napari_viewer()
    open_path(viewer, Path(corrected_project.source))
    dock(viewer, REVIEW)
    ft = dock(viewer, FINETUNE)
    version = corrected_project.add_model_version(twin, "tiny-sshr-ft1")
    ft._on_result(version)  # no Segment docked: it opens on sshr, where the version is "<name> (project)"
    assert "lists it as 'tiny-sshr-ft1 (project)' under the method 'sshr'" in ft.status.text(), ft.status.text()
    seg = dock(viewer, SEGMENT)
    seg.method_combo.setCurrentText("multistage")
    shown = [seg.version_combo.itemText(i) for i in range(seg.version_combo.count())
             if Path(seg.version_combo.itemData(i)).resolve() == version.resolve()]
    assert shown == ["tiny-sshr-ft1 (project, sshr)"]
    ft._on_result(version)
    assert f"lists it as {shown[0]!r} under the method 'multistage'" in ft.status.text(), ft.status.text()
