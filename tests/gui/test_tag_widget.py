"""Drive the Tag widget as a pathologist does: keys 1-9 toggle classes, Enter saves and moves on, reopen keeps it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from napari_wsss.classes import LUAD_HISTOSEG
from napari_wsss.gui.tag_widget import UNTAGGED_COLOUR, TagWidget, overlay_name
from napari_wsss.store import Project

from ._plugin import TAG, dock, open_path


@pytest.fixture
def tiles(tmp_path: Path, tiny_dataset: Path) -> Path:
    return Path(shutil.copytree(tiny_dataset / "training", tmp_path / "case"))


def _press(viewer, key: str) -> None:  # noqa: ANN001
    handler = viewer.window._qt_viewer._key_map_handler
    handler.press_key(key)
    handler.release_key(key)


def test_keys_tag_tiles_autosave_and_reopen(qtbot, make_napari_viewer, tiles: Path) -> None:  # noqa: ANN001
    viewer = make_napari_viewer()
    open_path(viewer, tiles)
    tag = dock(viewer, TAG)
    assert isinstance(tag, TagWidget) and tag.session is not None
    assert len(tag.tiles) == 8 and tag.progress_label.text() == "0 / 8 tagged"
    overlay = viewer.layers[overlay_name(tiles.name)]
    assert viewer.layers.selection.active is overlay
    first, second = tag.current.key, tag.tiles[tag.order[1]].key
    assert viewer.dims.current_step[0] == 0

    _press(viewer, "1")  # TE
    _press(viewer, "3")  # LYM
    _press(viewer, "3")  # LYM off again
    _press(viewer, "4")  # TAS
    assert tag.pending == {"TE", "TAS"} and [b.isChecked() for b in tag.class_buttons] == [True, False, False, True]
    _press(viewer, "Enter")
    assert Project.load(tiles.parent / "case.wsss").tags() == {first: ["TE", "TAS"]}  # saved at once
    assert tag.current.key == second and viewer.dims.current_step[0] == 1 and tag.pending == set()
    assert tag.progress_label.text() == "1 / 8 tagged" and "TE: 1" in tag.counts_label.text()
    te = tuple(v / 255 for v in LUAD_HISTOSEG.classes[0].colour)
    assert np.allclose(overlay.edge_color[0][:3], te) and np.allclose(overlay.edge_color[1], UNTAGGED_COLOUR)
    assert overlay.features["tags"][0] == "TE TAS"

    _press(viewer, "Enter")  # nothing toggled: tagged as holding none of the classes
    assert Project.load(tiles.parent / "case.wsss").tags()[second] == []
    _press(viewer, "Backspace")  # back to the second tile: its saved (empty) tag shows
    assert tag.current.key == second and tag.pending == set()

    viewer.close()
    viewer2 = make_napari_viewer()
    open_path(viewer2, tiles)
    tag2 = dock(viewer2, TAG)
    assert tag2.progress_label.text() == "2 / 8 tagged"
    assert tag2.current.key == tag2.tiles[2].key  # reopening starts at the first untagged tile
    tag2.go(-2)
    assert tag2.pending == {"TE", "TAS"}
    assert tag2.overlay.features["tags"][0] == "TE TAS"


def test_slide_grid_tags_regions(qtbot, make_napari_viewer, tmp_path: Path) -> None:  # noqa: ANN001
    from napari_wsss.data.synthetic_slide import write_slide

    path = write_slide(tmp_path / "s.tif", shape=(1024, 1024), seed=4, tile=256, levels=3)
    viewer = make_napari_viewer()
    open_path(viewer, path)
    tag = dock(viewer, TAG)
    tag.tile_spin.setValue(128)
    tag.level_spin.setValue(1)
    tag.grid_btn.click()
    assert tag.tiles and all(t.region[4] == 1 and t.region[2] - t.region[0] == 256 for t in tag.tiles)
    y0, x0, y1, x1, _ = tag.current.region
    from napari_wsss.gui._layers import camera

    cy, cx = camera(viewer).center[-2:]
    assert y0 <= cy <= y1 and x0 <= cx <= x1  # the tile is on screen
    _press(viewer, "2")
    _press(viewer, "Enter")
    saved = Project.load(tmp_path / "s.wsss")
    key = tag.tiles[0].key
    assert saved.tags() == {key: ["NEC"]} and saved.item(key).region == list(tag.tiles[0].region)
    assert f"1 / {len(tag.tiles)} tagged" == tag.progress_label.text()
