"""What Tag shows: the whole tile (a pathologist tags the classes present in all of it) and the tissue itself.

Walk-through on GlaS images (775 x 522, wider than tall): docking Tag narrowed the canvas and each tile showed only
its middle ~55%; the restored segmentation (50% opacity) covered the tissue being tagged. Reads real GlaS images
from ../shared/data/glas (copied into the test's temporary folder) and skips, saying why, where they are absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_wsss.gui._view import view_shows_all

from .._glas import glas_copy
from ._plugin import TAG, dock, open_path

NAMES = ("train_1.png", "train_2.png", "train_3.png")  # 775 x 522 each


@pytest.fixture
def glas_folder(tmp_path: Path) -> Path:
    return glas_copy(tmp_path / "colon", NAMES)


def _segmented(folder: Path) -> None:
    """The folder's project holds a gland prediction for every image (what reopening restores as a layer)."""
    from napari_wsss.classes import GLAS as GLAS_SCHEMA
    from napari_wsss.store import Project

    project = Project.open(folder, GLAS_SCHEMA)
    project.register([{"key": Path(n).stem, "image": n} for n in NAMES])
    for n in NAMES:
        project.save_prediction(Path(n).stem, np.zeros((522, 775), np.uint8), "sshr-glas")


def test_tag_shows_each_whole_tile_without_the_segmentation(glas_folder: Path, qtbot,  # noqa: ANN001
                                                            make_napari_viewer) -> None:
    _segmented(glas_folder)
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1048, 651)  # the walk-through's window
    qtbot.waitUntil(lambda: window.height() == 651, timeout=3000)
    open_path(viewer, glas_folder)
    tag = dock(viewer, TAG)
    seg = next(ly for ly in viewer.layers if ly.name.startswith("colon segmentation"))
    qtbot.waitUntil(tag.isVisible, timeout=3000)
    qtbot.wait(300)  # the dock has settled (Tag fits the view 150 ms after it shows)
    assert view_shows_all(viewer)  # was: the canvas, narrowed by the dock, showed the tile's middle only
    assert not seg.visible and "hidden while you tag" in tag.status.text()

    viewer.scene.camera.zoom *= 4  # the pathologist looks closer at one gland, then confirms
    assert not view_shows_all(viewer)
    tag.toggle("gland")  # the tile holds glands: Enter with nothing ticked saves nothing and stays
    tag.confirm()
    assert viewer.dims.current_step[0] == 1 and view_shows_all(viewer)  # the next tile comes whole

    viewer.window.remove_dock_widget(tag)  # closing Tag (its x) gives the segmentation back
    assert seg.visible


def test_tag_on_a_fresh_colon_folder_takes_the_gland_classes_and_hides_the_confidence(
        glas_folder: Path, qtbot, make_napari_viewer) -> None:  # noqa: ANN001
    """Walk-through: docked on colon images, Tag offered LUAD's lung classes (TE, NEC, ...) where Review offered
    glands, and the confidence overlay stayed over the tissue being tagged."""
    viewer = make_napari_viewer(show=True)  # Tag hides layers only while it is on screen
    open_path(viewer, glas_folder)
    conf = viewer.add_image(np.zeros((3, 2, 522, 775), np.float32), name="colon confidence [sshr-glas]",
                            metadata={"napari_wsss": {"kind": "confidence", "model": "sshr-glas", "image": "colon"}})
    tag = dock(viewer, TAG)
    qtbot.waitUntil(tag.isVisible, timeout=3000)
    assert tag.classes_combo.currentText() == "glas" and tag.classes_combo.isEnabled()  # still the user's to change
    assert [b.text() for b in tag.class_buttons] == ["1: gland", "2: non-gland"]
    assert not conf.visible
    tag.classes_combo.setCurrentText("luad")  # the counts line follows a change of classes (it kept the old ones)
    tag.classes_combo.activated.emit(tag.classes_combo.currentIndex())
    assert tag.counts_label.text().startswith("TE: 0")
