"""A new user tries two models on one image: the project takes the classes of whichever model segments it, as
long as it holds no work of theirs (walk-through: the first Segment with the demo model locked the classes).

Reads one real GlaS image from ../shared/data/glas (copied into the test's temporary folder) and skips, saying
why, where it is absent.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_wsss.store import Project

from ._plugin import REVIEW, SEGMENT, dock, open_path
from .._glas import GLAS, require_glas

IMAGE = GLAS / "images" / "train_1.png"


@pytest.fixture
def gland_image(tmp_path: Path) -> Path:
    require_glas(IMAGE)
    return Path(shutil.copy(IMAGE, tmp_path / IMAGE.name))


def _paint(layer) -> None:  # noqa: ANN001
    """A brush stroke that changes a pixel (a label the prediction does not hold there)."""
    layer.paint((10, 10), 1 if int(layer.data[10, 10]) != 1 else 2, refresh=True)


def _segment_with(qtbot, seg, version: str) -> None:  # noqa: ANN001
    seg.version_combo.setCurrentIndex(seg.version_combo.findText(version))
    assert seg.version_combo.currentText() == version
    qtbot.mouseClick(seg.segment_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: seg.job is not None and not seg.job.running, timeout=240_000)


def test_second_model_of_other_classes_takes_over_a_project_of_machine_output(gland_image: Path, qtbot,  # noqa: ANN001
                                                                             make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    open_path(viewer, gland_image)
    seg, review = dock(viewer, SEGMENT), dock(viewer, REVIEW)
    _segment_with(qtbot, seg, "sshr-default (shipped)")
    assert seg.last_error is None, seg.last_error
    root = review.session.project.root
    assert Project.load(root).counts()["predicted"] == 1
    _segment_with(qtbot, seg, "sshr-glas (shipped)")
    assert seg.last_error is None, seg.last_error  # was: "already holds masks of [TE, ...]"
    project = Project.load(root)
    assert project.schema.name == "colon-gland" and project.counts()["predicted"] == 1
    assert project.item(gland_image.stem).model == "sshr-glas"
    assert set(np.unique(project.load_mask(gland_image.stem))) <= {0, 1, 2}
    assert [b.text() for b in review.palette_buttons][:2] == ["1: gland", "2: non-gland"]
    assert "kept aside" in seg.status.text() and len(list((root / "history").iterdir())) == 1
    # the user corrects the gland result: now the demo model is refused in the viewer's own words
    _paint(seg.last_result_layer)
    review.session.flush()
    _segment_with(qtbot, seg, "sshr-default (shipped)")
    msg = str(seg.last_error)
    assert "holds your work" in msg and "In Segment choose a model of the colon-gland classes" in msg
    assert "Use another project folder" in msg
    assert Project.load(root).item(gland_image.stem).status == "corrected"


def test_use_another_project_folder_starts_a_new_project_and_keeps_the_old(gland_image: Path, qtbot,  # noqa: ANN001
                                                                           make_napari_viewer, tmp_path: Path,
                                                                           monkeypatch) -> None:
    """The way out the refusal names: Review's 'Use another project folder…' button."""
    from qtpy.QtWidgets import QFileDialog

    viewer = make_napari_viewer()
    open_path(viewer, gland_image)
    seg, review = dock(viewer, SEGMENT), dock(viewer, REVIEW)
    _segment_with(qtbot, seg, "sshr-default (shipped)")
    old_root = review.session.project.root
    _paint(seg.last_result_layer)
    review.session.flush()  # user work: the LUAD classes are now fixed in the old project
    chosen = tmp_path / "second"
    chosen.mkdir()
    (chosen / "notes.txt").write_text("not empty")  # a project is made inside a folder holding other things
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(chosen))
    qtbot.mouseClick(review.project_btn, Qt.LeftButton)
    assert review.last_error is None, review.last_error
    new_root = chosen / old_root.name
    assert review.session.project.root == new_root and str(new_root) in review.project_label.text()
    assert not [ly for ly in viewer.layers if ly.name == "train_1 segmentation [sshr-default]"]  # its labels left
    _segment_with(qtbot, seg, "sshr-glas (shipped)")
    assert seg.last_error is None, seg.last_error
    assert Project.load(new_root).schema.name == "colon-gland"
    old = Project.load(old_root)
    assert old.schema.name == "LUAD-HistoSeg" and old.item(gland_image.stem).status == "corrected"


def test_tag_widget_follows_the_new_classes_and_a_tag_fixes_them(gland_image: Path, qtbot,  # noqa: ANN001
                                                                make_napari_viewer) -> None:
    """With Tag docked: the project taking the gland model's classes gives Tag the gland keys; once a tile is
    tagged, that tag is user work and another model's classes are refused."""
    from ._plugin import TAG

    folder = gland_image.parent / "glands"
    folder.mkdir()
    shutil.move(gland_image, folder / gland_image.name)
    viewer = make_napari_viewer()
    open_path(viewer, folder)
    seg, tag = dock(viewer, SEGMENT), dock(viewer, TAG)
    # a fresh project of plain images takes the classes of the model Segment would pick (sshr-glas), as Review does
    assert [b.text() for b in tag.class_buttons][0] == "1: gland"
    # and "Order by model" works before the project has a version of its own: the shipped model is offered
    assert tag.model_combo.currentText() == "sshr-glas (shipped)"
    assert tag.model_combo.itemText(0) == "sshr-glas (shipped)"  # the gland model before the LUAD demo
    tag.rank_by_model()
    qtbot.waitUntil(lambda: tag.job is not None and not tag.job.running, timeout=120_000)
    assert tag.last_error is None, tag.last_error
    assert "1 untagged tile(s) ordered by the model" in tag.status.text()
    _segment_with(qtbot, seg, "sshr-glas (shipped)")
    assert seg.last_error is None, seg.last_error
    assert [b.text() for b in tag.class_buttons] == ["1: gland", "2: non-gland"]
    tag.toggle("gland")
    tag.confirm()
    assert Project.load(tag.session.project.root).tags() == {gland_image.stem: ["gland"]}
    _segment_with(qtbot, seg, "sshr-default (shipped)")
    assert "1 item(s) tagged" in str(seg.last_error)


def _slide(tmp_path: Path) -> Path:
    from tests._slides import write_svs

    img = np.random.default_rng(3).integers(60, 220, (320, 448, 3), dtype=np.uint8)
    return write_svs(tmp_path / "case.svs", img, n_levels=2, mpp=0.5, mag=20)


def test_whole_slide_result_gives_a_new_slide_project_its_classes(qtbot, make_napari_viewer,  # noqa: ANN001
                                                                  tmp_path: Path) -> None:
    """Walk-through on a real SVS: 'whole slide, full resolution' with sshr-glas left the slide's new project on the
    default LUAD classes: Review's palette offered TE/NEC/LYM/TAS and the region layer drew non-gland as necrosis."""
    viewer = make_napari_viewer()
    open_path(viewer, _slide(tmp_path))
    seg, review = dock(viewer, SEGMENT), dock(viewer, REVIEW)
    seg.scope_combo.setCurrentText("whole slide, full resolution (tiled, saved as zarr)")
    _segment_with(qtbot, seg, "sshr-glas (shipped)")
    assert seg.last_error is None, seg.last_error
    qtbot.waitUntil(lambda: review.labels_layer is not None and not review.labels_layer.multiscale, timeout=10_000)
    assert review.session.project.schema.name == "colon-gland"
    assert [b.text() for b in review.palette_buttons] == ["1: gland", "2: non-gland", "3: glass"]
    region = review.labels_layer
    assert np.allclose(region.get_color(2)[:3], np.array([65, 105, 225]) / 255, atol=0.01)  # non-gland's blue
    value = 2 if region.data[5, 5] != 2 else 1  # a stroke that changes the pixel: non-gland, else gland
    region.paint((5, 5), value, refresh=True)
    review.session.flush()
    project = Project.load(review.session.project.root)  # what a restart reads
    key = review.session.units[0].key
    assert project.schema.name == "colon-gland" and project.item(key).status == "corrected"
    assert project.load_mask(key)[5, 5] == value - 1  # the gland schema's class index (non-gland 1), not LUAD's


def test_whole_slide_of_other_classes_is_refused_before_it_runs(qtbot, make_napari_viewer,  # noqa: ANN001
                                                                tmp_path: Path) -> None:
    """A slide project holding LUAD corrections: a gland model's whole-slide run is refused at once, writing nothing
    (it used to run for minutes into a zarr whose regions the project could not take)."""
    from napari_wsss.classes import LUAD_HISTOSEG

    path = _slide(tmp_path)
    viewer = make_napari_viewer()
    open_path(viewer, path)
    seg, review = dock(viewer, SEGMENT), dock(viewer, REVIEW)
    project = review.session.project
    project.adopt_schema(LUAD_HISTOSEG)
    project.register([{"key": "r0_0_64_64_l0", "region": [0, 0, 64, 64, 0]}])
    project.save_correction("r0_0_64_64_l0", np.zeros((64, 64), np.uint8), np.ones((64, 64), bool))
    seg.scope_combo.setCurrentText("whole slide, full resolution (tiled, saved as zarr)")
    seg.version_combo.setCurrentIndex(seg.version_combo.findText("sshr-glas (shipped)"))
    qtbot.mouseClick(seg.segment_btn, Qt.LeftButton)
    if seg.job is not None:  # before the fix it ran: let it finish so the test fails on the message, not a hang
        qtbot.waitUntil(lambda: not seg.job.running, timeout=240_000)
    assert "holds your work" in str(seg.last_error)
    assert not (project.root / "segmentations").exists()
    assert Project.load(project.root).item("r0_0_64_64_l0").status == "corrected"
