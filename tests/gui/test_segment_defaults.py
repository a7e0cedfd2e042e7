"""Segment's preselected model follows the images (real H&E -> the real-tissue model, class-named tiles -> their
model), and a slide region segmented in the viewer gets the glass around its tissue as background."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt

from ._plugin import SEGMENT, dock, open_path

GLAS, DEMO = "sshr-glas (shipped)", "sshr-default (shipped)"


def _plain_folder(tiny_dataset: Path, dst: Path) -> Path:
    """H&E tiles under plain names (no '-[1 0 0 1]' labels), as a folder of real images is named."""
    dst.mkdir()
    for i, f in enumerate(sorted((tiny_dataset / "test" / "img").glob("*.png"))):
        shutil.copy(f, dst / f"case{i:02d}.png")
    return dst


def test_plain_images_preselect_the_real_tissue_model(make_napari_viewer, tiny_dataset: Path,  # noqa: ANN001
                                                      tmp_path: Path) -> None:
    """Walk-through: a new folder of real H&E preselected the demo (generated LUAD-like tiles, worse than trivial on
    real tissue). A later choice of the user's stands."""
    viewer = make_napari_viewer()
    open_path(viewer, _plain_folder(tiny_dataset, tmp_path / "cases"))
    w = dock(viewer, SEGMENT)
    assert w.version_combo.currentText() == GLAS
    assert "real H&E" in w.model_info.text() and "no class labels" in w.model_info.text()
    w.version_combo.setCurrentIndex(w.version_combo.findText(DEMO))
    assert "DEMO model" in w.model_info.text() and "preselected" not in w.model_info.text()
    viewer.add_image(np.zeros((8, 8, 3), np.uint8), rgb=True, name="other")  # the image list refreshes
    w.image_combo.setCurrentText("cases")
    assert w.version_combo.currentText() == DEMO


def test_class_named_tiles_and_the_sample_keep_their_model(make_napari_viewer, tiny_dataset: Path) -> None:  # noqa: ANN001
    viewer = make_napari_viewer()
    open_path(viewer, tiny_dataset / "test")  # LUAD-HistoSeg names: 'syn...-[1 0 0 1].png'
    w = dock(viewer, SEGMENT)
    assert w.version_combo.currentText() == DEMO and "DEMO model" in w.model_info.text()
    viewer.open_sample("napari-wsss", "slide")
    w.image_combo.setCurrentText(viewer.layers[-1].name)
    assert w.version_combo.currentText() == DEMO


def test_a_project_with_user_work_keeps_its_classes(make_napari_viewer, tiny_dataset: Path,  # noqa: ANN001
                                                    tmp_path: Path) -> None:
    """Plain names, but the folder's project holds corrections on LUAD classes: its classes win."""
    from napari_wsss.classes import LUAD_HISTOSEG
    from napari_wsss.store import Project

    folder = _plain_folder(tiny_dataset, tmp_path / "cases")
    project = Project.open(folder, LUAD_HISTOSEG)
    project.register([{"key": "case00", "image": "case00.png"}])
    project.save_correction("case00", np.zeros((64, 64), np.uint8), np.ones((64, 64), bool))
    viewer = make_napari_viewer()
    open_path(viewer, folder)
    w = dock(viewer, SEGMENT)
    assert w.version_combo.currentText() == DEMO


def test_slide_region_glass_is_background(qtbot, make_napari_viewer, tmp_path: Path) -> None:  # noqa: ANN001
    """The real-tissue model (glass detection off, for white lumens) on a slide opened in the viewer, segmented
    'whole image': the glass margin is background, the white hole enclosed by tissue is not."""
    from tests._slides import write_svs
    from tests.unit.inference.test_slide_glass import glass_slide

    img, glass = glass_slide()
    viewer = make_napari_viewer()
    open_path(viewer, write_svs(tmp_path / "s.svs", img, n_levels=2))
    w = dock(viewer, SEGMENT)
    assert w.version_combo.currentText() == GLAS
    w.scope_combo.setCurrentText("whole image (coarsest level that fits)")
    qtbot.mouseClick(w.segment_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.job is not None and not w.job.running, timeout=60_000)
    assert w.last_error is None, w.last_error
    got = np.asarray(w.last_result_layer.data)
    assert got.shape == glass.shape
    assert (got[glass] == 0).all()
    assert (got[~glass] != 0).all()  # tissue and the enclosed white 'lumen' keep the model's tissue classes


def _project_used_with_a_fine_tuned_version(tiny_dataset: Path, tiny_model: Path, tmp_path: Path) -> Path:
    """Tiles whose project holds its own version ``tiny-ft1``, which made the latest (unreviewed) predictions."""
    import json

    from napari_wsss.classes import LUAD_HISTOSEG
    from napari_wsss.models.card import load_card
    from napari_wsss.store import Project

    tiles = tmp_path / "tiles"
    shutil.copytree(tiny_dataset / "test" / "img", tiles)
    project = Project.open(tiles, LUAD_HISTOSEG)
    version = project.add_model_version(tiny_model, "tiny-ft1")
    card = json.loads((version / "card.json").read_text())
    (version / "card.json").write_text(json.dumps({**card, "name": "tiny-ft1"}))
    files = sorted(tiles.glob("*.png"))
    project.register([{"key": f.stem, "image": f.name} for f in files])
    cm = np.zeros((64, 64), np.uint8)
    project.save_prediction(files[0].stem, cm, "sshr-default")
    project.set_status(files[0].stem, "accepted")
    project.save_prediction(files[1].stem, cm, load_card(version))  # "Use this version": the unreviewed tiles
    return tiles


def test_a_reopened_project_starts_on_the_version_of_its_latest_predictions(make_napari_viewer, tiny_dataset: Path,  # noqa: ANN001
                                                                           tiny_model: Path, tmp_path: Path) -> None:
    """Walk-through on GlaS: after "Use this version" re-segmented the unreviewed tiles with the project's fine-tuned
    version, reopening the project preselected the shipped model again (the next Segment undid the switch)."""
    from ._plugin import REVIEW

    viewer = make_napari_viewer()
    open_path(viewer, _project_used_with_a_fine_tuned_version(tiny_dataset, tiny_model, tmp_path))
    dock(viewer, REVIEW)
    w = dock(viewer, SEGMENT)
    assert w.version_combo.currentText() == "tiny-ft1 (project)", w.version_combo.currentText()
    assert "latest predictions came from tiny-ft1" in w.model_info.text()
    w.version_combo.setCurrentIndex(w.version_combo.findText(DEMO))  # the user's own choice stands
    w._refresh_versions()
    assert w.version_combo.currentText() == DEMO


def test_segment_docked_before_review_still_starts_on_that_version(make_napari_viewer, tiny_dataset: Path,  # noqa: ANN001
                                                                    tiny_model: Path, tmp_path: Path) -> None:
    """The project's versions are listed once Review opens the project: the choice is made again then, unless the
    user picked a version of their own."""
    from ._plugin import REVIEW

    viewer = make_napari_viewer()
    open_path(viewer, _project_used_with_a_fine_tuned_version(tiny_dataset, tiny_model, tmp_path))
    w = dock(viewer, SEGMENT)
    assert w.version_combo.findText("tiny-ft1 (project)") < 0  # not listed before the project is open
    dock(viewer, REVIEW)
    assert w.version_combo.currentText() == "tiny-ft1 (project)", w.version_combo.currentText()

    viewer2 = make_napari_viewer()  # a user's pick before Review opens the project is kept
    open_path(viewer2, tmp_path / "tiles")
    w2 = dock(viewer2, SEGMENT)
    w2.version_combo.setCurrentIndex(w2.version_combo.findText(DEMO))  # of the project's classes, as tiny-ft1
    w2.version_combo.activated.emit(w2.version_combo.currentIndex())  # what a click in the list emits
    dock(viewer2, REVIEW)
    assert w2.version_combo.currentText() == DEMO
