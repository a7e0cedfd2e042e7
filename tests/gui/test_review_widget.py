"""Drive the Review & correct widget the way a pathologist does: segment, paint, move on, close, reopen."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_wsss.classes import BCSS_WSSS, LUAD_HISTOSEG
from napari_wsss.gui import _project_units
from napari_wsss.gui.review_widget import DEFAULT_BRUSH, ReviewWidget
from napari_wsss.gui.segment_widget import SegmentWidget
from napari_wsss.store import Project
from napari_wsss.gui._layers import same
from ._plugin import REVIEW, SEGMENT, dock, open_path

NEC = LUAD_HISTOSEG.index_of("NEC")  # class-map index 1 -> napari label 2


def _open(viewer, path: Path) -> None:  # noqa: ANN001
    open_path(viewer, path)


@pytest.fixture
def tiles(tmp_path: Path, tiny_dataset: Path) -> Path:
    """A private copy of the 3 test tiles: the project folder is written beside it."""
    return Path(shutil.copytree(tiny_dataset / "test", tmp_path / "case"))


def _widgets(viewer, folder: Path, model: Path) -> tuple[SegmentWidget, ReviewWidget]:  # noqa: ANN001
    _open(viewer, folder)
    review = dock(viewer, REVIEW)
    seg = dock(viewer, SEGMENT)
    seg.add_model_version(model)
    seg.image_combo.setCurrentText(folder.name)
    return seg, review


def _segment(qtbot, seg: SegmentWidget, scope: str = "all tiles in the stack") -> None:  # noqa: ANN001
    seg.scope_combo.setCurrentText(scope)
    qtbot.mouseClick(seg.segment_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: seg.job is not None and not seg.job.running, timeout=60_000)
    assert seg.last_error is None, seg.last_error


def test_segment_correct_change_tile_reopen_restores(qtbot, make_napari_viewer, tiles: Path,  # noqa: ANN001
                                                    tiny_model: Path) -> None:
    viewer = make_napari_viewer()
    seg, review = _widgets(viewer, tiles, tiny_model)
    assert review.session is not None and review.session.project.root == tiles.parent / "case.wsss"
    _segment(qtbot, seg)
    layer = review.labels_layer
    assert same(layer, seg.last_result_layer)  # one layer, whichever proxy each widget holds
    assert review.session.project.counts()["predicted"] == 3

    viewer.dims.set_current_step(0, 0)  # napari opens a stack on its middle tile
    review.next_btn.click()  # the second tile: index 1 on napari's slider, counted from 1 in the widget
    assert viewer.dims.current_step[0] == 1 and "tile 2 / 3" in review.position_label.text()
    before = np.array(layer.data[1])
    cls = "NEC" if before[20, 20] != NEC + 1 else "LYM"  # a class the model did not predict there
    btn = next(b for b in review.palette_buttons if cls in b.text())
    qtbot.mouseClick(btn, Qt.LeftButton)
    label = LUAD_HISTOSEG.index_of(cls) + 1
    assert layer.selected_label == label and layer.mode == "paint" and layer.brush_size == DEFAULT_BRUSH
    layer.paint((1, 20, 20), layer.selected_label)  # a brush dab, as a mouse click in paint mode does
    painted = np.array(layer.data[1]) != before
    assert painted.sum() > 50
    key = review.session.units[1].key

    review.next_btn.click()  # tile change saves at once
    on_disk = Project.open(tiles)  # a fresh reader of the folder: what a crash right now would leave
    item = on_disk.item(key)
    assert item.status == "corrected" and item.touched_fraction > 0
    assert on_disk.load_mask(key)[20, 20] == label - 1
    touched = on_disk.load_touched(key)
    assert np.array_equal(touched, painted)  # exactly the pixels the brush changed
    assert np.array_equal(on_disk.load_prediction(key), LUAD_HISTOSEG.from_labels(before))
    assert review.counts_label.text() == "1 / 3 reviewed (1 corrected, 0 accepted)"

    viewer.close()
    viewer2 = make_napari_viewer()
    _open(viewer2, tiles)
    review2 = dock(viewer2, REVIEW)
    from qtpy.QtWidgets import QPushButton

    qtbot.wait(10)  # deferred deletes run
    bg = [b for b in review2.findChildren(QPushButton) if b.text().endswith(": BG") and not b.isHidden()]
    assert len(bg) == 1 and len(review2.palette_buttons) == LUAD_HISTOSEG.n_classes  # no stale duplicate
    restored = review2.labels_layer
    assert restored is not None and "tiny-sshr" in restored.name
    assert restored.data[1, 20, 20] == label
    assert np.array_equal(LUAD_HISTOSEG.from_labels(restored.data[1][: touched.shape[0], : touched.shape[1]]),
                          on_disk.load_mask(key))
    assert review2.counts_label.text() == "1 / 3 reviewed (1 corrected, 0 accepted)"

    # segmenting again keeps the corrected tile and says so
    seg2 = dock(viewer2, SEGMENT)
    seg2.add_model_version(tiny_model)
    seg2.image_combo.setCurrentText(tiles.name)
    _segment(qtbot, seg2)
    assert "Kept 1 tile" in seg2.status.text()
    assert seg2.status.text().startswith("2 tile(s) segmented")  # the kept tile is not counted as segmented
    assert seg2.last_result_layer.data[1, 20, 20] == label
    assert Project.open(tiles).item(key).status == "corrected"


def test_autosave_without_tile_change_and_undo(qtbot, make_napari_viewer, tiles: Path,  # noqa: ANN001
                                               tiny_model: Path) -> None:
    """Killing the process loses at most one autosave interval: the disk holds each edit soon after it."""
    viewer = make_napari_viewer()
    seg, review = _widgets(viewer, tiles, tiny_model)
    _segment(qtbot, seg, "current tile / image")
    review.session.timer.setInterval(100)
    layer, key = review.labels_layer, review.session.units[0].key
    root = review.session.project.root
    pred = np.array(layer.data[0])
    for n, (y, x) in enumerate([(10, 10), (30, 30), (50, 12)]):  # three edits, checked on disk after each
        label = 4 if pred[y, x] != 4 else 3
        layer.paint((0, y, x), label)
        qtbot.waitUntil(lambda y=y, x=x, label=label: (Project.load(root).load_mask(key) is not None
                                                      and Project.load(root).load_mask(key)[y, x] == label - 1),
                        timeout=5_000)
    assert Project.load(root).item(key).status == "corrected"
    assert review.session.last_save_s < 0.5
    for _ in range(3):
        layer.undo()
    assert np.array_equal(layer.data[0], pred)
    qtbot.waitUntil(lambda: Project.load(root).item(key).status == "unreviewed", timeout=5_000)
    assert not Project.load(root).load_touched(key).any()
    layer.redo()
    qtbot.waitUntil(lambda: Project.load(root).item(key).status == "corrected", timeout=5_000)


def test_keys_pick_classes_and_accept_counts(qtbot, make_napari_viewer, tiles: Path,  # noqa: ANN001
                                             tiny_model: Path) -> None:
    viewer = make_napari_viewer()
    seg, review = _widgets(viewer, tiles, tiny_model)
    _segment(qtbot, seg)
    layer = review.labels_layer
    viewer.layers.selection.active = layer
    handler = viewer.window._qt_viewer._key_map_handler
    handler.press_key("3")
    handler.release_key("3")
    assert layer.selected_label == 3 and layer.mode == "paint"  # LYM, not napari's polygon tool
    # napari's status bar said "use <1> for activate the label eraser" on this layer: it says what the keys do here
    assert "keys 1-5 pick a class" in viewer.help and "use <1>" not in viewer.help, viewer.help
    assert "E erase" in layer.help and "P paint" in layer.help  # napari's tools by the letters that still work
    assert review.palette_buttons[2].isChecked()
    handler.press_key("5")  # the last palette entry: background (erase)
    handler.release_key("5")
    assert layer.selected_label == 0
    assert [b.text() for b in review.palette_buttons][:4] == ["1: TE", "2: NEC", "3: LYM", "4: TAS"]

    viewer.dims.set_current_step(0, 0)
    review.accept_btn.click()
    review.next_btn.click()
    review.accept_next_btn.click()  # accepts tile 2, shows tile 3
    assert viewer.dims.current_step[0] == 2
    assert review.counts_label.text() == "2 / 3 reviewed (0 corrected, 2 accepted)"
    review.prev_btn.click()
    review.unreview_btn.click()
    assert review.counts_label.text() == "1 / 3 reviewed (0 corrected, 1 accepted)"
    assert review.status_label.text() == "status: unreviewed"

    # accepting a tile the user painted keeps it counted as corrected (it became "accepted", hiding the work)
    layer.paint((1, 20, 20), 2 if layer.data[1, 20, 20] != 2 else 3)
    review.accept_next_btn.click()
    assert review.counts_label.text() == "2 / 3 reviewed (1 corrected, 1 accepted)", review.counts_label.text()
    assert Project.open(tiles).item(review.session.units[1].key).status == "corrected"


def test_keys_typed_on_the_canvas_pick_classes(qtbot, make_napari_viewer, tiles: Path,  # noqa: ANN001
                                              tiny_model: Path) -> None:
    """Keys as a keyboard sends them, through the canvas and napari's key handler (which crashed on any key while
    the segmentation layer was selected, reading ``__name__`` of every bound callback)."""
    from qtpy.QtTest import QTest

    viewer = make_napari_viewer()
    seg, review = _widgets(viewer, tiles, tiny_model)
    _segment(qtbot, seg)
    layer = review.labels_layer
    viewer.layers.selection.active = layer
    canvas = viewer.window._qt_viewer.canvas.native
    QTest.keyClick(canvas, Qt.Key.Key_2)
    assert layer.selected_label == 2 and layer.mode == "paint"
    assert review.palette_buttons[1].isChecked()
    QTest.keyClick(canvas, Qt.Key.Key_E)  # napari's own letter shortcuts still work on that layer
    assert layer.mode == "erase"


def test_model_with_other_classes_is_refused(qtbot, make_napari_viewer, tiles: Path,  # noqa: ANN001
                                            tiny_model: Path) -> None:
    Project.open(tiles, BCSS_WSSS)  # the project was started with the BCSS classes
    viewer = make_napari_viewer()
    seg, review = _widgets(viewer, tiles, tiny_model)
    n = len(viewer.layers)
    seg.segment()
    assert seg.job is None and "cannot write into it" in str(seg.last_error)
    assert len(viewer.layers) == n and review.session.project.counts()["predicted"] == 0


def test_empty_layer_and_no_rectangle_give_clear_errors(qtbot, make_napari_viewer, tiny_model: Path) -> None:  # noqa: ANN001
    viewer = make_napari_viewer()
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="only labels")
    seg = dock(viewer, SEGMENT)
    seg.add_model_version(tiny_model)
    seg.segment()  # no image layer at all
    assert seg.job is None and "No image selected" in str(seg.last_error)
    viewer.add_image(np.full((64, 64, 3), 200, np.uint8), name="tile", rgb=True)
    seg.image_combo.setCurrentText("tile")
    seg.scope_combo.setCurrentText("drawn rectangle (Shapes layer)")
    seg.segment()
    assert seg.job is None and "No rectangle drawn" in str(seg.last_error)
    review = dock(viewer, REVIEW)  # in-memory layers: no project, and no crash
    assert review.session is None


def test_drawn_rectangle_scope(qtbot, make_napari_viewer, tiles: Path, tiny_model: Path) -> None:  # noqa: ANN001
    viewer = make_napari_viewer()
    seg, review = _widgets(viewer, tiles, tiny_model)
    viewer.dims.set_current_step(0, 2)
    viewer.add_shapes([np.array([[2, 8, 4], [2, 8, 36], [2, 40, 36], [2, 40, 4]])], shape_type="rectangle",
                      name="roi")
    _segment(qtbot, seg, "drawn rectangle (Shapes layer)")
    data = seg.last_result_layer.data
    outside = np.ones(data.shape[1:], bool)
    outside[8:40, 4:36] = False
    assert not data[2][outside].any() and data[2][8:40, 4:36].any()
    assert not data[0].any() and not data[1].any()
    assert Project.open(tiles).item(review.session.units[2].key).prediction is not None


def test_slide_regions_review(qtbot, make_napari_viewer, pyramid_tiff: Path, tiny_model: Path,  # noqa: ANN001
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_project_units, "SLIDE_GRID", 256)
    viewer = make_napari_viewer()
    _open(viewer, pyramid_tiff)
    review = dock(viewer, REVIEW)
    seg = dock(viewer, SEGMENT)
    seg.add_model_version(tiny_model)
    _segment(qtbot, seg, "whole image (coarsest level that fits)")
    s = review.session
    assert [u.key for u in s.units] == ["r0_0_256_256_l0", "r0_256_256_384_l0", "r256_0_512_256_l0",
                                        "r256_256_512_384_l0"]
    assert s.project.root == pyramid_tiff.parent / "slide.wsss"
    from napari_wsss.gui.review_widget import _camera

    _camera(viewer).center = (10, 10)  # top-left region
    assert review.current_index() == 0
    review.next_btn.click()
    assert review.current_index() == 1 and "region 2 / 4" in review.position_label.text()
    layer = review.labels_layer
    layer.paint((100, 300), 3)
    review.accept_btn.click()
    s.flush()
    p = Project.open(pyramid_tiff)
    assert p.item("r0_256_256_384_l0").status == "corrected"  # painted, then accepted: still counted corrected
    assert p.load_mask("r0_256_256_384_l0")[100, 300 - 256] == 2
    assert p.load_mask("r0_256_256_384_l0").shape == (256, 128)


def test_whole_slide_full_resolution_corrected_at_level_0(qtbot, make_napari_viewer, pyramid_tiff: Path,  # noqa: ANN001
                                                          tiny_model: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """After 'whole slide, full resolution', Review steps through tissue regions at level 0; edits reach the
    zarr pyramid (all levels), survive reopening and export at the slide's size (before: '0 regions',
    painting raised TypeError, the export base was half the slide)."""
    import tifffile
    import zarr

    from napari_wsss.events import run_to_end
    from napari_wsss.export.training_set import export_project
    from napari_wsss.gui import _slide_regions

    monkeypatch.setattr(_project_units, "SLIDE_GRID", 256)
    monkeypatch.setattr(_slide_regions, "SLIDE_GRID", 256)
    viewer = make_napari_viewer()
    _open(viewer, pyramid_tiff)
    review = dock(viewer, REVIEW)
    seg = dock(viewer, SEGMENT)
    seg.add_model_version(tiny_model)
    _segment(qtbot, seg, "whole slide, full resolution (tiled, saved as zarr)")
    editor = _slide_regions.editor_for(review.session)
    assert editor is not None and len(editor.regions) >= 2
    layer = review.labels_layer
    assert layer is not None and not layer.multiscale and "region 1 / " in review.position_label.text()
    y0, x0, y1, x1 = editor.regions[0]
    assert layer.data.shape == (y1 - y0, x1 - x0)  # level-0 pixels, one per slide pixel
    before = int(layer.data[10, 10])
    label = 2 if before != 2 else 3
    layer.paint((10, 10), label)  # data coordinates of the region layer
    key0 = review.session.units[0].key
    review.next_btn.click()  # saves region 1, shows region 2
    assert "region 2 / " in review.position_label.text()
    assert review.save_label.text().startswith("saved 1 region(s) in "), review.save_label.text()  # not "tile(s)"
    key1 = review.session.units[0].key
    review.accept_btn.click()
    review.session.flush()
    n = len(editor.regions)  # counted over every tissue region, not only the two visited ("2 / 2 reviewed")
    assert review.counts_label.text() == f"2 / {n} reviewed (1 corrected, 1 accepted)", review.counts_label.text()

    p = Project.open(pyramid_tiff)
    assert p.item(key0).status == "corrected" and p.item(key0).region[4] == 0
    assert p.load_mask(key0)[10, 10] == label - 1
    assert p.item(key1).status == "accepted" and p.load_mask(key1) is not None
    root = zarr.open_group(str(editor.zarr_path), mode="r")
    assert root["labels/0"][y0 + 10, x0 + 10] == label
    assert root["labels/1"][(y0 + 10) // 2, (x0 + 10) // 2] == label  # lower levels follow

    out = run_to_end(export_project(p.root, tmp_path / "set", formats=["pyramidal-tiff", "geojson"]))
    base = tifffile.imread(out / "slides" / "slide.labels.tif")
    assert base.shape == tuple(viewer.layers["slide"].data[0].shape[:2])  # overlays the slide
    assert base[y0 + 10, x0 + 10] == label

    viewer.close()
    viewer2 = make_napari_viewer()
    _open(viewer2, pyramid_tiff)
    review2 = dock(viewer2, REVIEW)
    restored = review2.labels_layer
    assert restored is not None
    yx = np.round(restored.world_to_data(viewer2.layers["slide"].data_to_world((y0 + 10, x0 + 10)))).astype(int)
    assert restored.data[tuple(yx[-2:])] == label
    # the whole-slide result comes back too, as the multiscale layer with the correction written into it, and
    # Review steps through its regions again (before: only the corrected regions came back)
    full = [ly for ly in viewer2.layers if ly.multiscale and "whole slide" in ly.name]
    assert len(full) == 1 and full[0].data[0][y0 + 10, x0 + 10] == label
    editor2 = _slide_regions.editor_for(review2.session)
    assert editor2 is not None and editor2.regions == editor.regions
    assert "region 1 / " in review2.position_label.text()


def test_review_docked_first_then_a_model_of_other_classes(qtbot, make_napari_viewer, tiles: Path,  # noqa: ANN001
                                                         tmp_path: Path) -> None:
    """A new user docks Review before segmenting (its project starts with the default LUAD classes), then
    segments with a model of another class set (the colon-gland model): the empty project takes the model's
    classes and the palette follows. Before: 'The model predicts other classes than the project'."""
    import torch

    from napari_wsss.classes import load_schema
    from napari_wsss.models.card import ModelCard, save_model
    from napari_wsss.models.sshr import SSHRNet

    glas = load_schema("glas")
    torch.manual_seed(0)
    model = save_model(tmp_path / "glas-model", SSHRNet("small_cnn", glas.n_foreground, kernel_size=3).state_dict(),
                       ModelCard(method="sshr", backbone="small_cnn", schema=glas.to_dict(), input_size=64,
                                 config={"kernel_size": 3, "hfrm": True, "threshold": 0.0, "glass_min_size": 0}))
    viewer = make_napari_viewer()
    seg, review = _widgets(viewer, tiles, model)
    assert review.session.project.schema.name == "LUAD-HistoSeg"
    _segment(qtbot, seg)
    project = Project.load(review.session.project.root)
    assert project.schema.names == glas.names and review.session.schema.names == glas.names
    assert [b.text() for b in review.palette_buttons] == ["1: gland", "2: non-gland", "3: glass"]
    assert all(project.item(u.key).model for u in review.session.units)
    # machine output only: another model may still take the project over (tests/gui/test_project_classes.py);
    # once the user corrects a tile the classes are fixed, and a LUAD model is refused with a clear message
    assert project.schema_refusal(LUAD_HISTOSEG) is None
    key = review.session.units[0].key
    project.save_correction(key, project.load_mask(key), np.ones_like(project.load_mask(key), bool))
    with pytest.raises(ValueError, match="holds your work"):
        project.adopt_schema(LUAD_HISTOSEG)


def test_a_second_version_retires_the_first_result_layer(qtbot, make_napari_viewer, tiles: Path,  # noqa: ANN001
                                                         tiny_model: Path, tmp_path: Path) -> None:
    """Walk-through on real GlaS tiles: after "Use this version" the first model's layer stayed visible and
    paintable under the new one (colours blended); a stroke painted on it was never saved. It is now hidden and
    read-only; segmenting with its version again brings it back, tracked."""
    import json

    other = Path(shutil.copytree(tiny_model, tmp_path / "tiny-sshr-b"))
    card = json.loads((other / "card.json").read_text())
    card["name"] = other.name
    (other / "card.json").write_text(json.dumps(card))
    viewer = make_napari_viewer()
    seg, review = _widgets(viewer, tiles, tiny_model)
    _segment(qtbot, seg)
    first = review.labels_layer
    seg.add_model_version(other)
    _segment(qtbot, seg)
    second = review.labels_layer
    assert second is not first and second.name.endswith("[tiny-sshr-b]")
    assert not first.visible and not first.editable and first.mode == "pan_zoom"
    assert second.visible and second.editable
    first.mode = "paint"  # napari refuses painting a layer that is not editable
    assert first.mode == "pan_zoom"
    seg.version_combo.setCurrentIndex(seg.version_combo.findText("tiny-sshr"))
    _segment(qtbot, seg)
    assert review.labels_layer is first and first.visible and first.editable
    assert not second.visible and not second.editable
    viewer.dims.set_current_step(0, 1)
    first.paint((1, 5, 5), NEC + 1, refresh=True)
    review.session.flush()
    key = review.session.units[1].key
    assert Project.load(review.session.project.root).item(key).status == "corrected"


def test_segmenting_a_slide_again_keeps_the_corrected_regions_in_the_new_result(qtbot, make_napari_viewer,  # noqa: ANN001
                                                                               pyramid_tiff: Path, tiny_model: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A second whole-slide run ("Use this version", or Segment again) showed the new model's labels where the user
    had corrected, in the overview layer, its zarr and every reopening, as if the corrections were gone."""
    import zarr

    from napari_wsss.gui import _slide_regions

    monkeypatch.setattr(_project_units, "SLIDE_GRID", 256)
    monkeypatch.setattr(_slide_regions, "SLIDE_GRID", 256)
    viewer = make_napari_viewer()
    _open(viewer, pyramid_tiff)
    review = dock(viewer, REVIEW)
    seg = dock(viewer, SEGMENT)
    seg.add_model_version(tiny_model)
    _segment(qtbot, seg, "whole slide, full resolution (tiled, saved as zarr)")
    y0, x0, _, _ = _slide_regions.editor_for(review.session).regions[0]
    layer = review.labels_layer
    label = 2 if int(layer.data[10, 10]) != 2 else 3  # unlike the model's label there (it predicts it again)
    layer.paint((10, 10), label)
    review.next_btn.click()  # saves region 1 (corrected)
    _segment(qtbot, seg, "whole slide, full resolution (tiled, saved as zarr)")
    editor = _slide_regions.editor_for(review.session)
    second = editor.zarr_path
    assert second.name.endswith("-2.zarr")
    assert editor.carry_job is not None  # carried in a worker (about 40 ms a region: seconds on the Qt thread)
    qtbot.waitUntil(lambda: not editor.carry_job.running, timeout=30_000)
    assert editor.carry_job.outcome == "result"
    root = zarr.open_group(str(second), mode="r")
    assert root["labels/0"][y0 + 10, x0 + 10] == label
    assert root["labels/1"][(y0 + 10) // 2, (x0 + 10) // 2] == label
