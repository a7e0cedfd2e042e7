"""Train dock widget: pick a data folder, method, backbone and the trainer's options (SegMix, PCM); train in a
worker with progress and Cancel; the new model version then appears in the Segment widget.

The method list comes from ``METHODS`` and the backbones from ``BACKBONES`` (no hard-coded choices); the run
is the method's own ``train`` generator, the same one ``napari-wsss train`` drives.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ..data.folder_schema import schema_of_training_folder
from ..events import Progress
from ._job_controls import JobControlsMixin, scrolling_layout
from ._layers import same
from ._menu import menu_path
from ._train_live import LiveTrainingMixin
from ._worker import Job, run_job

if TYPE_CHECKING:
    import napari

SOURCE_FOLDER, SOURCE_TAGS = "a labelled data folder", "the open project's tags"

# Methods whose trainers are CAM networks with the SegMix / PCM options (their configs have those fields).
CAM_METHODS = ("sshr", "multistage", "cam_sam")


def _train_job(train_fn: Any, data: str, out: str, *, should_stop: Any, paused: Any = None, **options: Any) -> Any:
    """Worker body: the method's ``train`` returns a generator; napari's worker needs a generator function."""
    from ..events import pausable

    return (yield from train_fn(data, out, should_stop=pausable(should_stop, paused), **options))


def _tags_job(project_root: str, method: str, name: str | None, *, should_stop: Any, **options: Any) -> Any:
    """Worker body: train ``method`` on the tags of the annotation project at ``project_root``."""
    from ..tagging.train import train_from_tags

    return (yield from train_from_tags(project_root, method, name, should_stop=should_stop, **options))


def _patches_job(source: str, out: str, schema: Any, *, should_stop: Any, **options: Any) -> Any:
    """Worker body: ``export.patches.make_patches`` (images + masks -> patches with image-level labels)."""
    from ..export.patches import make_patches

    return (yield from make_patches(source, out, schema, should_stop=should_stop, **options))


def schema_of_masks(folder: str | Path, current: str, n: int = 12) -> str | None:
    """The classes box's choice for an images/ + masks/ folder: ``current`` when its schema reads the masks, else the
    first preset that does, as the viewer's reader picks a folder's ground truth (GlaS' 0/255 are not LUAD's
    indices). Reads the first ``n`` masks (a GlaS mask of no gland is all 0, a valid LUAD map). None: not such a
    folder, or no schema fits (``make_patches`` then says what is wrong)."""
    from ..classes import PRESETS, load_schema
    from ..data.tiles import find_mask_layout, list_mask_pairs, read_mask

    try:
        if find_mask_layout(folder) is None:
            return None
        masks = [p.mask for p in list_mask_pairs(folder)[:n]]
        choices = [(current, load_schema(current))] if current else []
    except (ValueError, KeyError, OSError):
        return None
    for name, schema in (*choices, *PRESETS.items()):
        try:
            for m in masks:
                read_mask(m, schema)
        except ValueError:
            continue
        return name
    return None


def _folder_row(edit: QLineEdit, button: QPushButton) -> QHBoxLayout:
    row = QHBoxLayout()
    row.addWidget(edit, 1)
    row.addWidget(button)
    return row


class TrainWidget(LiveTrainingMixin, JobControlsMixin, QWidget):
    """Train a registered method on a LUAD-HistoSeg style folder and write a new model version."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        from .. import methods  # noqa: F401  (fills the registry)
        from ..device import likely_devices
        from ..models import backbones  # noqa: F401  (fills BACKBONES)
        from ..models._registry import BACKBONES, METHODS

        self.viewer = napari_viewer
        self.job: Job | None = None
        self.last_error: BaseException | None = None
        self.last_result: Path | None = None

        self.data_edit = QLineEdit()
        self.data_edit.setPlaceholderText("dataset root (training/, val/, test/) or a folder of labelled tiles")
        self.data_btn = QPushButton("Data…")
        self.schema_combo = QComboBox()  # presets, or a schema file typed or browsed (docs/class-schemas.md)
        self.schema_combo.setEditable(True)
        from ..classes import PRESETS

        self.schema_combo.addItems(list(PRESETS))
        self.schema_btn = QPushButton("File…")
        self.src_edit = QLineEdit()  # real images with masks -> a patch set (napari-wsss patches)
        self.src_edit.setPlaceholderText("images/ + masks/ (e.g. GlaS) to cut into patches with image-level labels")
        self.src_btn = QPushButton("Images…")
        self.patch_size_spin = QSpinBox()
        self.patch_size_spin.setRange(16, 2048)
        self.patch_size_spin.setValue(56)
        self.patch_stride_spin = QSpinBox()
        self.patch_stride_spin.setRange(0, 2048)
        self.patch_stride_spin.setSpecialValueText("= size")
        self.val_spin = QDoubleSpinBox()
        self.val_spin.setRange(0.0, 0.9)
        self.val_spin.setSingleStep(0.05)
        self.val_spin.setValue(0.2)
        self.patches_btn = QPushButton("Make patch set")
        self.patch_box = QGroupBox("From images with masks (labels derived per patch; split by image)")
        pform = QFormLayout(self.patch_box)
        pform.addRow("images", _folder_row(self.src_edit, self.src_btn))
        pform.addRow("patch size (px)", self.patch_size_spin)
        pform.addRow("stride (px)", self.patch_stride_spin)
        pform.addRow("validation share (by image)", self.val_spin)
        pform.addRow(self.patches_btn)
        self.patch_note = QLabel("")  # outside the box: a disabled box greys its own text
        self.patch_note.setWordWrap(True)
        self.patch_note.setVisible(False)
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("new model version folder, e.g. models/my-sshr")
        self.out_btn = QPushButton("Output…")
        self.method_combo = QComboBox()
        for name in METHODS.names():
            if METHODS.get(name).train is not None:
                self.method_combo.addItem(name)
        self.backbone_combo = QComboBox()
        self.backbone_combo.addItems(BACKBONES.names())
        self.device_combo = QComboBox()
        self.device_combo.addItems(likely_devices())  # no torch import on the Qt thread
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 1000)
        self.epochs_spin.setValue(10)
        self.size_spin = QSpinBox()
        self.size_spin.setRange(32, 1024)
        self.size_spin.setSingleStep(16)
        self.size_spin.setValue(112)
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 256)
        self.batch_spin.setValue(16)
        self.pretrained_check = QCheckBox("ImageNet weights (resnet; downloaded once into torch's cache)")
        self.hed_spin = QDoubleSpinBox()  # Tellez HED jitter: scale and shift alike (the CLI sets them apart)
        self.hed_spin.setRange(0.0, 0.5)
        self.hed_spin.setSingleStep(0.05)
        self.hed_spin.setSpecialValueText("off")
        self.hed_spin.setToolTip("H&E stain jitter while training (0.05 light, 0.2 strong): a model that copes "
                                 "with other labs' staining")

        self.segmix_check = QCheckBox("SegMix (shuffle grid cells across the batch)")
        self.patch_spin = QSpinBox()
        self.patch_spin.setRange(0, 1024)
        self.patch_spin.setSpecialValueText("auto (input / 2)")
        self.ratio_spin = QDoubleSpinBox()
        self.ratio_spin.setRange(0.0, 1.0)
        self.ratio_spin.setSingleStep(0.05)
        self.ratio_spin.setValue(0.25)
        self.patience_spin = QSpinBox()
        self.patience_spin.setRange(1, 100)
        self.patience_spin.setValue(3)
        self.pcm_check = QCheckBox("pixel correlation module (PCM)")
        self.cam_box = QGroupBox("CAM training options")
        cam_form = QFormLayout(self.cam_box)
        cam_form.addRow(self.segmix_check)
        cam_form.addRow("first patch (px)", self.patch_spin)
        cam_form.addRow("first shuffle ratio", self.ratio_spin)
        cam_form.addRow("plateau patience", self.patience_spin)
        cam_form.addRow(self.pcm_check)

        self.source_combo = QComboBox()  # where the labels come from
        self.source_combo.addItems([SOURCE_FOLDER, SOURCE_TAGS])
        self.project_combo = QComboBox()  # the viewer's open annotation projects (Tag / Review widgets)
        self.corrections_check = QCheckBox("then fine-tune on the project's corrections (pixel supervision)")
        self.train_btn = QPushButton("Train")
        self.primary_row = self.train_btn  # kept on screen when docks stack (_dock_room)
        self._init_job_controls()
        self._init_live()

        form = QFormLayout()
        form.addRow("labels from", self.source_combo)
        form.addRow("project", self.project_combo)
        form.addRow(self.corrections_check)
        form.addRow("data", _folder_row(self.data_edit, self.data_btn))
        form.addRow("classes", _folder_row(self.schema_combo, self.schema_btn))
        form.addRow("method", self.method_combo)
        form.addRow("backbone", self.backbone_combo)
        form.addRow(self.pretrained_check)
        form.addRow("epochs", self.epochs_spin)
        form.addRow("input size (px)", self.size_spin)
        form.addRow("batch size", self.batch_spin)
        form.addRow("stain jitter (H&E)", self.hed_spin)
        form.addRow("device", self.device_combo)
        form.addRow("output", _folder_row(self.out_edit, self.out_btn))
        buttons = QHBoxLayout()
        buttons.addWidget(self.train_btn)
        buttons.addWidget(self.pause_btn)
        buttons.addWidget(self.cancel_btn)
        layout = scrolling_layout(self)  # scrolls when the dock is short: docking never grows the window
        layout.addWidget(self.patch_box)
        layout.addWidget(self.patch_note)
        layout.addLayout(form)
        layout.addWidget(self.cam_box)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.plot)
        layout.addStretch(1)

        self.segmix_check.toggled.connect(self._sync_enabled)
        self.method_combo.currentTextChanged.connect(self._sync_enabled)
        self.backbone_combo.currentTextChanged.connect(self._sync_enabled)
        self.data_btn.clicked.connect(lambda: self._pick(self.data_edit, "Training data folder"))
        self.out_btn.clicked.connect(lambda: self._pick(self.out_edit, "Folder to hold the new model version",
                                                        parent=True))
        self.train_btn.clicked.connect(self.train)
        self.patches_btn.clicked.connect(self.make_patches)
        self.src_btn.clicked.connect(lambda: self._pick(self.src_edit, "Folder with images/ and masks/"))
        self.schema_btn.clicked.connect(self._pick_schema)
        self.data_edit.textChanged.connect(self._schema_from_data)
        self.src_edit.textChanged.connect(self._schema_from_masks)
        self.cancel_btn.clicked.connect(self.cancel)
        self.source_combo.currentTextChanged.connect(self._sync_source)
        if "sshr" in METHODS.names():
            self.method_combo.setCurrentText("sshr")
        self._sync_enabled()
        self._sync_source()

    def showEvent(self, event: Any) -> None:  # noqa: N802  (Qt's name)
        super().showEvent(event)
        from ._dock_room import make_room_when_shown

        make_room_when_shown(self)

    # -- options -------------------------------------------------------------------------------------
    def _sync_enabled(self, *_: Any) -> None:
        cam = self.method_combo.currentText() in CAM_METHODS
        self.cam_box.setEnabled(cam)
        self.pretrained_check.setEnabled(self.backbone_combo.currentText().startswith("resnet"))
        for w in (self.patch_spin, self.ratio_spin, self.patience_spin):
            w.setEnabled(cam and self.segmix_check.isChecked())

    def _pick(self, edit: QLineEdit, title: str, parent: bool = False) -> None:
        folder = QFileDialog.getExistingDirectory(self, title)
        if folder:
            edit.setText(str(Path(folder) / f"{self.method_combo.currentText()}-new") if parent else folder)

    def _pick_schema(self) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "Class schema file", "", "Class schema (*.json *.toml)")
        if f:
            self.schema_combo.setCurrentText(f)

    def _schema_from_data(self, folder: str) -> None:
        """A training folder that names its classes (patch set, exported set, tag set) chooses them, and says so:
        an exported gland set trained with the default LUAD classes failed on its file names."""
        found = schema_of_training_folder(folder.strip()) if folder.strip() else None
        if found is not None:
            self.schema_combo.setCurrentText(found[0])
            self.status.setText(f"Classes set to {found[0]}, as {found[1]} says.")

    def _schema_from_masks(self, folder: str) -> None:
        """Images with masks choose the classes their mask values fit, and say so: a GlaS folder (0/255) left on
        the LUAD default failed with 'values [255] are outside the LUAD-HistoSeg schema'."""
        current = self.schema_combo.currentText().strip()
        found = schema_of_masks(folder.strip(), current) if folder.strip() else None
        if found is not None and found != current:
            self.schema_combo.setCurrentText(found)
            self.status.setText(f"Classes set to {found}: the masks' values in {Path(folder.strip()).name} fit them.")

    def make_patches(self) -> None:
        """Cut the chosen images with masks into a patch training set beside them, then use it as the data."""
        if self.job is not None and self.job.running:
            return
        try:
            from ..classes import load_schema

            src = Path(self.src_edit.text().strip())
            if not self.src_edit.text().strip() or not src.is_dir():
                raise ValueError(f"Images folder {str(src)!r} does not exist; choose a folder with images/ and "
                                 "masks/ (the GlaS layout) or img/ and mask/.")
            schema = load_schema(self.schema_combo.currentText().strip())
            size = self.patch_size_spin.value()
            out = src.parent / f"{src.name}-patches{size}"
            if out.exists() and any(out.iterdir()):
                raise ValueError(f"{out} already exists: use it as the data folder, or move it away to make it "
                                 "again.")
        except (ValueError, KeyError, FileNotFoundError) as e:
            self._show_error(e)
            return
        self.last_error = None
        self._set_running(True)
        stride = self.patch_stride_spin.value() or size
        self.job = run_job(
            _patches_job, str(src), str(out), schema, size=size, stride=stride, val_fraction=self.val_spin.value(),
            command=f"napari Train widget: patches {src} size={size} stride={stride}",
            on_progress=self._on_progress, on_error=self._show_error,
            on_result=lambda folder: (self.data_edit.setText(str(folder)),
                                      self.status.setText(f"Patch set written to {folder}; it is the data folder "
                                                          "now. Choose the method and Train.")),
            on_cancelled=lambda: self.status.setText("Cancelled; no patch set was written."),
            on_finished=lambda: self._set_running(False))

    def options(self) -> dict[str, Any]:
        """The trainer's keyword options from the widget's fields."""
        opts: dict[str, Any] = {"backbone": self.backbone_combo.currentText(), "epochs": self.epochs_spin.value(),
                                "schema": self.schema_combo.currentText().strip() or "luad",
                                "input_size": self.size_spin.value(), "batch_size": self.batch_spin.value(),
                                "device": self.device_combo.currentText()}
        if self.pretrained_check.isChecked() and self.pretrained_check.isEnabled():
            opts["pretrained"] = True  # unchecked: "auto" (cached weights only, nothing downloads)
        if self.hed_spin.value() > 0:
            opts.update(hed_scale=self.hed_spin.value(), hed_shift=self.hed_spin.value())
        if self.method_combo.currentText() in CAM_METHODS:
            if self.segmix_check.isChecked():
                opts.update(segmix=True, segmix_patch=self.patch_spin.value(), segmix_ratio=self.ratio_spin.value(),
                            segmix_patience=self.patience_spin.value())
            if self.pcm_check.isChecked():
                opts["pcm"] = True
        return opts

    # -- running -------------------------------------------------------------------------------------
    def train(self) -> None:
        """Start training (the Train button)."""
        from ..models._registry import METHODS

        if self.job is not None and self.job.running:
            return
        if self.source_combo.currentText() == SOURCE_TAGS:
            self._train_from_tags()
            return
        try:
            data, out = self.data_edit.text().strip(), self.out_edit.text().strip()
            if not data or not Path(data).is_dir():
                raise ValueError(f"Training data folder {data!r} does not exist; choose the dataset root (with "
                                 "training/) or a folder of tiles whose names carry their labels.")
            if not out:
                raise ValueError("No output folder: give a new model version folder, e.g. models/my-sshr.")
            if Path(out).exists() and any(Path(out).iterdir()):
                raise ValueError(f"{out} already exists; choose a new model name (each training run is a new "
                                 "version).")
            spec = METHODS.get(self.method_combo.currentText())
            options = self.options()
        except (ValueError, KeyError) as e:
            self._show_error(e)
            return
        self.last_error = None
        self._reset_live()
        self._set_running(True)
        self.job = run_job(
            _train_job, spec.train, data, out, paused=self.paused, command=f"napari Train widget: {spec.name} {options}",
            on_progress=self._on_progress, on_result=self._on_result, on_error=self._show_error,
            on_cancelled=lambda: self.status.setText("Cancelled; the last epoch checkpoint is kept beside the "
                                                     "output folder (napari-wsss train --resume continues it)."),
            on_finished=lambda: self._set_running(False), **options,
        )

    def _run_buttons(self) -> list[Any]:
        return [self.train_btn, self.patches_btn]

    def _progress_text(self, p: Progress) -> str:
        extra = ""
        if "loss" in p.metrics:
            extra = f" loss {p.metrics['loss']:.3f}"
        if "segmix_patch" in p.metrics:
            extra += f", SegMix patch {p.metrics['segmix_patch']:.0f} px ratio {p.metrics['segmix_ratio']:.2f}"
        return p.desc + extra + self._live_point(p)

    def _on_result(self, out_dir: Any) -> None:
        from ._model_choice import where_segment_lists

        self.last_result = Path(out_dir)
        labels = [seg.add_model_version(self.last_result) for seg in self._segment_widgets()]
        self.status.setText(f"Trained model version {self.last_result}; "
                            f"{where_segment_lists(self.viewer, self.last_result, labels)}.")

    def _segment_widgets(self) -> list[Any]:
        """Segment widgets of this viewer (docked or not)."""
        from qtpy.QtWidgets import QApplication

        from .segment_widget import SegmentWidget

        return [w for w in QApplication.allWidgets() if isinstance(w, SegmentWidget) and same(w.viewer, self.viewer)]

    # -- from the open project's tags ------------------------------------------------------------------
    def _sync_source(self, *_: Any) -> None:
        tags = self.source_combo.currentText() == SOURCE_TAGS
        if tags:
            self._refresh_projects()
        for w in (self.project_combo, self.corrections_check):
            w.setEnabled(tags)
        why = "Greyed out while labels come from the project's tags." if tags else ""
        for w in (self.data_edit, self.data_btn, self.schema_combo, self.schema_btn, self.patch_box):
            w.setEnabled(not tags)
            w.setToolTip(why)  # a greyed row says why when pointed at
        self.patch_note.setText(why)
        self.patch_note.setVisible(tags)
        self.out_edit.setPlaceholderText("version name in the project's models/ (default <method>-tags<n>)" if tags
                                         else "new model version folder, e.g. models/my-sshr")

    def _refresh_projects(self) -> None:
        from . import _sessions

        current = self.project_combo.currentData()
        self.project_combo.clear()
        for sess in _sessions.sessions(self.viewer):
            n = len(sess.project.tags())  # the classes too: the greyed 'classes' row is the folder source's
            self.project_combo.addItem(f"{sess.project.root.name} ({n} tagged, classes "
                                       f"{', '.join(sess.project.schema.foreground_names)})", str(sess.project.root))
        i = self.project_combo.findData(current)
        if i >= 0:
            self.project_combo.setCurrentIndex(i)

    def _train_from_tags(self) -> None:
        """Train on the chosen project's tags; the version lands in its models/ and in the Segment widget."""
        from ..models._registry import METHODS

        try:
            self._refresh_projects()
            root = self.project_combo.currentData()
            if not root:
                raise ValueError("No annotation project is open: open tiles or a slide and tag them in the Tag "
                                 f"widget ({menu_path('Tag')}) first.")
            name = self.out_edit.text().strip() or None
            if name is not None and (Path(name).name != name):
                raise ValueError(f"{name!r}: give the new version's name (it goes into the project's models/), "
                                 "not a path.")
            spec = METHODS.get(self.method_combo.currentText())
            options = {k: v for k, v in self.options().items() if k != "schema"}
        except (ValueError, KeyError) as e:
            self._show_error(e)
            return
        self.last_error = None
        self._reset_live()
        self._set_running(True)
        self.job = run_job(
            _tags_job, root, spec.name, name, with_corrections=self.corrections_check.isChecked(), paused=self.paused,
            command=f"napari Train widget: {spec.name} from the tags of {root} {options}",
            on_progress=self._on_progress, on_result=self._on_result, on_error=self._show_error,
            on_cancelled=lambda: self.status.setText("Cancelled; no model version was written (the tagged "
                                                     "training set stays in the project's training_sets/)."),
            on_finished=lambda: self._set_running(False), **options)
