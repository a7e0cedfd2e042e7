"""Export widget: export a reviewed tile project, refuse a non-empty folder, import GeoJSON and sets; the writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from qtpy.QtCore import Qt

from napari_wsss.classes import LUAD_HISTOSEG as S
from napari_wsss.data.tiles import list_mask_pairs, list_training_tiles, read_mask
from napari_wsss.export.manifest import check_manifest
from napari_wsss.export.vectors import class_map_to_features, write_geojson
from napari_wsss.gui._writer import write_labels
from napari_wsss.gui.export_widget import ExportWidget
from napari_wsss.store import Project
from ._plugin import EXPORT, dock, open_path
from tests.unit.export.conftest import blob_mask


@pytest.fixture
def tiles(tmp_path: Path) -> Path:
    """Three 40x48 tiles and their project (<folder>.wsss): two reviewed, one not."""
    rng = np.random.default_rng(3)
    folder = tmp_path / "case"
    folder.mkdir()
    project = Project.open(folder, S)
    for i, status in enumerate(["accepted", "corrected", "unreviewed"]):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"t{i}.png")
        pred = blob_mask(rng, (40, 48))
        project.register([{"key": f"t{i}", "image": f"t{i}.png"}])
        project.save_prediction(f"t{i}", pred, "v1")
        if status == "corrected":
            corr = pred.copy()
            corr[:6, :6] = 2
            project.save_correction(f"t{i}", corr, corr != pred)
        elif status == "accepted":
            project.set_status(f"t{i}", "accepted")
    return folder


def _open(viewer, path: Path) -> None:  # noqa: ANN001
    open_path(viewer, path)


def _wait(qtbot, w: ExportWidget) -> None:  # noqa: ANN001
    qtbot.waitUntil(lambda: w.job is not None and not w.job.running, timeout=30_000)


def test_export_reviewed_tiles(qtbot, make_napari_viewer, tiles: Path, tmp_path: Path) -> None:  # noqa: ANN001
    viewer = make_napari_viewer()
    _open(viewer, tiles)
    w = dock(viewer, EXPORT)
    assert Path(w.project_edit.text()) == tiles.parent / "case.wsss"
    out = tmp_path / "set"
    w.out_edit.setText(str(out))
    w.format_boxes["tiff"].setChecked(True)
    assert not w.format_boxes["png"].isChecked()  # one tile format at a time
    w.format_boxes["png"].setChecked(True)
    qtbot.mouseClick(w.export_btn, Qt.LeftButton)
    _wait(qtbot, w)
    assert w.last_error is None, w.last_error
    assert w.last_result == out and "exported" in w.status.text()
    m = check_manifest(out)
    assert {t["status"] for t in m["tiles"]} == {"accepted", "corrected"}
    assert len(list_mask_pairs(out)) == 2 and len(list_training_tiles(out / "training", S)) == 2

    # a second export into the same folder is refused, and the set is untouched
    before = (out / "manifest.json").read_bytes()
    w.filter_combo.setCurrentText("all")
    qtbot.mouseClick(w.export_btn, Qt.LeftButton)
    _wait(qtbot, w)
    assert isinstance(w.last_error, FileExistsError) and "tick 'replace a non-empty folder'" in w.status.text()
    assert "overwrite=True" not in w.status.text()  # the API's words, not the widget's
    assert (out / "manifest.json").read_bytes() == before
    w.overwrite_box.setChecked(True)
    qtbot.mouseClick(w.export_btn, Qt.LeftButton)
    _wait(qtbot, w)
    assert w.last_error is None and len(check_manifest(out)["tiles"]) == 3

    # the set goes back into a fresh project
    w.project_edit.setText(str(tmp_path / "copy.wsss"))
    w.import_set(out)
    _wait(qtbot, w)
    assert w.last_error is None, w.last_error
    copy = Project.load(tmp_path / "copy.wsss")
    for key in ("t0", "t1", "t2"):
        assert np.array_equal(copy.load_mask(key), Project.load(tiles.parent / "case.wsss").load_mask(key))


def test_export_errors_are_shown(qtbot, make_napari_viewer, tmp_path: Path) -> None:  # noqa: ANN001
    viewer = make_napari_viewer()
    w = dock(viewer, EXPORT)
    assert w.export() is None and "No project" in w.status.text()
    w.project_edit.setText(str(tmp_path / "nowhere"))
    w.out_edit.setText(str(tmp_path / "set"))
    w.export()
    _wait(qtbot, w)
    assert isinstance(w.last_error, FileNotFoundError) and "No annotation project" in w.status.text()
    assert not (tmp_path / "set").exists()


def test_import_geojson_over_an_image(qtbot, make_napari_viewer, tmp_path: Path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "he.png")
    cm = blob_mask(rng, (48, 64))
    write_geojson(tmp_path / "qupath.geojson", class_map_to_features(cm, S))
    viewer = make_napari_viewer()
    _open(viewer, tmp_path / "he.png")
    w = dock(viewer, EXPORT)
    layer = w.import_geojson(tmp_path / "qupath.geojson")
    assert layer is not None and layer in viewer.layers and layer.data.shape == (48, 64)
    assert (S.from_labels(layer.data) != cm).mean() < 0.02
    # a slide-sized box with an offset: placed at its level-0 origin
    write_geojson(tmp_path / "far.geojson", class_map_to_features(cm, S, origin=(1000, 2000)))
    viewer.layers.remove("he")
    layer = w.import_geojson(tmp_path / "far.geojson")
    ty, tx = (int(v) for v in layer.translate)
    assert (ty, tx) == (1000 + 48 // 8, 2000 + 64 // 8)  # the polygons' box starts at the first class pixel
    lh, lw = layer.data.shape
    assert (S.from_labels(layer.data) != cm[ty - 1000: ty - 1000 + lh, tx - 2000: tx - 2000 + lw]).mean() < 0.02
    (tmp_path / "bad.geojson").write_text("[]")
    assert w.import_geojson(tmp_path / "bad.geojson") is None and "no polygon" in w.status.text()


def test_writer_palette_png_stack_and_tiff(tmp_path: Path, rng) -> None:  # noqa: ANN001
    cm = rng.integers(0, S.n_classes, (3, 20, 24)).astype(np.uint8)
    labels = np.stack([S.to_labels(c) for c in cm])
    meta = {"metadata": {"napari_wsss": {"schema": S.to_dict()}}}
    (p,) = write_labels(str(tmp_path / "one.png"), labels[0], meta)
    assert np.array_equal(read_mask(p, S), cm[0])
    paths = write_labels(str(tmp_path / "stack.png"), labels, meta)
    assert len(paths) == 3 and all(np.array_equal(read_mask(q, S), c) for q, c in zip(paths, cm))
    (t,) = write_labels(str(tmp_path / "stack.tif"), labels, meta)
    import tifffile

    assert np.array_equal(tifffile.imread(t), cm)
    with pytest.raises(ValueError, match="shape"):
        write_labels(str(tmp_path / "x.png"), np.zeros((2, 2, 2, 2), np.uint8), meta)


def test_writer_through_napari(make_napari_viewer, tmp_path: Path) -> None:  # noqa: ANN001
    viewer = make_napari_viewer()
    cm = np.full((16, 16), S.background_index, np.uint8)
    cm[4:10, 2:8] = 1
    viewer.add_labels(S.to_labels(cm), name="seg")
    written = viewer.layers.save(str(tmp_path / "seg.png"), selected=False, plugin="napari-wsss")
    assert written and np.array_equal(read_mask(tmp_path / "seg.png", S), cm)
