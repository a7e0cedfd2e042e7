"""Export dock widget: a project's corrected masks out as a training set; GeoJSON polygons and sets back in.

The project is the one of the chosen image layer (``<data>.wsss`` beside the file it was opened from, the same
one the Review widget keeps), or any project folder picked with "Project…". Export runs
``export.training_set.export_project`` in a worker (progress, Cancel); the set appears only when complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ..classes import LUAD_HISTOSEG, ClassSchema
from ..export.training_set import DEFAULT_FORMATS, FILTERS, FORMATS
from ..store import INDEX_FILE, Project
from ._layers import image_source, labels_layer_kwargs, layer_meta, project_root_of
from ._job_controls import JobControlsMixin, scrolling_layout
from ._worker import Job, run_job

if TYPE_CHECKING:
    import napari

MAX_IMPORT_PIXELS = 4096 * 4096  # a GeoJSON import over a slide is rasterised at the finest level that fits
FORMAT_LABELS = {"png": "tiles + masks (PNG)", "tiff": "tiles + masks (TIFF)", "labels": "image-level labels",
                 "geojson": "GeoJSON polygons", "ome-zarr": "OME-Zarr labels (slides)",
                 "pyramidal-tiff": "pyramidal TIFF labels (slides)"}


class ExportWidget(JobControlsMixin, QWidget):
    """Export a project's masks (formats, filter, tiling) and import GeoJSON polygons or exported sets."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.job: Job | None = None
        self.last_error: BaseException | None = None
        self.last_result: Any = None

        self.image_combo = QComboBox()
        self.project_edit = QLineEdit()
        self.project_edit.setPlaceholderText("project folder (<data>.wsss)")
        self.project_btn = QPushButton("Project…")
        self.format_boxes: dict[str, QCheckBox] = {}
        grid = QGridLayout()
        for i, f in enumerate(FORMATS):
            box = QCheckBox(FORMAT_LABELS[f])
            box.setChecked(f in DEFAULT_FORMATS)
            self.format_boxes[f] = box
            grid.addWidget(box, i // 2, i % 2)
        # one tile format at a time
        self.format_boxes["png"].toggled.connect(lambda on: on and self.format_boxes["tiff"].setChecked(False))
        self.format_boxes["tiff"].toggled.connect(lambda on: on and self.format_boxes["png"].setChecked(False))
        self.filter_combo = QComboBox()
        self.filter_combo.addItems(list(FILTERS))
        self.filter_combo.setCurrentText("reviewed")
        self.tile_spin = QSpinBox()
        self.tile_spin.setRange(0, 16384)
        self.tile_spin.setSpecialValueText("whole items")
        self.overlap_spin = QSpinBox()
        self.overlap_spin.setRange(0, 16383)
        self.level_spin = QSpinBox()
        self.level_spin.setRange(-1, 16)
        self.level_spin.setValue(-1)
        self.level_spin.setSpecialValueText("as reviewed")
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("new folder for the export")
        self.out_btn = QPushButton("Folder…")
        self.overwrite_box = QCheckBox("replace a non-empty folder")
        self.export_btn = QPushButton("Export")
        self.primary_row = self.export_btn  # kept on screen when docks stack (_dock_room)
        self._init_job_controls()
        self.import_geojson_btn = QPushButton("Import GeoJSON…")
        self.import_set_btn = QPushButton("Import exported set…")

        form = QFormLayout()
        form.addRow("Image", self.image_combo)
        row = QHBoxLayout()
        row.addWidget(self.project_edit)
        row.addWidget(self.project_btn)
        form.addRow("Project", row)
        form.addRow("Items", self.filter_combo)
        form.addRow("Tile size", self.tile_spin)
        form.addRow("Overlap", self.overlap_spin)
        form.addRow("Level", self.level_spin)
        row = QHBoxLayout()
        row.addWidget(self.out_edit)
        row.addWidget(self.out_btn)
        form.addRow("Export to", row)
        layout = scrolling_layout(self)  # scrolls when the dock is short: docking never grows the window
        layout.addLayout(form)
        layout.addWidget(QLabel("Formats"))
        layout.addLayout(grid)
        layout.addWidget(self.overwrite_box)
        row = QHBoxLayout()
        row.addWidget(self.export_btn)
        row.addWidget(self.cancel_btn)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        row = QHBoxLayout()
        row.addWidget(self.import_geojson_btn)
        row.addWidget(self.import_set_btn)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.image_combo.currentTextChanged.connect(self._image_changed)
        self.project_btn.clicked.connect(self._choose_project)
        self.out_btn.clicked.connect(self._choose_out)
        self.export_btn.clicked.connect(self.export)
        self.cancel_btn.clicked.connect(self.cancel)
        self.import_geojson_btn.clicked.connect(self._choose_geojson)
        self.import_set_btn.clicked.connect(self._choose_set)
        self.viewer.layers.events.inserted.connect(self._refresh_images)
        self.viewer.layers.events.removed.connect(self._refresh_images)
        self._refresh_images()

    # -- which project -----------------------------------------------------------------------------------
    def showEvent(self, event: Any) -> None:  # noqa: N802  (Qt's name)
        super().showEvent(event)
        from ._dock_room import make_room_when_shown

        make_room_when_shown(self)

    def _image_layers(self) -> list[Any]:
        from ._layers import is_tissue_image

        return [ly for ly in self.viewer.layers if is_tissue_image(ly)]  # not the plugin's confidence maps

    def _refresh_images(self, *_: Any) -> None:
        current = self.image_combo.currentText()
        names = [ly.name for ly in self._image_layers()]
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)
        self.image_combo.blockSignals(False)
        if self.image_combo.currentText() != current:
            self._image_changed()

    def image_layer(self) -> Any:
        name = self.image_combo.currentText()
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def _image_changed(self, *_: Any) -> None:
        layer = self.image_layer()
        src = image_source(layer) if layer is not None else None
        if src is None:
            return
        root = self._session_root(layer) or project_root_of(layer)
        self.project_edit.setText(str(root))
        if not self.out_edit.text():
            self.out_edit.setText(str(root.parent / f"{root.stem}-export"))

    def _session_root(self, layer: Any) -> Path | None:
        try:
            from . import _sessions
        except ImportError:  # the review session module is optional here
            return None
        sess = _sessions.session_for(self.viewer, layer)
        return sess.project.root if sess is not None else None

    def project_root(self) -> Path:
        text = self.project_edit.text().strip()
        if not text:
            raise ValueError("No project: pick an image opened from a file (its project is <data>.wsss beside it) "
                             "or choose a project folder with Project….")
        return Path(text).expanduser()

    def schema(self) -> ClassSchema:
        """The project's classes; else the image's segmentation layer's; else LUAD-HistoSeg."""
        try:
            root = self.project_root()
            if (root / INDEX_FILE).is_file():
                return Project.load(root).schema
        except (ValueError, OSError):
            pass
        from ._layers import layer_schema

        for ly in self.viewer.layers:
            s = layer_schema(ly)
            if s is not None:
                return s
        return LUAD_HISTOSEG

    def _choose_project(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Annotation project folder (.wsss)")
        if d:
            self.project_edit.setText(d)

    def _choose_out(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Export to folder")
        if d:
            self.out_edit.setText(d)

    # -- export ------------------------------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        return {
            "formats": [f for f, box in self.format_boxes.items() if box.isChecked()],
            "filter": self.filter_combo.currentText(),
            "tile_size": self.tile_spin.value(),
            "overlap": self.overlap_spin.value() if self.tile_spin.value() else 0,
            "level": None if self.level_spin.value() < 0 else self.level_spin.value(),
            "overwrite": self.overwrite_box.isChecked(),
        }

    def export(self) -> Job | None:
        """Start the export in a worker; returns the job (None when the inputs are wrong: see ``status``)."""
        from ..export.training_set import export_project

        if self.job is not None and self.job.running:
            return self.job
        try:
            root = self.project_root()
            out = self.out_edit.text().strip()
            if not out:
                raise ValueError("No export folder: type one or choose it with Folder….")
            target = Path(out).expanduser()
            if not self.overwrite_box.isChecked() and target.is_dir() and any(target.iterdir()):
                # the core's message names the API's overwrite=True / --overwrite; here it is the check box
                raise FileExistsError(f"{target} already exists and is not empty; choose a new folder, or tick "
                                      f"'{self.overwrite_box.text()}' to replace it.")
            self._flush_sessions()
        except (ValueError, OSError) as e:
            self._show_error(e)
            return None
        self.last_error = self.last_result = None
        self._set_running(True)
        self.status.setText("exporting…")
        self.job = run_job(export_project, root, Path(out).expanduser(), **self.options(),
                           on_progress=self._on_progress, on_result=self._exported, on_error=self._show_error,
                           on_cancelled=self._cancelled, on_finished=lambda: self._set_running(False))
        return self.job

    def _flush_sessions(self) -> None:
        # the Review widget autosaves every few seconds: the last strokes must be in the export
        try:
            from . import _sessions
        except ImportError:
            return
        for s in _sessions.sessions(self.viewer):
            s.flush()

    def _run_buttons(self) -> list[Any]:
        return [self.export_btn, self.import_set_btn]

    def _exported(self, path: Path) -> None:
        from napari.utils.notifications import show_info

        self.last_result = path
        self.progress.setValue(self.progress.maximum())
        self.status.setText(f"exported to {path}")
        show_info(f"Exported to {path}")

    def _cancelled(self) -> None:
        self.status.setText("cancelled; nothing was written")

    def _show_error(self, exc: BaseException) -> None:
        from napari.utils.notifications import show_error

        self.last_error = exc
        # a bare OSError (disk full, permission) reads better as its strerror
        msg = exc.strerror if isinstance(exc, OSError) and exc.strerror and not exc.filename else str(exc)
        self.status.setText(f"Error: {msg}")
        show_error(msg)

    # -- import --------------------------------------------------------------------------------------------
    def _choose_geojson(self) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "GeoJSON polygons (e.g. QuPath export)", "",
                                           "GeoJSON (*.geojson *.json)")
        if f:
            self.import_geojson(f)

    def import_geojson(self, path: str | Path) -> Any:
        """Rasterise GeoJSON class polygons into a Labels layer over the chosen image (level-0 coordinates).

        Returns the new layer, or None on error (shown in ``status`` and as a notification).
        """
        try:
            layer = self._import_geojson(Path(path))
        except (ValueError, KeyError, OSError) as e:
            self._show_error(e)
            return None
        self.status.setText(f"imported {Path(path).name} as {layer.name!r}")
        return layer

    def _import_geojson(self, path: Path) -> Any:
        from ..export.vectors import features_bbox, features_to_class_map, feature_class, read_geojson

        schema = self.schema()
        feats = [f for f in read_geojson(path) if feature_class(f, schema) is not None]
        if not feats:
            raise ValueError(f"{path}: no polygon has a class of the {schema.name} schema "
                             f"({', '.join(schema.foreground_names)}).")
        image = self.image_layer()
        scale = np.asarray(image.scale[-2:], float) if image is not None else np.ones(2)
        translate = np.asarray(image.translate[-2:], float) if image is not None else np.zeros(2)
        if image is not None and not image.multiscale:
            shape = image.data.shape[-3:-1] if image.rgb else image.data.shape[-2:]
            origin, ds = (0, 0), 1.0
        else:  # a slide (or no image): the polygons' box, at the finest level that fits in memory
            y0, x0, y1, x1 = features_bbox(feats)  # type: ignore[misc]
            y0, x0 = max(0, y0), max(0, x0)
            downsamples = layer_meta(image).get("downsamples") if image is not None else None
            candidates = downsamples or [float(2**i) for i in range(12)]
            ds = next((d for d in candidates if ((y1 - y0) / d) * ((x1 - x0) / d) <= MAX_IMPORT_PIXELS),
                      candidates[-1])
            origin = (y0, x0)
            shape = (max(1, int(np.ceil((y1 - y0) / ds))), max(1, int(np.ceil((x1 - x0) / ds))))
        cm = features_to_class_map(feats, schema, tuple(shape), origin, ds)
        meta = {"kind": "imported", "source": str(path), "origin": list(origin), "downsample": ds,
                "image": image.name if image is not None else None}
        return self.viewer.add_labels(
            schema.to_labels(cm), scale=scale * ds, translate=translate + np.asarray(origin, float) * scale,
            **labels_layer_kwargs(schema, f"{path.stem} [GeoJSON]", meta=meta))

    def _choose_set(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Exported set (folder with manifest.json)")
        if d:
            self.import_set(d)

    def import_set(self, set_dir: str | Path) -> Job | None:
        """Import an exported set into the project shown above (created when absent), in a worker."""
        from ..export.imports import import_set

        try:
            root = self.project_root()
        except ValueError as e:
            self._show_error(e)
            return None
        self.last_error = self.last_result = None
        self._set_running(True)
        self.job = run_job(import_set, Path(set_dir), root, overwrite=self.overwrite_box.isChecked(),
                           on_progress=self._on_progress, on_result=self._imported, on_error=self._show_error,
                           on_finished=lambda: self._set_running(False))
        return self.job

    def _imported(self, project: Project) -> None:
        self.last_result = project
        self.status.setText(f"imported into {project.root} ({project.counts()['total']} items); reopen the "
                             "image in the Review widget to see them")
