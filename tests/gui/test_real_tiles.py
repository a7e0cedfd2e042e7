"""Real H&E folders as they come: GlaS colon images of mixed, non-square sizes, through the plugin's path.

Reads ../shared/data/glas (real images; never copied into the repository, only into the test's temporary
folder) and skips, saying why, where it is absent.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from qtpy.QtCore import Qt

from napari_wsss.export.manifest import check_manifest
from napari_wsss.store import Project

from ._plugin import EXPORT, FINETUNE, REVIEW, SEGMENT, dock, open_path
from .._glas import require_glas

GLAS = Path(__file__).resolve().parents[3] / "shared" / "data" / "glas" / "train" / "images"
# three sizes: 775x522, 574x433, 589x453 (width x height)
PICK = ("train_1.png", "train_12.png", "train_36.png")
LARGE = "train_99_x3.png"  # 2325x1566, sorts last


@pytest.fixture
def glas_folder(tmp_path: Path) -> Path:
    if not all((GLAS / n).is_file() for n in PICK):
        require_glas(*(GLAS / n for n in PICK))
    folder = tmp_path / "glas"
    folder.mkdir()
    for n in PICK:
        shutil.copy(GLAS / n, folder / n)
    # and a large one (> 2000 px): a real image at 3x, the size a 40x scan's tile of the same field has
    with Image.open(GLAS / PICK[0]) as im:
        im.resize((im.width * 3, im.height * 3), Image.BICUBIC).save(folder / LARGE)
    return folder


def _wait(qtbot, w, timeout: int = 240_000) -> None:  # noqa: ANN001
    qtbot.waitUntil(lambda: w.job is not None and not w.job.running, timeout=timeout)
    assert w.last_error is None, w.last_error


def test_mixed_size_real_folder_segment_correct_finetune_export(glas_folder: Path, qtbot, make_napari_viewer,  # noqa: ANN001
                                                                tiny_model: Path, tmp_path: Path) -> None:
    # glas_folder first: where the data is absent it skips before napari's viewer fixture is set up (whose
    # teardown fails on a test that never ran)
    sizes = {Path(n).stem: Image.open(glas_folder / n).size[::-1] for n in (*PICK, LARGE)}  # (H, W)
    assert len(set(sizes.values())) == 4 and max(sizes[Path(LARGE).stem]) > 2000
    viewer = make_napari_viewer()
    open_path(viewer, glas_folder)
    review, seg = dock(viewer, REVIEW), dock(viewer, SEGMENT)
    seg.add_model_version(tiny_model)
    seg.scope_combo.setCurrentText("all tiles in the stack")
    qtbot.mouseClick(seg.segment_btn, Qt.LeftButton)
    _wait(qtbot, seg)
    project = review.session.project
    for key, hw in sizes.items():  # each prediction has its own tile's size, not the padded stack's
        assert project.load_prediction(key).shape == hw
        assert project.item(key).model == "tiny-sshr"

    layer = review.labels_layer
    units = review.session.units
    viewer.dims.set_current_step(0, 1)
    layer.paint((1, 100, 100), 2)  # paint inside the small tile
    viewer.dims.set_current_step(0, 2)
    qtbot.mouseClick(review.accept_btn, Qt.LeftButton)
    viewer.dims.set_current_step(0, 3)  # the large tile: paint far from the origin
    assert units[3].key == Path(LARGE).stem
    layer.paint((3, 1500, 2200), 1)
    review.session.flush()
    assert project.item(units[1].key).status == "corrected"
    assert project.item(units[2].key).status == "accepted"
    assert project.load_mask(units[2].key).shape == sizes[units[2].key]
    large = project.load_mask(units[3].key)
    assert project.item(units[3].key).status == "corrected" and large.shape == sizes[units[3].key]
    assert large[1500, 2200] == 0  # label 1 = class 0

    ft = dock(viewer, FINETUNE)
    ft.add_base_version(tiny_model)
    ft.epochs_spin.setValue(1)
    qtbot.mouseClick(ft.start_btn, Qt.LeftButton)
    _wait(qtbot, ft)
    assert ft.last_result is not None and (ft.last_result / "weights.pt").is_file()

    ex = dock(viewer, EXPORT)
    out = tmp_path / "set"
    ex.out_edit.setText(str(out))
    ex.format_boxes["png"].setChecked(True)
    qtbot.mouseClick(ex.export_btn, Qt.LeftButton)
    _wait(qtbot, ex)
    m = check_manifest(out)
    assert {t["status"] for t in m["tiles"]} == {"accepted", "corrected"}
    assert {t["item"] for t in m["tiles"]} >= {units[1].key, units[2].key, units[3].key}
    for t in m["tiles"]:  # exported masks keep each real tile's own size
        mask = np.asarray(Image.open(out / t["files"]["mask"]))
        img = np.asarray(Image.open(out / t["files"]["image"]))
        assert mask.shape == img.shape[:2]
    reopened = Project.load(project.root)
    assert reopened.item(units[1].key).status == "corrected"
    # and back: the exported set imports into a fresh project with the same masks, large tile included
    from napari_wsss.events import run_to_end
    from napari_wsss.export.imports import import_set

    copy = run_to_end(import_set(out, tmp_path / "copy.wsss", source=glas_folder))
    for u in units[1:]:
        assert np.array_equal(copy.load_mask(u.key), project.load_mask(u.key))
