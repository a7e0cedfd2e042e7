"""Fine-tune dock widget: learn from the pathologist's corrections (IFKD) in a background worker.

Pick the annotation project and the base model version, see how many tiles were corrected, start; one progress
bar covers the whole job (the held-out check and the refit on every correction), its line says which run is at
which epoch, the epoch's mean loss and the held-out score, a small plot the held-out score per epoch. Pause
waits between batches, Cancel stops without writing anything (the base version and the project stay as they
were). At the end "Use this version" hands the new version to the Segment widget and re-segments the unreviewed
tiles (corrected and accepted tiles are kept, as the project store protects them).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QPointF, Qt, QTimer
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ..events import Progress
from . import _sessions
from ._job_controls import JobControlsMixin, scrolling_layout, with_button
from ._layers import same
from ._worker import Job, run_job

if TYPE_CHECKING:
    import napari


class ScorePlot(QWidget):
    """A tiny line plot of the held-out score per epoch (0..1 on the y axis), painted with QPainter."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.values: list[float] = []
        self.caption: str | None = None  # what the last point is, when not simply the last epoch's score
        self.setMinimumHeight(60)
        self.setToolTip("held-out mIoU per epoch (corrected tiles kept out of training)")

    def set_values(self, values: list[float], caption: str | None = None) -> None:
        self.values = [float(v) for v in values]
        self.caption = caption
        self.update()

    def paintEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        w, h = self.width(), self.height()
        p.setPen(QPen(QColor(120, 120, 120), 1))
        p.drawRect(0, 0, w - 1, h - 1)
        vals = self.values
        if vals:
            n = max(2, len(vals))
            pts = [QPointF(4 + (w - 8) * i / (n - 1), h - 4 - (h - 8) * min(1.0, max(0.0, v)))
                   for i, v in enumerate(vals)]
            p.setPen(QPen(QColor(0, 170, 255), 2))
            if len(pts) > 1:
                p.drawPolyline(QPolygonF(pts))
            for pt in pts:
                p.drawEllipse(pt, 2, 2)
            p.setPen(QColor(200, 200, 200))
            p.drawText(6, 14, self.caption or f"held-out mIoU {vals[-1]:.3f}")
        else:
            p.setPen(QColor(150, 150, 150))
            p.drawText(self.rect(), Qt.AlignCenter, "held-out score appears here")
        p.end()


def _score(value: Any) -> float | None:
    """A held-out score as a float; None when absent or NaN (no held-out tile)."""
    return None if value is None or value != value else float(value)


class FinetuneWidget(JobControlsMixin, QWidget):
    """Fine-tunes a model version on the corrections of an annotation project and lists the new version."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.job: Job | None = None
        self.last_error: BaseException | None = None
        self.last_result: Path | None = None
        self.scores: list[float] = []
        self._by_epoch: dict[int, float] = {}
        self._pause = threading.Event()
        self._extra_versions: list[tuple[str, Path, str]] = []
        self._units = "tiles"  # what the project's items are: tiles, or a slide's regions

        self.project_combo = QComboBox()
        self.browse_project_btn = QPushButton("Browse…")
        self.counts_label = QLabel("no project")
        self.counts_label.setWordWrap(True)
        self.base_combo = QComboBox()
        self.browse_base_btn = QPushButton("Browse…")
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 200)
        self.epochs_spin.setValue(8)
        # a run with a held-out check trains twice (check, then every correction): one bar covers both
        self.epochs_spin.setToolTip("epochs per training run; with 2 or more painted tiles the version is trained "
                                    "twice (a held-out check, then on every correction), each this many epochs")
        self.student_combo = QComboBox()  # training.ifkd_student.STUDENTS
        self.student_combo.addItem("segmentation network (IFKD student)", "dense")
        self.student_combo.addItem("the base model's own network", "copy")
        self.student_combo.setToolTip(
            "segmentation network: a pixel classifier on the base model's backbone, saved as an ifkd version "
            "(learns most from corrections: docs/benchmarks.md); own network: the base model's method and "
            "post-processing are kept")
        self.start_btn = QPushButton("Fine-tune")
        self.primary_row = self.start_btn  # kept on screen when docks stack (_dock_room)
        self.pause_btn = QPushButton("Pause")
        self.pause_btn.setCheckable(True)
        self._init_job_controls()
        self.use_btn = QPushButton("Use this version")
        self.use_btn.setToolTip("select the new version in the Segment widget and re-segment the unreviewed tiles")
        self.plot = ScorePlot()

        form = QFormLayout()
        form.addRow("project", with_button(self.project_combo, self.browse_project_btn))
        form.addRow("", self.counts_label)
        form.addRow("base version", with_button(self.base_combo, self.browse_base_btn))
        form.addRow("epochs", self.epochs_spin)
        form.addRow("student", self.student_combo)
        buttons = QHBoxLayout()
        for b in (self.start_btn, self.pause_btn, self.cancel_btn):
            buttons.addWidget(b)
        layout = scrolling_layout(self)  # scrolls when the dock is short (three docks stacked)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.plot)
        layout.addWidget(self.use_btn)
        layout.addStretch(1)

        self.start_btn.clicked.connect(self.start)
        self.pause_btn.toggled.connect(self.set_paused)
        self.cancel_btn.clicked.connect(self.cancel)
        self.use_btn.clicked.connect(self.use_version)
        self.browse_project_btn.clicked.connect(self._browse_project)
        self.browse_base_btn.clicked.connect(self._browse_base)
        self.project_combo.currentIndexChanged.connect(self.refresh)
        _sessions.SESSION_LISTENERS.append(self._on_sessions_changed)
        self.destroyed.connect(lambda *_: self._forget_listener())
        self._set_running(False)
        self.use_btn.setEnabled(False)
        self._refresh_projects()

    # -- choices -------------------------------------------------------------------------------------
    def showEvent(self, event: Any) -> None:  # noqa: N802  (Qt's name)
        super().showEvent(event)
        from ._dock_room import make_room_when_shown

        make_room_when_shown(self)

    def project_root(self) -> Path | None:
        data = self.project_combo.currentData()
        return Path(data) if data else None

    def _refresh_projects(self) -> None:
        current = self.project_combo.currentData()
        roots = [str(s.project.root) for s in _sessions.sessions(self.viewer)]
        for i in range(self.project_combo.count()):
            if self.project_combo.itemData(i) not in roots:
                roots.append(self.project_combo.itemData(i))
        self.project_combo.blockSignals(True)
        self.project_combo.clear()
        for r in roots:
            self.project_combo.addItem(Path(r).name, r)
        if current in roots:
            self.project_combo.setCurrentIndex(roots.index(current))
        self.project_combo.blockSignals(False)
        self.refresh()

    def set_project(self, root: str | Path) -> None:
        """Choose an annotation project folder (``<tiles>.wsss`` with ``project.json``), or the data it annotates
        (Browse… to the tile folder or slide a pathologist knows: its project is found where Review keeps it)."""
        from ..store import INDEX_FILE, Project, default_project_root

        if not (Path(root) / INDEX_FILE).is_file() and Path(root).exists() \
                and (default_project_root(root) / INDEX_FILE).is_file():
            root = default_project_root(root)
        Project.load(root)  # raises a clear error for a folder that is not a project
        root = str(Path(root).resolve())
        if self.project_combo.findData(root) < 0:
            self.project_combo.addItem(Path(root).name, root)
        self.project_combo.setCurrentIndex(self.project_combo.findData(root))
        self.refresh()

    def add_base_version(self, folder: str | Path) -> None:
        """Make a model version folder selectable as the base (and select it)."""
        from ..models.card import load_card

        card = load_card(folder)
        self._extra_versions.append((Path(folder).name, Path(folder), card.method))
        self.refresh()
        self.base_combo.setCurrentIndex(self.base_combo.findData(str(Path(folder))))

    def _versions(self) -> list[tuple[str, Path, str]]:
        from ..store import Project
        from ..training.ifkd import SUPPORTED_METHODS
        from ..models.card import load_card
        from ._model_choice import list_model_versions

        out = list(list_model_versions())
        root = self.project_root()
        if root is not None:
            try:
                for d in Project.load(root).model_versions():
                    out.append((f"{d.name} (project)", d, load_card(d).method))
            except (ValueError, FileNotFoundError):
                pass
        out += self._extra_versions
        return [v for v in out if v[2] in SUPPORTED_METHODS]

    def refresh(self, *_: Any) -> None:
        """Re-read the project's counts and the versions it can start from."""
        from ..store import Project

        current = self.base_combo.currentData()
        self.base_combo.clear()
        for label, path, method in self._versions():
            if self.base_combo.findData(str(path)) < 0:
                self.base_combo.addItem(f"{label} [{method}]", str(path))
        if current is not None and self.base_combo.findData(current) >= 0:
            self.base_combo.setCurrentIndex(self.base_combo.findData(current))
        root = self.project_root()
        if root is None:
            self.counts_label.setText("no project: open tiles and the Review widget, or Browse… to a .wsss folder")
            return
        try:
            project = Project.load(root)
            c = project.counts()
        except (ValueError, FileNotFoundError) as e:
            self.counts_label.setText(f"cannot read the project: {e}")
            return
        self._select_base_of_classes(project)
        self._units = "regions" if any(it.region for it in project.items()) else "tiles"  # a slide's are regions
        self.counts_label.setText(f"{c['corrected']} corrected, {c['accepted']} accepted, {c['unreviewed']} "
                                  f"unreviewed of {c['total']} {self._units}")

    def _select_base_of_classes(self, project: Any) -> None:
        """Move off a base of other classes than the project's to the first of its classes: the first listed (the
        demo) cannot fine-tune a project of real tissue's classes, and nothing else told the user which one could."""
        from ..models.card import load_card

        def names(i: int) -> list[str] | None:
            path = self.base_combo.itemData(i)
            try:
                return load_card(path).class_schema.names if path else None
            except (ValueError, FileNotFoundError):
                return None

        if project.schema_default or names(self.base_combo.currentIndex()) in (None, project.schema.names):
            return
        for i in range(self.base_combo.count()):
            if names(i) == project.schema.names:
                self.base_combo.setCurrentIndex(i)
                return

    def version_names(self) -> list[str]:
        return [Path(self.base_combo.itemData(i)).name for i in range(self.base_combo.count())]

    def _on_sessions_changed(self, viewer: Any) -> None:
        if same(viewer, self.viewer):
            self._refresh_projects()

    def _forget_listener(self) -> None:
        if self._on_sessions_changed in _sessions.SESSION_LISTENERS:
            _sessions.SESSION_LISTENERS.remove(self._on_sessions_changed)

    def _browse_project(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Annotation project folder (<tiles>.wsss)")
        if folder:
            try:
                self.set_project(folder)
            except (ValueError, FileNotFoundError) as e:
                self._show_error(e)

    def _browse_base(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model version folder (card.json + weights.pt)")
        if folder:
            try:
                self.add_base_version(folder)
            except (ValueError, FileNotFoundError) as e:
                self._show_error(e)

    # -- running -------------------------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        return {"epochs": int(self.epochs_spin.value()), "student": self.student_combo.currentData()}

    def start(self) -> None:
        """Start fine-tuning (the Fine-tune button)."""
        from ..training.ifkd import finetune

        if self.job is not None and self.job.running:
            return
        root, base = self.project_root(), self.base_combo.currentData()
        if root is None or not base:
            self._show_error(ValueError("Choose an annotation project and a base model version first."))
            return
        for sess in _sessions.sessions(self.viewer):
            sess.flush()  # the last strokes are corrections too
        self.last_error, self.last_result, self.scores, self._by_epoch = None, None, [], {}
        self.plot.set_values([])
        self.use_btn.setEnabled(False)
        self._pause.clear()
        self.pause_btn.setChecked(False)
        self._set_running(True)
        self.status.setText("starting…")
        command = f"napari-wsss finetune --project {root} --base {base}"  # the CLI twin of this run
        self.job = run_job(finetune, root, Path(base), None, options=self.options(), paused=self._pause.is_set,
                           command=command, on_progress=self._on_progress, on_result=self._on_result,
                           on_error=self._show_error, on_cancelled=self._on_cancelled,
                           on_finished=lambda: self._set_running(False))

    def set_paused(self, paused: bool) -> None:
        (self._pause.set if paused else self._pause.clear)()
        self.pause_btn.setText("Resume" if paused else "Pause")
        if self.job is not None and self.job.running:
            self.status.setText("paused (between batches)" if paused else "resumed")

    def cancel(self) -> None:
        super().cancel()
        self._pause.clear()  # a paused job must wake up to see the cancel

    def _run_buttons(self) -> list[Any]:
        return [self.start_btn]

    def _set_running(self, running: bool) -> None:
        super()._set_running(running)
        self.pause_btn.setEnabled(running)
        if not running:
            self.pause_btn.setChecked(False)

    def _progress_text(self, p: Progress) -> str:
        """The line under the one bar of the whole job: which run at which epoch (the core's ``desc``), the
        epoch's mean loss, and the held-out score named for what it is. During epoch 1 the only score is the base
        model's, from before any training (it read "epoch 1/8 · held-out mIoU 0.989" as if epoch 1 had scored it)."""
        m = p.metrics
        parts = [p.desc]
        if "loss" in m:  # the core's mean over the epoch so far: a batch's own loss swung from 0.28 to 1.84
            parts.append(f"loss {m['loss']:.3f} (epoch mean)")
        base, held = _score(m.get("held_out_base")), _score(m.get("held_out"))
        epoch = int(m["epoch"]) if "epoch" in m else None
        if held is not None and epoch:
            parts.append(f"held-out mIoU {held:.3f} after epoch {epoch}"
                         + (f" (base model {base:.3f})" if base is not None else ""))
        elif base is not None:
            parts.append(f"held-out mIoU of the base model {base:.3f} (before training)")
        elif held is not None:
            parts.append(f"held-out mIoU {held:.3f}")
        points = dict(self._by_epoch)  # the plot: epoch 0 the base model, epoch e the student after e epochs
        if base is not None:
            points[0] = base
        if held is not None and epoch:
            points[epoch] = held
        if points != self._by_epoch:
            self._by_epoch = points
            self.scores = [points[e] for e in sorted(points)]
            self.plot.set_values(self.scores)
        return " · ".join(parts)

    def _on_result(self, out_dir: Any) -> None:
        from ..models.card import load_card

        self.last_result = Path(out_dir)
        from ..training.ifkd import held_out_summary

        card = load_card(self.last_result)
        held = card.metrics.get("held_out", {})
        score = "; " + held_out_summary(card.metrics, card.parent or "version")
        if held.get("n_tiles"):
            hist = [held["before"], *[h for h in held.get("history", []) if h is not None]]
            after = held.get("after")
            if after is not None and (len(hist) < 2 or abs(after - hist[-1]) > 5e-4):
                hist.append(after)  # the weights written (mixed with the base's) score apart from the last epoch
            self.scores = [float(v) for v in hist]
            # the caption and the verdict below name one number (walk-through: plot 0.807, verdict 0.857)
            self.plot.set_values(self.scores, None if after is None else
                                 f"held-out mIoU {after:.3f} (the version written)")
        self.refresh()
        for cb in list(_sessions.SESSION_LISTENERS):  # Segment lists the new version at once
            cb(self.viewer)
        self.use_btn.setEnabled(True)
        from ._model_choice import where_segment_lists

        # where to find it, and the one click that uses it (the verdict alone left the user to look for it)
        where = where_segment_lists(self.viewer, self.last_result, [])
        use = f"'Use this version' selects it in Segment and re-segments the unreviewed {self._units}."
        if not where.startswith("to use it"):  # listed in an open project: say under which name
            use = f"{where[:1].upper()}{where[1:]}; {use}"
        self.status.setText(f"New version {self.last_result.name}{score}. {use}")

    def _on_cancelled(self) -> None:
        self.status.setText("Cancelled; nothing was written (the base version and the project are unchanged).")

    # -- using the result ------------------------------------------------------------------------------
    def _segment_widgets(self) -> list[Any]:
        from qtpy.QtWidgets import QApplication

        from .segment_widget import SegmentWidget

        return [w for w in QApplication.allWidgets() if isinstance(w, SegmentWidget) and same(w.viewer, self.viewer)]

    def use_version(self) -> Any:
        """Select the new version in the Segment widget and re-segment the project's unreviewed tiles.

        Returns the Segment widget used (None when nothing was done).
        """
        if self.last_result is None:
            return None
        widgets = self._segment_widgets()
        if widgets:
            seg = widgets[0]
        else:
            _, seg = self.viewer.window.add_plugin_dock_widget("napari-wsss", "Segment")
        seg.add_model_version(self.last_result)
        root = self.project_root()
        sess = next((s for s in _sessions.sessions(self.viewer) if root is not None
                     and Path(s.project.root).resolve() == root.resolve()), None)
        if sess is None:
            self.status.setText(f"{self.last_result.name} is selected in the Segment widget; open the project's tiles "
                                "(and the Review widget) to re-segment them.")
            return seg
        seg.image_combo.setCurrentText(sess.image_layer.name)
        # a slide: its whole result again, tiled (the scope left as it was refused a slide too big for one go)
        scope = {"tiles": "all tiles in the stack", "slide": "whole slide, full resolution (tiled, saved as zarr)"}
        if sess.kind in scope:
            seg.scope_combo.setCurrentText(scope[sess.kind])
        seg.last_error = None
        seg.segment()  # corrected/accepted tiles are skipped by the project store
        if seg.last_error is not None:  # Segment said why; this line must not claim a run that never started
            self.status.setText(f"{self.last_result.name} is selected in the Segment widget, which could not "
                                f"start: {seg.last_error}")
        else:
            what = "tiles" if sess.kind == "tiles" else "regions"
            self.status.setText(f"Re-segmenting the unreviewed {what} with {self.last_result.name} (corrected and "
                                f"accepted {what} are kept).")
            self._when_segment_ends(seg, self.last_result.name)
        return seg

    def _when_segment_ends(self, seg: Any, name: str) -> None:
        """Replace "Re-segmenting …" by Segment's own outcome when its job ends (the line stayed after it had)."""
        job = getattr(seg, "job", None)

        def ended() -> None:
            try:
                self.status.setText(f"{name} in use. Segment: {seg.status.text()}")
            except RuntimeError:  # either dock was closed meanwhile
                pass

        worker = getattr(job, "worker", None)
        if job is not None and job.running and worker is not None:
            worker.finished.connect(lambda: QTimer.singleShot(0, ended))  # after Segment's own handlers
        else:
            ended()
