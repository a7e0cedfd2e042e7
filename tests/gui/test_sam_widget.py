"""SAM refine widget: a point prompt replaces the selected class's region in the Labels layer (undoable)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_wsss.classes import LUAD_HISTOSEG
from napari_wsss.gui._layers import labels_layer_kwargs
from napari_wsss.gui.sam_widget import SamRefineWidget
from tests._sam import write_tiny_sam


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_sam(tmp_path_factory.mktemp("sam") / "tiny_sam.pth")


@pytest.fixture
def widget(make_napari_viewer, tiny_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN001, ANN201
    monkeypatch.setenv("NAPARI_WSSS_SAM_CACHE", str(tmp_path / "cache"))
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    img = np.full((64, 64, 3), 235, np.uint8)
    img[16:48, 16:48] = (120, 40, 140)
    img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
    viewer.add_image(img, name="tile", rgb=True)
    labels = np.zeros((64, 64), np.uint8)
    labels[:8, :8] = 1  # an old TE region somewhere else: replaced by SAM's mask
    labels[56:, 56:] = 2  # another class: left alone unless SAM's mask covers it
    viewer.add_labels(labels, **labels_layer_kwargs(LUAD_HISTOSEG, "tile segmentation [test]"))
    w = SamRefineWidget(viewer)
    w.image_combo.setCurrentText("tile")
    w.labels_combo.setCurrentText("tile segmentation [test]")
    w.checkpoint_edit.setText(str(tiny_ckpt))
    return w


def test_point_prompt_changes_labels_and_undo_reverts(qtbot, widget: SamRefineWidget) -> None:  # noqa: ANN001
    viewer = widget.viewer
    labels = viewer.layers["tile segmentation [test]"]
    before = labels.data.copy()
    widget.set_class("TE")
    assert widget.class_combo.currentData() == 1
    widget.start()
    assert viewer.layers.selection.active is widget.points_layer and widget.points_layer.mode == "add"
    painted = []
    labels.events.paint.connect(lambda e: painted.append(e))

    widget.points_layer.add([32, 32])  # what a left click in add mode does
    qtbot.waitUntil(lambda: widget.job is not None and not widget.job.running and len(widget.latencies_ms) > 0,
                    timeout=60_000)
    assert widget.last_error is None, widget.last_error
    after = labels.data.copy()
    assert not np.array_equal(after, before)  # the Labels layer changed
    changed = after != before
    assert set(np.unique(after[changed]).tolist()) <= {0, 1}  # only the TE region was replaced
    assert painted  # a paint event: the review store's autosave records it as a correction

    # a negative point: decoder only (the embedding is cached), one more undo step
    widget.negative_check.setChecked(True)
    widget.points_layer.add([5, 5])
    assert list(widget.points_layer.features["positive"]) == [True, False]
    assert len(widget.latencies_ms) == 2 and widget.job is not None and not widget.job.running
    # undo walks back through the SAM edits to the original labels
    labels.undo()
    labels.undo()
    assert np.array_equal(labels.data, before)

    # a box prompt (with the points removed): decoder only, the TE region follows the box's mask
    widget.clear_prompts()
    assert len(widget.points_layer.data) == 0
    n = len(widget.latencies_ms)
    widget.box_layer.add_rectangles(np.array([[12.0, 12.0], [52.0, 52.0]]))
    assert len(widget.latencies_ms) == n + 1 and widget.last_error is None
    assert "SAM mask" in widget.status.text()


def test_missing_checkpoint_is_a_clear_message(qtbot, widget: SamRefineWidget, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.delenv("NAPARI_WSSS_SAM_CHECKPOINT", raising=False)
    widget.checkpoint_edit.setText("")
    widget.start()
    widget.points_layer.add([32, 32])
    qtbot.waitUntil(lambda: widget.job is not None and not widget.job.running, timeout=30_000)
    assert isinstance(widget.last_error, FileNotFoundError)
    assert "NAPARI_WSSS_SAM_CHECKPOINT" in widget.status.text()
