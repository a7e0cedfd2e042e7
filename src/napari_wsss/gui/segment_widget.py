"""Segment dock widget: pick image, method, model version and device; run in a worker; show editable labels."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QPushButton,
    QWidget,
)

from ..events import Progress
from . import _sessions
from ._job_controls import JobControlsMixin, scrolling_layout, with_button, wrapping_label
from ._layers import (
    META_KEY,
    confidence_name,
    drawn_rectangle,
    is_tissue_image,
    labels_layer_kwargs,
    layer_meta,
    level_factors,
    result_geometry,
    rgb_plane,
    same,
    segmentation_name,
)
from ._model_choice import (combo_cards, latest_used_version, list_model_versions, preferred_version,
                            project_classes_index)
from ._segment_job import SEGMENTERS, plane_names, segment_job
from ._worker import Job, run_job

if TYPE_CHECKING:
    import napari

SCOPES = {
    "current tile / image": "current",
    "all tiles in the stack": "all",
    "visible field of view": "view",
    "drawn rectangle (Shapes layer)": "rect",
    "whole image (coarsest level that fits)": "whole",
    "whole slide, full resolution (tiled, saved as zarr)": "slide",
}
MAX_PIXELS = 2048 * 2048  # largest plane segmented in one go from the viewer before issue-8 tiling to zarr


class SegmentWidget(JobControlsMixin, QWidget):
    """Runs a weakly supervised model on the selected image and adds the result as an editable Labels layer."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        from .. import methods  # noqa: F401  (fills the registry)
        from ..device import likely_devices
        from ..models._registry import METHODS

        self.viewer = napari_viewer
        self.job: Job | None = None
        self.last_error: BaseException | None = None
        self._extra_versions: list[tuple[str, Path, str]] = []
        self._preselected_for: tuple[str, str] | None = None  # (image, method) the default was chosen for
        self._choice: tuple[str, str] | None = None  # (version folder, why) preselected (_model_choice)

        self.image_combo = QComboBox()
        self.method_combo = QComboBox()
        self.method_combo.addItems(METHODS.names())
        self.version_combo = QComboBox()
        self.browse_btn = QPushButton("Browse…")
        self.device_combo = QComboBox()
        self.device_combo.addItems(likely_devices())  # no torch import on the Qt thread
        self.scope_combo = QComboBox()
        self.scope_combo.addItems(list(SCOPES))
        self.model_info = wrapping_label()  # the model's classes and what it was trained on (model_summary)
        self.confidence_check = QCheckBox("show confidence")
        self.stain_check = QCheckBox("stain-normalise (Macenko, to the model's training stain)")
        self.segment_btn = QPushButton("Segment")
        self.primary_row = self.segment_btn  # kept on screen when docks stack (_dock_room)
        self._init_job_controls()

        form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("method", self.method_combo)
        form.addRow("model", with_button(self.version_combo, self.browse_btn))
        form.addRow("", self.model_info)
        form.addRow("device", self.device_combo)
        form.addRow("region", self.scope_combo)
        buttons = QHBoxLayout()
        buttons.addWidget(self.segment_btn)
        buttons.addWidget(self.cancel_btn)
        layout = scrolling_layout(self)  # scrolls when the dock is short: docking never grows the window
        layout.addLayout(form)
        layout.addWidget(self.confidence_check)
        layout.addWidget(self.stain_check)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.segment_btn.clicked.connect(self.segment)
        self.cancel_btn.clicked.connect(self.cancel)
        self.browse_btn.clicked.connect(self._browse)
        self.method_combo.currentTextChanged.connect(self._refresh_versions)
        self.confidence_check.toggled.connect(self._toggle_confidence)
        self.viewer.layers.events.inserted.connect(self._refresh_images)
        self.viewer.layers.events.removed.connect(self._refresh_images)
        self.image_combo.currentTextChanged.connect(self._refresh_versions)
        self.version_combo.currentIndexChanged.connect(self._show_model_info)
        self.version_combo.activated.connect(lambda *_: setattr(self, "_picked", self._preselected_for))  # user's pick
        _sessions.SESSION_LISTENERS.append(self._on_sessions_changed)
        self.destroyed.connect(lambda *_: self._on_sessions_changed in _sessions.SESSION_LISTENERS
                               and _sessions.SESSION_LISTENERS.remove(self._on_sessions_changed))
        self._refresh_images()
        if "sshr" in METHODS.names():
            self.method_combo.setCurrentText("sshr")
        self._refresh_versions()

    # -- choices -------------------------------------------------------------------------------------
    def _image_layers(self) -> list[Any]:
        return [ly for ly in self.viewer.layers if is_tissue_image(ly)]

    def _refresh_images(self, *_: Any) -> None:
        current = self.image_combo.currentText()
        names = [ly.name for ly in self._image_layers()]
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)

    def _refresh_versions(self, *_: Any) -> None:
        method = self.method_combo.currentText()
        current = self.version_combo.currentData()
        self.version_combo.clear()
        # shipped versions, then fine-tuned ones kept in open annotation projects, then browsed folders
        versions = list_model_versions() + _sessions.project_model_versions(self.viewer) + self._extra_versions
        listed = set()
        for label, path, m in versions:
            if m == method and Path(path).resolve() not in listed:  # each folder once, however it was reached
                listed.add(Path(path).resolve())
                self.version_combo.addItem(label, str(path))
        if current is not None and self.version_combo.findData(current) >= 0:
            self.version_combo.setCurrentIndex(self.version_combo.findData(current))
        self._preselect_for_image()
        self._prefer_project_classes()
        self._show_model_info()

    def _preselect_for_image(self) -> None:
        """Once per image (and method): preselect the version that made its project's latest predictions, else the
        one that suits the image (``_model_choice``); a later choice of the user's stays. A project that already
        holds classes is otherwise left to ``_prefer_project_classes``."""
        name, method = self.image_combo.currentText(), self.method_combo.currentText()
        if (name, method) == self._preselected_for or not name or name not in self.viewer.layers:
            return
        self._preselected_for, self._choice = (name, method), None
        layer, versions = self.viewer.layers[name], combo_cards(self.version_combo)
        session = _sessions.session_for(self.viewer, layer)
        found = latest_used_version(layer, versions)
        if found is None and (session is None or session.project.schema_default):
            found = preferred_version(layer, versions)
        if found is not None:
            self.version_combo.setCurrentIndex(found[0])
            self._choice = (self.version_combo.itemData(found[0]), found[1])

    def _prefer_project_classes(self) -> None:
        """Move off a version of other classes than the image's project (it could not write there) to one of its
        classes: reopening gland images otherwise offered the demo model listed first, refused on Segment."""
        name = self.image_combo.currentText()
        session = _sessions.session_for(self.viewer, self.viewer.layers[name]) \
            if name and name in self.viewer.layers else None
        if session is None or session.project.schema_default:
            return
        found = project_classes_index(combo_cards(self.version_combo), self.version_combo.currentIndex(),
                                      session.project.schema.names)
        if found is not None:
            self.version_combo.setCurrentIndex(found)

    def _show_model_info(self, *_: Any) -> None:
        from ..models.card import load_card, model_summary

        path = self.version_combo.currentData()
        why = self._choice[1] if self._choice and self._choice[0] == path else ""  # said only while it stands
        try:
            self.model_info.setText(model_summary(load_card(path)) + (f"\n({why})" if why else "") if path else "")
        except (ValueError, FileNotFoundError) as e:
            self.model_info.setText(str(e))

    def _on_sessions_changed(self, viewer: Any) -> None:
        if same(viewer, self.viewer):  # a project opened: its versions are listed now; choose again unless the user did
            if getattr(self, "_picked", None) != self._preselected_for:
                self._preselected_for = None
            self._refresh_versions()

    def add_model_version(self, folder: str | Path) -> str:
        """Make a model version folder selectable and select it (Browse…, a trained or fine-tuned version); returns
        the label it is listed under (a project's version is listed once, as "<name> (project)")."""
        from ..models.card import load_card

        card, folder = load_card(folder), Path(folder)
        self._extra_versions.append((folder.name, folder, card.method))
        self.method_combo.setCurrentText(card.method)
        self._refresh_versions()
        # by folder, not the last row: a project's version is listed (once) before browsed ones
        i = next(i for i in range(self.version_combo.count())
                 if Path(self.version_combo.itemData(i)).resolve() == folder.resolve())
        self.version_combo.setCurrentIndex(i)
        return self.version_combo.itemText(i)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model version folder (card.json + weights.pt)")
        if folder:
            try:
                self.add_model_version(folder)
            except (ValueError, FileNotFoundError) as e:
                self._show_error(e)

    # -- running -------------------------------------------------------------------------------------
    def _selected_layer(self) -> Any:
        from napari.layers import Image

        name = self.image_combo.currentText()
        if not name or name not in self.viewer.layers:
            others = [ly.name for ly in self.viewer.layers if isinstance(ly, Image) and not is_tissue_image(ly)]
            if others and not self._image_layers():
                raise ValueError(f"No colour (RGB) H&E image to segment ({others[0]!r} is not one); open H&E tiles "
                                 "or a slide first (File > Open, or the samples).")
            raise ValueError("No image selected: open H&E tiles or a slide first (File > Open, or the samples).")
        return self.viewer.layers[name]

    def _planes(self, layer: Any, scope: str) -> tuple[list[tuple[Any, Any]], dict[str, Any]]:
        """What to segment: [(key, (H, W, 3) array)] and how to place the result."""
        if not getattr(layer, "rgb", False):
            raise ValueError(f"Layer {layer.name!r} is not an RGB image (shape {tuple(layer.data.shape)}); "
                             "Segment needs colour H&E images.")
        if layer.multiscale:
            return self._slide_planes(layer, scope)
        data = layer.data
        if 0 in data.shape:
            raise ValueError(f"Layer {layer.name!r} holds no pixels (shape {tuple(data.shape)}); open tiles or a "
                             "slide with image data first.")
        rect = drawn_rectangle(self.viewer, layer) if scope == "rect" else \
            self._visible_region(layer) if scope == "view" else None
        crop = (slice(rect[0], rect[2]), slice(rect[1], rect[3])) if rect else ()
        if data.ndim == 3:
            plane = rgb_plane(data)
            return [((), plane[crop] if crop else plane)], {"kind": "single", "shape": data.shape[:2], "rect": rect}
        lead = data.shape[:-3]
        if scope == "all":
            keys = list(np.ndindex(*lead))
        else:
            keys = [tuple(int(s) for s in self.viewer.dims.current_step[: len(lead)])]
        planes = [(k, rgb_plane(data, k)[crop] if crop else rgb_plane(data, k)) for k in keys]
        return planes, {"kind": "stack", "shape": data.shape[:-1], "rect": rect}

    def _slide_planes(self, layer: Any, scope: str) -> tuple[list[tuple[Any, Any]], dict[str, Any]]:
        levels = layer.data
        h0, w0 = levels[0].shape[:2]
        eps = 1e-6  # float noise: 3567 / (3567 / 1783) must stay 1783
        if scope == "view":
            y0, x0, y1, x1 = self._visible_region(layer) or (0, 0, h0, w0)
        elif scope == "rect":
            y0, x0, y1, x1 = drawn_rectangle(self.viewer, layer)
        else:
            y0, x0, y1, x1 = 0, 0, h0, w0
        for level in range(len(levels)):
            fy, fx = level_factors(levels, level)
            if ((y1 - y0) / fy) * ((x1 - x0) / fx) <= MAX_PIXELS:
                break
        else:
            raise ValueError(_too_large(scope, layer.name, y1 - y0, x1 - x0, len(levels)))
        lh, lw = levels[level].shape[:2]
        # whole level pixels covering the region (the last partial one included: it is drawn on screen too)
        ly0, lx0 = int(y0 / fy + eps), int(x0 / fx + eps)
        ly1, lx1 = min(lh, math.ceil(y1 / fy - eps)), min(lw, math.ceil(x1 / fx - eps))
        plane = levels[level][ly0:ly1, lx0:lx1]
        return [((), plane)], {"kind": "slide", "level": level, "downsample": [fy, fx],
                               "origin": (ly0 * fy, lx0 * fx)}

    def _visible_region(self, layer: Any) -> tuple[int, int, int, int] | None:
        """(y0, x0, y1, x1) of ``layer`` (level-0 pixels) on screen; None before the canvas is drawn (then the
        whole image is what the user sees)."""
        from ._view import visible_box

        box = visible_box(self.viewer, layer)
        if box is None:
            return None
        y0, x0, y1, x1 = box
        if y1 - y0 < 16 or x1 - x0 < 16:  # the rectangle's minimum: a model cannot read a few pixels
            raise ValueError(f"The visible field of view shows {max(0, y1 - y0)} x {max(0, x1 - x0)} pixels of "
                             f"{layer.name!r}; pan to the image or zoom out until at least 16 x 16 pixels show.")
        return box

    def segment(self) -> None:
        """Start segmenting (the Segment button)."""
        if self.job is not None and self.job.running:
            return
        try:
            layer = self._selected_layer()
            model_dir = self.version_combo.currentData()
            if not model_dir:
                raise ValueError(f"No model version for method {self.method_combo.currentText()!r}; choose another "
                                 "method or Browse… to a model folder (card.json + weights.pt).")
            if SCOPES[self.scope_combo.currentText()] == "slide":
                self._segment_slide(layer, Path(model_dir))
                return
            planes, placement = self._planes(layer, SCOPES[self.scope_combo.currentText()])
            session = _sessions.session_for(self.viewer, layer)
            if session is not None:  # a model with other classes must not write into a project with user work
                from ..models.card import load_card

                session.check_model(load_card(model_dir))
        except (ValueError, KeyError, FileNotFoundError) as e:
            self._show_error(e)
            return
        self.last_error = None
        self._set_running(True)
        region = None
        if placement["kind"] == "slide":  # a slide region: glass around the slide's tissue is background there
            (fy, fx), (oy, ox), (ph, pw) = placement["downsample"], placement["origin"], planes[0][1].shape[:2]
            y0, x0 = round(oy / fy), round(ox / fx)
            region = (list(layer.data), placement["level"], (y0, x0, y0 + ph, x0 + pw))
        self.job = run_job(
            segment_job, Path(model_dir), self.device_combo.currentText(), planes,
            stain_normalise=self.stain_check.isChecked(), names=plane_names(layer, planes), slide_region=region,
            on_progress=self._on_progress,
            on_result=lambda res: self._on_result(layer, placement, res),
            on_error=self._show_error,
            on_cancelled=lambda: self.status.setText("Cancelled; nothing was changed."),
            on_finished=lambda: self._set_running(False),
        )

    def _segment_slide(self, layer: Any, model_dir: Path, level: int = 0) -> None:
        """Segment a whole slide level into a zarr pyramid beside it; the layer shows blocks as they finish."""
        from ..models.card import load_card
        from ._slide_job import LiveSlideLayer, slide_job, slide_output_path

        if not layer.multiscale:
            raise ValueError(f"Layer {layer.name!r} is not a slide pyramid; use 'whole image' or 'all tiles'.")
        card = load_card(model_dir)
        session = _sessions.session_for(self.viewer, layer)
        if session is not None:  # refused before a minutes-long run, not when its result is about to be shown
            session.check_model(card)
        out = slide_output_path(layer, card.name or model_dir.name, level)
        live = LiveSlideLayer(self.viewer, layer, out, card, level)
        self.last_error = None
        self._set_running(True)

        def progress(p: Progress) -> None:
            self._on_progress(p)
            live.update()

        def done(res: Any) -> None:
            live.finish(True)
            self.last_result_layer = live.layer
            session = _sessions.session_for(self.viewer, layer)
            if session is not None and live.layer is not None:  # Review steps through it at level 0
                from ._slide_regions import start_region_editor

                try:
                    start_region_editor(session, live.layer)
                except (ValueError, OSError) as e:
                    self._show_error(e)
            self.status.setText(f"Slide segmented with {card.name}: {res[1].windows_predicted} windows predicted, "
                                f"{res[1].windows_skipped} glass windows skipped; saved to {out}.")

        def cancelled() -> None:
            live.finish(False)
            self.status.setText(f"Cancelled; the partial result in {out} is marked incomplete.")

        meta = layer_meta(layer)
        source = {k: meta.get(k) for k in ("path", "backend", "vendor", "mpp", "objective")}
        self.job = run_job(slide_job, model_dir, self.device_combo.currentText(), list(layer.data), out, level,
                           SEGMENTERS, mpp=meta.get("mpp"), objective=meta.get("objective"), source=source,
                           on_progress=progress, on_result=done, on_error=self._show_error,
                           on_cancelled=cancelled, on_finished=lambda: self._set_running(False))

    def showEvent(self, event: Any) -> None:  # noqa: N802  (Qt's name)
        super().showEvent(event)
        from ._dock_room import make_room_when_shown
        from ._view import fit_view_when_shown

        fit_view_when_shown(self, self.viewer)
        make_room_when_shown(self)

    def _run_buttons(self) -> list[Any]:
        return [self.segment_btn]

    # -- results -------------------------------------------------------------------------------------
    def _on_result(self, image_layer: Any, placement: dict[str, Any], result: tuple[Any, list, str | None]
                   ) -> None:
        card, planes, stain_warning = result
        schema = card.class_schema
        version = card.name or "model"
        lname = segmentation_name(image_layer.name, version)
        cname = confidence_name(image_layer.name, version)
        kind = placement["kind"]
        rect = placement.get("rect")
        crop = (slice(rect[0], rect[2]), slice(rect[1], rect[3])) if rect else (slice(None),)
        scale, translate = result_geometry(image_layer, placement)
        session = _sessions.session_for(self.viewer, image_layer)
        if session is not None:
            session.flush()  # pending strokes become corrections (and are protected) before anything changes
        if kind in ("stack", "single"):
            shape = placement["shape"]
            reuse = lname in self.viewer.layers and self.viewer.layers[lname].data.shape == tuple(shape)
            labels = np.array(self.viewer.layers[lname].data) if reuse else np.zeros(shape, np.uint8)
            conf = (np.array(self.viewer.layers[cname].data) if cname in self.viewer.layers
                    and self.viewer.layers[cname].data.shape == tuple(shape) else np.zeros(shape, np.float32))
            for key, cm, cf in planes:
                labels[key][crop] = schema.to_labels(cm)
                conf[key][crop] = cf
        else:
            (_, cm, cf), = planes
            labels, conf = schema.to_labels(cm), cf.astype(np.float32)
        note = ""
        units: list = []
        done = len(planes)  # regions given the new prediction (the user's kept ones are not)
        if session is not None:
            units = session.units_for(placement, labels.shape, [k for k, _, _ in planes])
            session.adopted_from = None
            saved, skipped = session.store_prediction(units, labels, card)
            done = len(saved)
            if session.adopted_from is not None:
                note += (f" The project held no work of yours, so it now uses the {schema.name} classes; the "
                         f"{session.adopted_from.name} predictions were kept aside in "
                         f"{session.project.root / 'history'}.")
            if skipped:
                note += (f" Kept {len(skipped)} tile(s) you corrected or accepted ({', '.join(skipped[:3])}"
                        f"{'…' if len(skipped) > 3 else ''}); mark them unreviewed to re-segment them.")
        meta = {"kind": "segmentation", "model": version, "method": card.method, "image": image_layer.name,
                "placement": {k: v for k, v in placement.items() if k not in ("shape", "rect")}}
        if kind == "slide" and lname in self.viewer.layers:  # another view: the earlier one stays, read-only
            from ._slide_views import keep_earlier_view

            keep_earlier_view(self.viewer, self.viewer.layers[lname], scale, translate, labels.shape, session)
        if lname in self.viewer.layers:
            layer = self.viewer.layers[lname]
            layer.data = labels
            layer.scale, layer.translate = scale, translate
            layer.metadata[META_KEY].update(meta)
        else:
            kw = labels_layer_kwargs(schema, lname, meta=meta)
            layer = self.viewer.add_labels(labels, scale=scale, translate=translate, **kw)
        if session is not None:
            session.attach(layer, units if kind == "slide" else None)
        if cname in self.viewer.layers:
            self.viewer.layers[cname].data = conf
            self.viewer.layers[cname].scale, self.viewer.layers[cname].translate = scale, translate
        else:
            self.viewer.add_image(conf, name=cname, colormap="magma", contrast_limits=(0, 1), opacity=0.6,
                                  scale=scale, translate=translate, visible=self.confidence_check.isChecked(),
                                  metadata={META_KEY: {"kind": "confidence", "model": version,
                                                         "image": image_layer.name}})
        layer.refresh()
        self.viewer.layers.selection.active = layer
        what = "region(s)" if rect or kind == "slide" else {"stack": "tile(s)", "single": "image(s)"}[kind]
        self.status.setText(f"{done} {what} segmented with {version}; paint to correct.{note}"
                            + (f" {stain_warning}" if stain_warning else ""))
        self.last_result_layer = layer

    def _toggle_confidence(self, on: bool) -> None:
        for ly in self.viewer.layers:
            if layer_meta(ly).get("kind") == "confidence":
                ly.visible = on


def _too_large(scope: str, name: str, h: int, w: int, n_levels: int) -> str:
    """Why a region cannot be segmented in one go, and a choice that can: each scope has its own way out."""
    at = "" if n_levels == 1 else " even at the coarsest level"
    tiled = "choose the region 'whole slide, full resolution' (tiled, any size)"
    if scope == "view":
        return (f"The visible field of view ({h} x {w} pixels) is too large to segment in one go{at}; zoom in, "
                f"or {tiled}.")
    if scope == "rect":
        return f"The drawn rectangle ({h} x {w} pixels) is too large to segment in one go{at}; draw a smaller one, " \
               f"or {tiled}."
    return (f"{name!r} ({h} x {w} pixels{', one level' if n_levels == 1 else ''}) is too large to segment in one "
            f"go{at}; {tiled}, or zoom in and choose 'visible field of view'.")
