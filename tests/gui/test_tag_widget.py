"""Drive the Tag widget as a pathologist does: keys 1-9 toggle classes, Enter saves and moves on, reopen keeps it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from napari_wsss.classes import LUAD_HISTOSEG
from napari_wsss.gui._tag_overlay import UNTAGGED_COLOUR, overlay_name
from napari_wsss.gui.tag_widget import TagWidget
from napari_wsss.store import Project

from ._plugin import TAG, dock, open_path


@pytest.fixture
def tiles(tmp_path: Path, tiny_dataset: Path) -> Path:
    return Path(shutil.copytree(tiny_dataset / "training", tmp_path / "case"))


def _press(viewer, key: str) -> None:  # noqa: ANN001
    handler = viewer.window._qt_viewer._key_map_handler
    handler.press_key(key)
    handler.release_key(key)



def train_tiny(qtbot, train, name: str, timeout: int) -> None:  # noqa: ANN001
    """Train a one-epoch small_cnn on the CPU from the Train widget's current source, as a user sets it."""
    train.backbone_combo.setCurrentText("small_cnn")
    train.epochs_spin.setValue(1)
    train.size_spin.setValue(64)
    train.batch_spin.setValue(4)
    train.device_combo.setCurrentText("cpu")
    train.out_edit.setText(name)
    train.train_btn.click()
    qtbot.waitUntil(lambda: train.job is not None and not train.job.running, timeout=timeout)

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

    _press(viewer, "Enter")  # nothing toggled: a slip, not saved (test_confirm_with_no_class_ticked_saves_nothing)
    assert tag.current.key == second and second not in Project.load(tiles.parent / "case.wsss").tags()
    _press(viewer, "2")  # NEC
    _press(viewer, "Enter")
    assert Project.load(tiles.parent / "case.wsss").tags()[second] == ["NEC"]
    _press(viewer, "Backspace")  # back to the second tile: its saved tag shows
    assert tag.current.key == second and tag.pending == {"NEC"}

    viewer.close()
    viewer2 = make_napari_viewer()
    open_path(viewer2, tiles)
    tag2 = dock(viewer2, TAG)
    assert tag2.progress_label.text() == "2 / 8 tagged"
    assert tag2.current.key == tag2.tiles[2].key  # reopening starts at the first untagged tile
    tag2.go(-2)
    assert tag2.pending == {"TE", "TAS"}
    assert tag2.overlay.features["tags"][0] == "TE TAS"


def test_confirm_with_no_class_ticked_saves_nothing(qtbot, make_napari_viewer, tiles: Path) -> None:  # noqa: ANN001
    """A tester's Enter with no class ticked saved the tile as tagged with no classes ("1 / 8 tagged", counts
    unchanged) without a word: nothing is saved, the tile stays, and a line says what to do."""
    viewer = make_napari_viewer()
    open_path(viewer, tiles)
    tag = dock(viewer, TAG)
    project = tiles.parent / "case.wsss"
    first, second = tag.current.key, tag.tiles[tag.order[1]].key

    _press(viewer, "Enter")
    assert Project.load(project).tags() == {} and tag.progress_label.text() == "0 / 8 tagged"
    assert tag.current.key == first
    said = tag.status.text()
    assert said.startswith("No class ticked for this tile: press 1-4 to tick") and "Skip ▶ moves on without tagging" \
        in said
    tag.confirm_btn.click()  # the button does the same
    assert Project.load(project).tags() == {} and tag.current.key == first
    _press(viewer, "1")  # ticking a class answers the line
    assert tag.status.text() == ""
    _press(viewer, "1")
    tag.skip_btn.click()  # Skip moves on without tagging
    assert tag.current.key == second and Project.load(project).tags() == {}

    # a tagged tile whose classes are all unticked keeps its tags: Enter says so, Skip keeps them
    tag.go(-1)
    _press(viewer, "1")
    _press(viewer, "4")
    _press(viewer, "Enter")
    assert Project.load(project).tags() == {first: ["TE", "TAS"]} and tag.current.key == second
    _press(viewer, "Backspace")
    _press(viewer, "1")
    _press(viewer, "4")
    assert tag.pending == set()
    _press(viewer, "Enter")
    assert Project.load(project).tags() == {first: ["TE", "TAS"]} and tag.current.key == first
    assert "Skip ▶ moves on and keeps its saved tags (TE, TAS)" in tag.status.text()
    assert tag.progress_label.text() == "1 / 8 tagged" and "TE: 1" in tag.counts_label.text()
    tag.skip_btn.click()
    assert tag.current.key == second and tag.status.text() == ""
    assert Project.load(project).tags() == {first: ["TE", "TAS"]}


def test_slide_grid_tags_regions(qtbot, make_napari_viewer, tmp_path: Path) -> None:  # noqa: ANN001
    from napari_wsss.data.synthetic_slide import write_slide

    path = write_slide(tmp_path / "s.tif", shape=(1024, 1024), seed=4, tile=256, levels=3)
    viewer = make_napari_viewer()
    open_path(viewer, path)
    tag = dock(viewer, TAG)
    # a slide without class names starts on the classes of the model Segment would pick (the real-tissue one), as
    # Review does; this generated slide is LUAD-like, so the user picks luad before the first tag
    assert tag.classes_combo.currentText() == "glas"
    tag.classes_combo.setCurrentText("luad")
    tag.classes_combo.activated.emit(tag.classes_combo.currentIndex())
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
    assert tag.status.text() == ""  # 128 px divides level 1 (512 px): nothing left at the edges
    tag.tile_spin.setValue(96)  # 512 = 5 x 96 + 32: the 32 px strips are left out, and the widget says so
    tag.grid_btn.click()
    assert "32 px at the right and 32 px at the bottom" in tag.status.text()
    assert all(t.region[3] <= 2 * 480 and t.region[2] <= 2 * 480 for t in tag.tiles)


def test_tag_train_from_tags_segment_offers_it_and_tag_orders_by_it(qtbot, make_napari_viewer,  # noqa: ANN001
                                                                    tiles: Path) -> None:
    """The whole loop in the viewer: tag, train from the tags (Train widget), Segment offers it, Tag ranks."""
    from napari_wsss.data.tiles import parse_labels_from_name
    from napari_wsss.gui.train_widget import SOURCE_TAGS

    from ._plugin import SEGMENT, TRAIN

    viewer = make_napari_viewer()
    open_path(viewer, tiles)
    tag = dock(viewer, TAG)
    for _ in range(6):  # tag six tiles from the truth their names carry, by keys
        lab = parse_labels_from_name(tag.current.image, 4)
        for n in np.flatnonzero(lab):
            _press(viewer, str(n + 1))
        _press(viewer, "Enter")
    assert tag.progress_label.text() == "6 / 8 tagged"
    seg = dock(viewer, SEGMENT)
    train = dock(viewer, TRAIN)
    train.source_combo.setCurrentText(SOURCE_TAGS)
    assert not train.data_edit.isEnabled() and train.project_combo.count() == 1
    assert "(6 tagged, classes " in train.project_combo.currentText()
    train_tiny(qtbot, train, "from-tags", 120_000)
    assert train.last_error is None, train.last_error
    version = tiles.parent / "case.wsss" / "models" / "from-tags"
    assert train.last_result == version and (version / "card.json").is_file()
    assert seg.version_combo.currentText().startswith("from-tags")  # offered (and chosen) in Segment at once

    tag.rank_by_model()
    qtbot.waitUntil(lambda: tag.job is not None and not tag.job.running, timeout=60_000)
    assert tag.last_error is None, tag.last_error
    assert tag.model_combo.currentText() == "from-tags"
    tagged = set(Project.load(tiles.parent / "case.wsss").tags())
    assert len(tag.order) == 8 and not {tag.tiles[i].key for i in tag.order[:2]} & tagged  # untagged first
    assert tag.current.key not in tagged and "ordered by the model" in tag.status.text()


def test_untagged_slide_to_trained_model_to_segmentation(qtbot, make_napari_viewer, tmp_path: Path) -> None:  # noqa: ANN001
    """Issue 18's whole path on a slide, without leaving napari: tag a tissue grid by keys (the truth the
    generated slide's class map gives), train from the tags in the Train widget, segment the slide with the new
    version in the Segment widget."""
    import tifffile

    from napari_wsss.data.synthetic_slide import write_slide
    from napari_wsss.gui.train_widget import SOURCE_TAGS

    from ._plugin import SEGMENT, TRAIN

    path = write_slide(tmp_path / "s.tif", shape=(1024, 1024), seed=4, tile=256, levels=3)
    truth = tifffile.imread(path.with_name("s_mask.tif"))
    viewer = make_napari_viewer()
    open_path(viewer, path)
    tag = dock(viewer, TAG)
    # the truth is LUAD's: a fresh project takes the classes of the model Segment would pick (GlaS' here), where
    # keys 1-2 tagged gland / non-gland, 3-4 nothing, and Enter saved a TAS-only tile with no class
    tag.classes_combo.setCurrentText("luad")
    tag.classes_combo.activated.emit(tag.classes_combo.currentIndex())
    assert [b.text() for b in tag.class_buttons] == ["1: TE", "2: NEC", "3: LYM", "4: TAS"]
    tag.tile_spin.setValue(64)
    tag.level_spin.setValue(1)
    tag.grid_btn.click()
    n = min(12, len(tag.tiles))
    assert n >= 8
    tagged = 0
    for _ in range(n):
        y0, x0, y1, x1, _lv = tag.current.region  # level-0 box of the tile
        present = [c for c in np.unique(truth[y0:y1, x0:x1]) if c < 4]
        if not present:  # none of the tissue classes: Enter would save nothing, the pathologist skips it
            tag.skip_btn.click()
            continue
        for c in present:
            _press(viewer, str(int(c) + 1))
        _press(viewer, "Enter")
        tagged += 1
    assert tagged >= 6 and tag.progress_label.text().startswith(f"{tagged} / ")
    seg = dock(viewer, SEGMENT)
    train = dock(viewer, TRAIN)
    train.source_combo.setCurrentText(SOURCE_TAGS)
    assert f"({tagged} tagged, classes " in train.project_combo.currentText()
    train_tiny(qtbot, train, "slide-tags", 180_000)
    assert train.last_error is None, train.last_error
    version = tmp_path / "s.wsss" / "models" / "slide-tags"
    assert (version / "card.json").is_file()
    assert seg.version_combo.currentText().startswith("slide-tags")
    seg.scope_combo.setCurrentText("whole image (coarsest level that fits)")
    seg.segment()
    qtbot.waitUntil(lambda: seg.job is not None and not seg.job.running, timeout=180_000)
    assert seg.last_error is None, seg.last_error
    layer = seg.last_result_layer
    assert layer is not None and "slide-tags" in str(layer.metadata.get("napari_wsss", {}).get("model", layer.name))
    labels = np.asarray(layer.data[-1] if layer.multiscale else layer.data)
    assert labels.size and labels.max() < 5  # the LUAD classes (+ glass) of the tags' schema


def test_classes_chosen_before_the_first_tag(qtbot, make_napari_viewer, tiles: Path) -> None:  # noqa: ANN001
    """Before: a new project always tagged with the LUAD default classes (a folder of real GlaS colon images got
    TE/NEC/LYM/TAS keys) and nothing in Tag could change them. Now 'classes' picks them until the first tag,
    and the keys follow (key 1 tags 'gland'; key 3 no longer tags a class the project lost)."""
    viewer = make_napari_viewer()
    open_path(viewer, tiles)
    tag = dock(viewer, TAG)
    assert tag.classes_combo.currentText() == "luad" and tag.classes_combo.isEnabled()
    tag.classes_combo.setCurrentText("glas")
    tag.classes_combo.activated.emit(tag.classes_combo.currentIndex())
    assert [b.text() for b in tag.class_buttons] == ["1: gland", "2: non-gland"]
    _press(viewer, "3")  # LYM under the old classes: nothing now
    _press(viewer, "1")
    assert tag.pending == {"gland"}
    _press(viewer, "Enter")
    project = Project.load(tiles.parent / "case.wsss")
    assert project.schema.name == "colon-gland" and project.schema_set_by == "user"
    assert list(project.tags().values()) == [["gland"]]
    assert not tag.classes_combo.isEnabled() and "1 tagged" in tag.classes_combo.toolTip()  # fixed by the tag

    with pytest.raises(ValueError, match="holds your work"):  # the session refuses too, not only the greyed combo
        tag.session.choose_classes(LUAD_HISTOSEG)
    viewer.close()
    viewer2 = make_napari_viewer()
    open_path(viewer2, tiles)
    tag2 = dock(viewer2, TAG)
    assert tag2.classes_combo.currentText() == "glas" and not tag2.classes_combo.isEnabled()


def test_single_images_say_what_to_open(qtbot, make_napari_viewer, tiles: Path) -> None:  # noqa: ANN001
    """Before: with only single images open (files dropped one by one) Tag was blank, not saying why."""
    viewer = make_napari_viewer()
    first = sorted(tiles.glob("*.png"))[0]
    open_path(viewer, first)
    tag = dock(viewer, TAG)
    assert tag.image_combo.count() == 0
    assert tag.status.text().startswith(f"{first.stem}: single images are not tagged; open their folder")
    open_path(viewer, tiles)  # the folder: a stack to tag, and the hint goes
    assert tag.image_combo.currentText() == tiles.name and len(tag.tiles) == 8
    assert "single images" not in tag.status.text()
