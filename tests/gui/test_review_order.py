"""The Review widget's "next most useful" control, docked from the manifest: the model orders the unreviewed
tiles in a worker and the widget visits the most useful first, skipping reviewed tiles."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt

from ._plugin import REVIEW, SEGMENT, dock, open_path


def test_order_by_model_visits_the_tile_the_model_gets_most_wrong_first(qtbot, make_napari_viewer,  # noqa: ANN001
                                                                         tmp_path: Path, tiny_dataset: Path,
                                                                         tiny_model: Path) -> None:
    from napari_wsss.data.tiles import read_rgb
    from napari_wsss.inference.segmenter import load_segmenter
    from napari_wsss.tagging.next_tile import presence

    tiles = Path(shutil.copytree(tiny_dataset / "training", tmp_path / "case"))
    viewer = make_napari_viewer()
    open_path(viewer, tiles)
    review = dock(viewer, REVIEW)
    seg = dock(viewer, SEGMENT)
    seg.add_model_version(tiny_model)
    seg.image_combo.setCurrentText(tiles.name)
    seg.scope_combo.setCurrentText("all tiles in the stack")
    qtbot.mouseClick(seg.segment_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: seg.job is not None and not seg.job.running, timeout=60_000)
    assert seg.last_error is None, seg.last_error

    s = review.session
    units = s.units
    assert len(units) == 8
    # tile 5: tagged by the pathologist with exactly the classes the model says are absent (the model is most
    # wrong there); tile 2 is accepted already, so it must not be proposed
    model = load_segmenter(tiny_model, "cpu")
    target = units[5].key
    pred = model.predict(read_rgb(tiles / units[5].image)[None], batch_size=1)
    wrong = 1 - presence(pred.class_map[0], s.project.schema.n_foreground)
    s.project.set_tags(target, [c.name for c, v in zip(s.project.schema.foreground, wrong) if v])
    s.project.set_status(units[2].key, "accepted")
    viewer.dims.set_current_step(0, 0)

    box = review.order_box
    box.refresh()
    assert box.model_combo.findData(str(tiny_model)) >= 0  # the Segment widget's version is offered
    box.model_combo.setCurrentIndex(box.model_combo.findData(str(tiny_model)))
    box.order_btn.click()
    qtbot.waitUntil(lambda: box.job is not None and not box.job.running, timeout=60_000)
    assert box.last_error is None, box.last_error
    assert box.order[0] == target and units[2].key not in box.order and len(box.order) == 7
    assert review.current_index() == 5 and viewer.dims.current_step[0] == 5  # visited first, on screen
    assert "7 unreviewed tiles ordered" in box.status.text() or "most useful 1 / 7" in box.status.text()
    box.next_btn.click()
    assert review.current_index() == [u.key for u in units].index(box.order[1]) != 5
    np.testing.assert_equal(sorted(box.order), sorted(u.key for i, u in enumerate(units) if i != 2))


def test_model_choice_follows_the_classes_the_project_takes(qtbot, make_napari_viewer, tmp_path: Path,  # noqa: ANN001
                                                           tiny_dataset: Path) -> None:
    """Walk-through on real GlaS tiles: Review docked first offered the demo LUAD model to order by; after sshr-glas
    segmented the folder (the project took the gland classes) it still showed the demo model, of other classes.
    Every shipped model is listed while the project holds no work of the user's (LUAD-named tiles: the demo first)."""
    tiles = Path(shutil.copytree(tiny_dataset / "test" / "img", tmp_path / "case"))
    viewer = make_napari_viewer()
    open_path(viewer, tiles)
    review = dock(viewer, REVIEW)
    combo = review.order_box.model_combo
    shipped = ["sshr-default (shipped)", "sshr-glas (shipped)"]
    assert [combo.itemText(i) for i in range(combo.count())] == shipped
    assert combo.currentText() == "sshr-default (shipped)"
    seg = dock(viewer, SEGMENT)
    seg.version_combo.setCurrentIndex(seg.version_combo.findText("sshr-glas (shipped)"))
    seg.scope_combo.setCurrentText("all tiles in the stack")
    qtbot.mouseClick(seg.segment_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: seg.job is not None and not seg.job.running, timeout=60_000)
    assert seg.last_error is None, seg.last_error
    assert review.session.project.schema.name == "colon-gland"
    assert combo.currentText() == "sshr-glas (shipped)"
    assert sorted(combo.itemText(i) for i in range(combo.count())) == shipped  # machine output only: not fixed
    key = review.session.units[0].key  # a correction fixes the classes: the demo's can no longer be offered
    mask = review.session.project.load_mask(key)
    review.session.project.save_correction(key, mask, np.ones_like(mask, bool))
    review.order_box.refresh()
    assert [combo.itemText(i) for i in range(combo.count())] == ["sshr-glas (shipped)"]
