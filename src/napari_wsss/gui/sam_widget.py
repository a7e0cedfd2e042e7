"""SAM refine dock widget: click points (or draw a box) and the selected class's region becomes SAM's mask.

The image embedding is computed once per image plane (or a window of at most ``MAX_SIDE`` px around the
first prompt of a large plane) in a worker and cached (``models.sam``); every later prompt runs only SAM's
decoder on the Qt thread (tens of ms). Cancel stops the embedding job and leaves the labels as they were.
Each edit goes through ``Labels.data_setitem``: one napari undo step and one ``paint`` event (the review store
autosaves it as a correction).
"""

from __future__ import annotations

import os
from pathlib import Path
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from ..events import Cancelled, Progress
from ._job_controls import JobControlsMixin, job_error_message, scrolling_layout, with_button
from ._layers import is_tissue_image, layer_schema, rgb_plane, to_numpy
from ._worker import run_job

if TYPE_CHECKING:
    import napari

POINTS_NAME = "SAM prompts"
BOX_NAME = "SAM box"
MAX_SIDE = 1024  # SAM's own input size: larger planes are refined in a window around the first prompt
POSITIVE, NEGATIVE = "lime", "magenta"


def _sam_job(session: Any, checkpoint: str, model_type: str, image: np.ndarray, *, should_stop: Any
             ) -> Generator[Progress, None, Any]:
    """Worker body: load SAM (first time) and compute/cache the embedding of ``image``; returns the session.

    The encoder is one uninterruptible forward pass, so ``should_stop`` is checked around it: a cancel during it
    still raises ``Cancelled`` afterwards, so that the widget does not edit the labels the user gave up on.
    """
    from ..models.sam import EmbeddingCache, SamSession, default_cache_dir, load_sam

    if session is None:
        yield Progress(0, 2, "loading SAM")
        session = SamSession(load_sam(checkpoint or None, model_type), EmbeddingCache(default_cache_dir()))
    if should_stop():
        raise Cancelled("SAM embedding cancelled")
    yield Progress(1, 2, "computing the SAM image embedding (once per image)")
    session.embed(image)
    if should_stop():
        raise Cancelled("SAM embedding cancelled")
    return session


class SamRefineWidget(JobControlsMixin, QWidget):
    """Refine one class of a Labels layer with Segment Anything prompts (points / box)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        from ..models.sam import ENV_CHECKPOINT

        self.viewer = napari_viewer
        self.latencies_ms: list[float] = []
        self.points_layer: Any = None
        self.box_layer: Any = None
        self._session: Any = None
        self._session_key: tuple[str, str] | None = None
        self._snapshot: dict[str, Any] | None = None
        self._job_cancelled = False

        self.image_combo = QComboBox()
        self.labels_combo = QComboBox()
        self.class_combo = QComboBox()
        self.checkpoint_edit = QLineEdit(os.environ.get(ENV_CHECKPOINT, ""))
        self.checkpoint_edit.setPlaceholderText(f"SAM .pth file (or set {ENV_CHECKPOINT})")
        self.browse_btn = QPushButton("…")
        self.model_type_combo = QComboBox()
        self.model_type_combo.addItems(["auto", "vit_b", "vit_l", "vit_h"])
        self.negative_check = QCheckBox("next points are negative (not this class)")
        self.start_btn = QPushButton("Start prompting")
        self.clear_btn = QPushButton("Accept && clear prompts")
        self.primary_row = self.start_btn  # kept on screen when docks stack (_dock_room)
        for combo in (self.image_combo, self.labels_combo, self.class_combo):
            # sized to a short text, not to the longest item: "gland (colon gland (epithelium and lumen))" made
            # the dock 602 px wide and napari's default window grew from 1089 to 1197 px (walk-through)
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(16)
        self._init_job_controls()

        form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("labels", self.labels_combo)
        form.addRow("class", self.class_combo)
        form.addRow("SAM checkpoint", with_button(self.checkpoint_edit, self.browse_btn))
        form.addRow("SAM model type", self.model_type_combo)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_btn)
        buttons.addWidget(self.clear_btn)
        buttons.addWidget(self.cancel_btn)
        layout = scrolling_layout(self)  # scrolls when the dock is short: docking never grows the window
        layout.addLayout(form)
        layout.addWidget(self.negative_check)
        layout.addLayout(buttons)
        help_label = QLabel("Left-click adds points in the 'SAM prompts' layer; tick 'negative' for points "
                            "outside the class; or draw one rectangle in 'SAM box'. Ctrl+Z in the labels "
                            "layer undoes an edit.")
        help_label.setWordWrap(True)  # unwrapped, this one line made the dock 1100 px wide
        layout.addWidget(help_label)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.browse_btn.clicked.connect(self._browse)
        self.start_btn.clicked.connect(self.start)
        self.clear_btn.clicked.connect(self.clear_prompts)
        self.cancel_btn.clicked.connect(self.cancel)
        self.negative_check.toggled.connect(self._set_polarity)
        self.labels_combo.currentTextChanged.connect(self._refresh_classes)
        self.class_combo.currentIndexChanged.connect(lambda *_: self._reset_snapshot())
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()

    def showEvent(self, event: Any) -> None:  # noqa: N802  (Qt's name)
        super().showEvent(event)
        from ._dock_room import make_room_when_shown

        make_room_when_shown(self)

    # -- choices ---------------------------------------------------------------------------------------
    def _layers_of(self, kind: str) -> list[Any]:
        import napari.layers

        cls = getattr(napari.layers, kind)
        return [ly for ly in self.viewer.layers if isinstance(ly, cls) and ly.name not in (POINTS_NAME, BOX_NAME)
                and (kind != "Image" or is_tissue_image(ly))]  # not a confidence map: SAM reads the H&E

    def _refresh_layers(self, *_: Any) -> None:
        for combo, kind in ((self.image_combo, "Image"), (self.labels_combo, "Labels")):
            current = combo.currentText()
            names = [ly.name for ly in self._layers_of(kind)]
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
            combo.blockSignals(False)
        self._refresh_classes()

    def _refresh_classes(self, *_: Any) -> None:
        current = self.class_combo.currentData()
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        name = self.labels_combo.currentText()
        layer = self.viewer.layers[name] if name in self.viewer.layers else None
        schema = layer_schema(layer) if layer is not None else None
        if schema is not None:
            for c in schema.foreground:
                self.class_combo.addItem(f"{c.name} ({c.description})" if c.description else c.name, c.index + 1)
        else:  # a plain Labels layer: offer label values 1..9
            for v in range(1, 10):
                self.class_combo.addItem(f"label {v}", v)
        idx = self.class_combo.findData(current)
        self.class_combo.setCurrentIndex(max(0, idx))
        self.class_combo.blockSignals(False)
        self._reset_snapshot()

    def set_class(self, name_or_label: str | int) -> None:
        """Select the class to refine by schema name (``"TE"``) or napari label value."""
        for i in range(self.class_combo.count()):
            if self.class_combo.itemData(i) == name_or_label or self.class_combo.itemText(i).split(" ")[0] == name_or_label:
                self.class_combo.setCurrentIndex(i)
                return
        raise KeyError(f"No class {name_or_label!r} in the labels layer's schema.")

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "SAM checkpoint (sam_vit_b_01ec64.pth, ...)", "",
                                              "PyTorch checkpoints (*.pth *.pt);;All files (*)")
        if path:
            self.checkpoint_edit.setText(path)

    # -- prompt layers ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Create (or reuse) the prompt layers and make the points layer active, in add mode.

        Refused at once, with one short line, when there is no SAM checkpoint to prompt (not at the first point).
        """
        from ..models.sam import ENV_CHECKPOINT

        ckpt = self.checkpoint_edit.text().strip() or os.environ.get(ENV_CHECKPOINT, "")
        if not ckpt or not Path(ckpt).expanduser().is_file():
            what = f"SAM checkpoint not found: {Path(ckpt).name}" if ckpt else "No SAM checkpoint set"
            self._show_error(FileNotFoundError(f"{what}; Browse… to a sam_vit_*.pth file or set {ENV_CHECKPOINT}."))
            return
        labels = self._labels_layer()
        ndim = labels.ndim
        if self.points_layer is None or self.points_layer not in self.viewer.layers:
            self.points_layer = self.viewer.add_points(
                np.zeros((0, ndim)), name=POINTS_NAME, size=max(4, labels.data.shape[-1] // 64), ndim=ndim,
                features={"positive": np.zeros(0, bool)}, face_color=POSITIVE, border_color="black")
            self.points_layer.feature_defaults = {"positive": True}
            self.points_layer.events.data.connect(self._on_prompt_event)
        if self.box_layer is None or self.box_layer not in self.viewer.layers:
            self.box_layer = self.viewer.add_shapes(name=BOX_NAME, ndim=ndim, edge_color=POSITIVE, face_color="transparent",
                                                    edge_width=2)
            self.box_layer.events.data.connect(self._on_prompt_event)
        self._set_polarity(self.negative_check.isChecked())
        self.viewer.layers.selection.active = self.points_layer
        self.points_layer.mode = "add"
        self._reset_snapshot()
        self.status.setText("Click inside the region of the selected class.")

    def _set_polarity(self, negative: bool) -> None:
        if self.points_layer is not None:
            self.points_layer.feature_defaults = {"positive": not negative}
            self.points_layer.current_face_color = NEGATIVE if negative else POSITIVE

    def clear_prompts(self) -> None:
        """Keep the current labels and start a new prompt set (the next prompt edits from here)."""
        self._snapshot = None
        for layer in (self.points_layer, self.box_layer):
            if layer is not None and len(layer.data):
                layer.events.data.disconnect(self._on_prompt_event)
                layer.data = np.zeros((0, layer.ndim)) if layer is self.points_layer else []
                layer.events.data.connect(self._on_prompt_event)

    def _reset_snapshot(self) -> None:
        self._snapshot = None

    def _on_prompt_event(self, event: Any) -> None:
        action = str(getattr(event, "action", "changed"))
        if action in ("added", "removed", "changed"):
            self.refine()

    # -- the work ----------------------------------------------------------------------------------------
    def _labels_layer(self) -> Any:
        name = self.labels_combo.currentText()
        if not name or name not in self.viewer.layers:
            raise ValueError("No labels layer selected: segment the image first (Segment widget) or add a Labels layer.")
        return self.viewer.layers[name]

    def _image_layer(self) -> Any:
        name = self.image_combo.currentText()
        if not name or name not in self.viewer.layers:
            raise ValueError("No image selected: open an H&E image first.")
        return self.viewer.layers[name]

    def _plane_index(self, labels: Any) -> tuple[int, ...]:
        lead = labels.ndim - 2
        step = self.viewer.dims.current_step
        return tuple(int(s) for s in step[len(step) - labels.ndim: len(step) - labels.ndim + lead])

    def _prompts(self, plane: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(N, 2) (y, x) points, (N,) 1/0 labels and a (y0, x0, y1, x1) box on the current plane."""
        pts = np.zeros((0, 2), np.float32)
        lab = np.zeros(0, np.int64)
        box = None
        if self.points_layer is not None and len(self.points_layer.data):
            data = np.asarray(self.points_layer.data)
            on = np.all(np.round(data[:, :-2]) == np.asarray(plane), axis=1) if plane else np.ones(len(data), bool)
            pts = data[on, -2:].astype(np.float32)
            lab = np.asarray(self.points_layer.features["positive"], bool)[on].astype(np.int64)
        if self.box_layer is not None and len(self.box_layer.data):
            for d in reversed(self.box_layer.data):
                d = np.asarray(d)
                if not plane or np.all(np.round(d[0, :-2]) == np.asarray(plane)):
                    yx = d[:, -2:]
                    box = np.concatenate([yx.min(0), yx.max(0)]).astype(np.float32)
                    break
        return pts, lab, box

    def refine(self) -> None:
        """Re-predict the mask for the current prompts (embedding in a worker if it is not cached yet)."""
        try:
            self._refine()
        except (ValueError, KeyError, FileNotFoundError, RuntimeError) as e:
            self._show_error(e)

    def _refine(self) -> None:
        if self.job is not None and self.job.running:
            return  # prompts changed while the embedding is computed: _job_finished predicts for the latest ones
        labels = self._labels_layer()
        plane = self._plane_index(labels)
        pts, lab, box = self._prompts(plane)
        if len(pts) == 0 and box is None:
            self._restore_snapshot()
            return
        h, w = labels.data.shape[-2:]
        if self._snapshot is None or self._snapshot["plane"] != plane:
            centre = pts.mean(0) if len(pts) else np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
            y0 = int(np.clip(centre[0] - MAX_SIDE // 2, 0, max(0, h - MAX_SIDE)))
            x0 = int(np.clip(centre[1] - MAX_SIDE // 2, 0, max(0, w - MAX_SIDE)))
            win = (y0, x0, min(h, y0 + MAX_SIDE), min(w, x0 + MAX_SIDE))
            self._snapshot = {"plane": plane, "window": win, "label": int(self.class_combo.currentData()),
                              "data": np.array(to_numpy(labels.data[plane + (slice(win[0], win[2]), slice(win[1], win[3]))]))}
        y0, x0, y1, x1 = self._snapshot["window"]
        image = self._image_crop(plane, self._snapshot["window"])
        key = (self.checkpoint_edit.text().strip(), self.model_type_combo.currentText())
        if self._session_key != key:
            self._session, self._session_key = None, key
        if self._session is not None and self._session.is_cached(image):
            self._predict_and_apply(image)
            return
        self.status.setText("computing the SAM image embedding…")
        self.last_error = None
        self._job_cancelled = False
        self._set_running(True)
        self.job = run_job(_sam_job, self._session, key[0], key[1], image,
                           on_progress=self._on_progress, on_result=self._embedding_ready,
                           on_error=self._show_error, on_cancelled=self._cancelled,
                           on_finished=self._job_finished)

    def _image_crop(self, plane: tuple[int, ...], win: tuple[int, int, int, int]) -> np.ndarray:
        layer = self._image_layer()
        data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
        arr = to_numpy(rgb_plane(data, plane)[win[0]:win[2], win[1]:win[3]])
        if arr.dtype != np.uint8:
            lo, hi = float(arr.min()), float(arr.max())
            arr = ((arr - lo) / (hi - lo + 1e-9) * 255).astype(np.uint8) if hi > 255 or hi <= 1 else arr.astype(np.uint8)
        return np.ascontiguousarray(arr)

    def _run_buttons(self) -> list[Any]:
        # what defines the embedding job in flight; prompts may still be added (they are used when it ends)
        return [self.start_btn, self.browse_btn, self.checkpoint_edit, self.model_type_combo]

    def _embedding_ready(self, session: Any) -> None:
        self._session = session  # the bar ends full in JobControlsMixin._set_running

    def _cancelled(self) -> None:
        self._job_cancelled = True
        self.status.setText("Cancelled; the labels are unchanged. Add or move a prompt to try again.")

    def _job_finished(self) -> None:
        self._set_running(False)
        # whatever the prompts are now (they may have changed during the embedding), predict for them; not after
        # a cancel, which would start the embedding again
        if self._session is not None and self.last_error is None and not self._job_cancelled:
            self.refine()

    def _predict_and_apply(self, image: np.ndarray) -> None:
        labels = self._labels_layer()
        snap = self._snapshot
        y0, x0, y1, x1 = snap["window"]
        pts, lab, box = self._prompts(snap["plane"])
        t0 = time.perf_counter()
        self._session.set_image(image)
        mask, score = self._session.predict(pts - [y0, x0] if len(pts) else None, lab if len(pts) else None,
                                            None if box is None else box - [y0, x0, y0, x0])
        self.latencies_ms.append(1000 * (time.perf_counter() - t0))
        value = snap["label"]
        new = snap["data"].copy()
        new[new == value] = 0
        new[mask] = value
        current = to_numpy(labels.data[snap["plane"] + (slice(y0, y1), slice(x0, x1))])
        ys, xs = np.nonzero(new != current)
        if len(ys):
            idx = tuple(np.full(len(ys), p) for p in snap["plane"]) + (ys + y0, xs + x0)
            labels.data_setitem(idx, new[ys, xs])
        self.last_error = None
        self.status.setText(f"SAM mask: {int(mask.sum())} px, predicted IoU {score:.2f}, "
                            f"{self.latencies_ms[-1]:.0f} ms")

    def _restore_snapshot(self) -> None:
        """All prompts removed: put the labels back as they were before this prompt set."""
        snap = self._snapshot
        if snap is None:
            return
        labels = self._labels_layer()
        y0, x0, y1, x1 = snap["window"]
        current = to_numpy(labels.data[snap["plane"] + (slice(y0, y1), slice(x0, x1))])
        ys, xs = np.nonzero(snap["data"] != current)
        if len(ys):
            idx = tuple(np.full(len(ys), p) for p in snap["plane"]) + (ys + y0, xs + x0)
            labels.data_setitem(idx, snap["data"][ys, xs])

    def _show_error(self, exc: BaseException) -> None:
        # the message alone (a class name such as "FileNotFoundError:" means nothing to a user); the notification
        # says "SAM refine": SAM errors arrive from layer events, with no button press to tie them to this widget
        self.last_error = exc
        msg = job_error_message(exc)
        self.status.setText(msg)
        try:
            from napari.utils.notifications import show_error

            show_error(f"SAM refine: {msg}")
        except Exception:  # noqa: BLE001  (no notification manager in some test set-ups)
            pass
