"""SAM refine widget: a point prompt replaces the selected class's region in the Labels layer (undoable)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_wsss.classes import LUAD_HISTOSEG
from napari_wsss.gui._layers import labels_layer_kwargs
from napari_wsss.gui.sam_widget import SamRefineWidget
from napari_wsss.gui._layers import same
from ._plugin import SAM, dock
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
    w = dock(viewer, SAM)
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
    assert same(viewer.layers.selection.active, widget.points_layer) and widget.points_layer.mode == "add"
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
    widget.points_layer = None
    widget.start()  # refused at once, not at the first point
    assert isinstance(widget.last_error, FileNotFoundError)
    assert widget.status.text() == str(widget.last_error)  # the message alone, no "FileNotFoundError:" before it
    assert widget.status.text().startswith("No SAM checkpoint set; Browse")
    assert "NAPARI_WSSS_SAM_CHECKPOINT" in widget.status.text() and len(widget.status.text()) < 160
    assert widget.points_layer is None and "SAM prompts" not in widget.viewer.layers
    widget.checkpoint_edit.setText("/nowhere/" + "x" * 300 + ".pth")  # a long path must not widen the window
    widget.start()
    assert "not found" in widget.status.text() and widget.points_layer is None
    assert widget.minimumSizeHint().width() < 600  # the dock (and so the main window) does not have to grow


def test_cancel_during_embedding_leaves_labels_and_next_prompt_works(qtbot, widget: SamRefineWidget,  # noqa: ANN001
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    import napari_wsss.models.sam as sam_mod

    gate = threading.Event()
    real_load = sam_mod.load_sam

    def held_load(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202  (holds the worker until the test has cancelled)
        gate.wait(30)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(sam_mod, "load_sam", held_load)
    labels = widget.viewer.layers["tile segmentation [test]"]
    before = labels.data.copy()
    widget.set_class("TE")
    widget.start()
    assert not widget.cancel_btn.isEnabled()
    widget.points_layer.add([32, 32])
    # the job is running: progress shows the loading step, Cancel is on, the job's inputs are off
    qtbot.waitUntil(lambda: "loading SAM" in widget.status.text(), timeout=10_000)
    assert widget.progress.maximum() == 2 and widget.progress.value() == 0
    assert widget.cancel_btn.isEnabled() and not widget.start_btn.isEnabled()
    assert not widget.checkpoint_edit.isEnabled()
    qtbot.mouseClick(widget.cancel_btn, Qt.LeftButton)
    gate.set()
    qtbot.waitUntil(lambda: not widget.job.running and not widget.cancel_btn.isEnabled(), timeout=30_000)
    qtbot.wait(50)  # a refine after the cancel would start a new job here
    assert not widget.job.running
    assert widget.last_error is None and "Cancelled" in widget.status.text()
    assert np.array_equal(labels.data, before) and widget.latencies_ms == []
    assert widget.start_btn.isEnabled() and widget.checkpoint_edit.isEnabled()

    # the next prompt runs the embedding again and edits the labels; the bar ends full
    widget.points_layer.add([30, 30])
    qtbot.waitUntil(lambda: not widget.job.running and len(widget.latencies_ms) > 0, timeout=60_000)
    assert widget.last_error is None, widget.last_error
    assert not np.array_equal(labels.data, before)
    assert widget.progress.value() == widget.progress.maximum() == 2
    assert not widget.cancel_btn.isEnabled()


def test_cancel_with_sam_loaded_does_not_restart_the_embedding(qtbot, widget: SamRefineWidget,  # noqa: ANN001
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    import napari_wsss.models.sam as sam_mod

    labels = widget.viewer.layers["tile segmentation [test]"]
    widget.set_class("TE")
    widget.start()
    widget.points_layer.add([32, 32])
    qtbot.waitUntil(lambda: not widget.job.running and len(widget.latencies_ms) == 1, timeout=60_000)
    first_job = widget.job

    # a new image: SAM is loaded, the embedding is not cached; hold the encoder until the test has cancelled
    widget.viewer.add_image(np.full((64, 64, 3), 90, np.uint8), name="tile 2", rgb=True)
    widget.image_combo.setCurrentText("tile 2")
    widget.clear_prompts()
    gate = threading.Event()
    real_embed = sam_mod.SamSession.embed

    def held_embed(self, image):  # noqa: ANN001, ANN202
        gate.wait(30)
        return real_embed(self, image)

    monkeypatch.setattr(sam_mod.SamSession, "embed", held_embed)
    before = labels.data.copy()
    widget.points_layer.add([20, 20])
    qtbot.waitUntil(lambda: widget.job is not first_job and widget.cancel_btn.isEnabled(), timeout=10_000)
    cancelled_job = widget.job
    widget.cancel()
    gate.set()
    qtbot.waitUntil(lambda: not cancelled_job.running and not widget.cancel_btn.isEnabled(), timeout=30_000)
    qtbot.wait(100)
    assert widget.job is cancelled_job  # no new embedding job started by the cancel
    assert np.array_equal(labels.data, before) and len(widget.latencies_ms) == 1
    assert "Cancelled" in widget.status.text() and widget.last_error is None
