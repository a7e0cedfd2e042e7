"""Review & correct dock widget: class palette, brush, tile/region navigation, per-tile status, autosave.

Opening the widget opens the annotation project of the chosen image (``<folder>.wsss/`` beside the data, see
``store.py``) and restores saved corrections. Every brush stroke is saved within ``AUTOSAVE_MS``, on tile
change and when the widget closes. Keys 1..9 pick a class while the segmentation layer is active (they replace
napari's Labels mode keys 1..7 on that layer only; the letter shortcuts E, P, F, L, Z still switch modes).
"""

from __future__ import annotations

import re
import weakref
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ..store import STATUSES
from . import _sessions
from ._layers import camera as _camera
from ._layers import image_source, same, status_text
from ._project_session import ProjectSession
from ._project_units import slide_units
from ._job_controls import scrolling_layout
from ._menu import menu_path
from ._review_order import ReviewOrder
from ._slide_regions import editor_for, start_region_editor

if TYPE_CHECKING:
    import napari

NOTHING_YET = "Nothing to correct yet"
DEFAULT_BRUSH = 10  # px: a gland or a necrotic patch in a 224-px tile is 10-40 px across


def _text_colour(rgb: tuple[int, int, int]) -> str:
    return "black" if 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 140 else "white"


class ReviewWidget(QWidget):
    """Review predictions tile by tile (or region by region on a slide), correct them, mark them accepted."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.session: ProjectSession | None = None
        self.last_error: BaseException | None = None
        self.palette_buttons: list[QPushButton] = []
        self._bound_layer: Any = None

        self.image_combo = QComboBox()
        self.project_label = QLabel("no project")
        self.project_label.setWordWrap(True)
        self.project_btn = QPushButton("Use another project folder…")
        self.project_btn.setToolTip("Keep this image's corrections in another folder (a new project, or one made "
                                    "before); the current project stays as it is.")
        self.palette_box = QGridLayout()
        self.brush_spin = QSpinBox()
        self.brush_spin.setRange(1, 200)
        self.brush_spin.setValue(DEFAULT_BRUSH)
        self.prev_btn = QPushButton("◀ Previous")
        self.next_btn = QPushButton("Next ▶")
        self.position_label = QLabel("")
        self.status_label = QLabel("")
        self.accept_btn = QPushButton("Accept")
        self.primary_row = self.accept_btn  # kept on screen when docks stack (_dock_room)
        self.accept_next_btn = QPushButton("Accept && next")
        self.unreview_btn = QPushButton("Mark unreviewed")
        self.counts_label = QLabel("")
        self.save_label = QLabel("")
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.order_box = ReviewOrder(self)  # "next most useful": unreviewed tiles ordered by the model

        form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("project", self.project_label)
        form.addRow("", self.project_btn)
        form.addRow("brush size", self.brush_spin)
        nav = QHBoxLayout()
        nav.addWidget(self.prev_btn)
        nav.addWidget(self.position_label, 1)
        nav.addWidget(self.next_btn)
        status_row = QHBoxLayout()
        status_row.addWidget(self.accept_btn)
        status_row.addWidget(self.accept_next_btn)
        status_row.addWidget(self.unreview_btn)
        layout = scrolling_layout(self)  # scrolls when the dock is short: Segment above keeps its button
        layout.addLayout(form)
        layout.addWidget(QLabel("class (keys 1-9 on the segmentation layer)"))
        layout.addLayout(self.palette_box)
        layout.addLayout(nav)
        layout.addWidget(self.status_label)
        layout.addLayout(status_row)
        layout.addWidget(self.counts_label)
        layout.addWidget(self.save_label)
        layout.addWidget(self.order_box)
        layout.addWidget(self.message)
        layout.addStretch(1)

        self.project_btn.clicked.connect(self._browse_project)
        self.prev_btn.clicked.connect(lambda: self.go(-1))
        self.next_btn.clicked.connect(lambda: self.go(+1))
        self.accept_btn.clicked.connect(lambda: self.set_status("accepted"))
        self.accept_next_btn.clicked.connect(self._accept_next)
        self.unreview_btn.clicked.connect(lambda: self.set_status("unreviewed"))
        self.brush_spin.valueChanged.connect(self._set_brush)
        self.image_combo.currentTextChanged.connect(self._open_current)
        self.viewer.layers.events.inserted.connect(self._on_layers_changed)
        self.viewer.layers.events.removed.connect(self._on_layers_changed)
        self.viewer.dims.events.current_step.connect(self._refresh_position)
        _camera(self.viewer).events.center.connect(self._refresh_position)
        # the viewer may close without closing its docks: save and release the sessions when this widget goes
        self.destroyed.connect(partial(_sessions.close_sessions, napari_viewer))
        # a whole-slide region editor started by the Segment widget announces itself through the listeners
        listener = partial(_review_refresh, weakref.ref(self))
        _sessions.SESSION_LISTENERS.append(listener)
        self.destroyed.connect(lambda *_: listener in _sessions.SESSION_LISTENERS
                               and _sessions.SESSION_LISTENERS.remove(listener))
        self._refresh_images()
        self._open_current()

    # -- which image -------------------------------------------------------------------------------------
    def showEvent(self, event: Any) -> None:  # noqa: N802  (Qt's name)
        super().showEvent(event)
        from ._dock_room import make_room_when_shown
        from ._view import fit_view_when_shown

        fit_view_when_shown(self, self.viewer)
        make_room_when_shown(self)
        from ._dock_room import follow_tab

        follow_tab(self, lambda visible: visible or self.flush())  # its tab left: save, as hiding does

    def _image_layers(self) -> list[Any]:
        from napari.layers import Image

        return [ly for ly in self.viewer.layers if isinstance(ly, Image) and image_source(ly) is not None]

    def _refresh_images(self) -> None:
        current = self.image_combo.currentText()
        names = [ly.name for ly in self._image_layers()]
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)
        self.image_combo.blockSignals(False)

    def _on_layers_changed(self, event: Any = None) -> None:
        self._refresh_images()
        if self.session is None or self.session.image_layer not in self.viewer.layers:
            self.session = None
            self._open_current()
            return
        if self.session.labels is None:  # a segmentation of our image appeared: track it
            from ._layers import is_segmentation_of, layer_meta

            # a whole-slide zarr pyramid is not painted itself: its level-0 tissue regions are edited one at a time
            segs = [ly for ly in self.viewer.layers
                    if is_segmentation_of(ly, self.session.image_layer.name) and not ly.multiscale]
            full = [ly for ly in self.viewer.layers if is_segmentation_of(ly, self.session.image_layer.name)
                    and layer_meta(ly).get("placement", {}).get("kind") == "slide_full"
                    and layer_meta(ly).get("complete")]
            if full:
                try:
                    start_region_editor(self.session, full[-1])
                except (ValueError, OSError) as e:
                    self._error(e)
            elif segs:
                units = None
                if self.session.kind == "slide":
                    units = slide_units(layer_meta(segs[-1])["placement"], segs[-1].data.shape)
                self.session.attach(segs[-1], units)
        self._sync_layer()

    def _open_current(self, *_: Any) -> None:
        name = self.image_combo.currentText()
        if not name or name not in self.viewer.layers:
            self._show_session()
            return
        try:
            self.session = _sessions.open_session(self.viewer, self.viewer.layers[name])
        except (ValueError, KeyError, OSError) as e:
            self._error(e)
            return
        if self._saved not in self.session.on_saved:
            self.session.on_saved.append(self._saved)
        took = self._take_model_classes()
        self._show_session()
        note = "\n".join(m for m in (took, _sessions.location_note(self.session)) if m)
        if note:
            self.message.setText(note)

    def _take_model_classes(self) -> str | None:
        """A new, empty project takes the classes of the model Segment uses (or would preselect) for the image, as
        Segment's first run would: docked first on colon images, Review offered the LUAD demo's palette. Returns
        the line that says so, None when nothing changed."""
        from ._model_choice import adopt_model_classes

        if self.session is None:
            return None
        try:
            took = adopt_model_classes(self.session, self.order_box.preferred_model())
        except (ValueError, OSError) as e:
            self._error(e)
            return None
        return took and took + "."

    def _browse_project(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        folder = QFileDialog.getExistingDirectory(self, "Project folder for this image (empty, or a project)")
        if folder:
            self.use_project_folder(folder)

    def use_project_folder(self, folder: str | Path) -> None:
        """Keep the chosen image's project in ``folder`` from now on ('Use another project folder…'; see
        ``_sessions.move_project``)."""
        name = self.image_combo.currentText()
        try:
            if not name or name not in self.viewer.layers:
                raise ValueError("No image to keep a project for: open tiles, an image or a slide with File > Open "
                                 "first.")
            old, new = _sessions.move_project(self.viewer, self.viewer.layers[name], folder)
            self.session = None
        except (ValueError, OSError) as e:
            self._error(e)
            return
        self._open_current()
        if self.session is not None:
            self.message.setText(f"This image's project is now {new}; the earlier one stays in {old}.")

    def _show_session(self) -> None:
        s = self.session
        from ._layers import reopen_hint

        self.project_label.setText(str(s.project.root) if s else
                                   f"no project ({reopen_hint(self.viewer) or 'open tiles or a slide from a file'})")
        self._build_palette()
        self._sync_layer()
        self._refresh_position()
        self.order_box.refresh()

    # -- palette and brush ---------------------------------------------------------------------------------
    def _build_palette(self) -> None:
        schema = self.session.schema if self.session is not None else None
        names = [c.name for c in schema.classes] if schema is not None else None
        if names is not None and names == getattr(self, "_palette_names", None) and self.palette_buttons:
            return  # same classes: keep the buttons (rebuilding them is what left a stale "5: BG" on screen)
        for b in self.palette_buttons:
            self.palette_box.removeWidget(b)
            b.hide()  # gone from the screen now, not at the next deferred delete
            b.setParent(None)
            b.deleteLater()
        self.palette_buttons = []
        self._palette_names = names
        if schema is None:
            return
        entries = [(c.index + 1, c) for c in schema.foreground] + [(0, schema.classes[-1])]
        for n, (label, c) in enumerate(entries):
            key = f"{n + 1}: " if n < 9 else ""
            btn = QPushButton(f"{key}{c.name}")
            btn.setToolTip(f"{c.description} (label {label})" + (" — erases the prediction" if label == 0 else ""))
            r, g, b = c.colour
            btn.setStyleSheet(f"background-color: rgb({r},{g},{b}); color: {_text_colour(c.colour)};")
            btn.setCheckable(True)
            btn.clicked.connect(partial(self.select_label, label))
            self.palette_box.addWidget(btn, n // 3, n % 3)
            self.palette_buttons.append(btn)

    def _palette_labels(self) -> list[int]:
        if self.session is None:
            return []
        return [c.index + 1 for c in self.session.schema.foreground] + [0]

    def select_label(self, label: int, *_: Any) -> None:
        """Palette click / key: paint with ``label`` (napari label value; 0 = background) in paint mode."""
        layer = self.labels_layer
        if layer is None:
            self._error(ValueError(f"{NOTHING_YET}: segment the image first ({menu_path('Segment')})."))
            return
        layer.selected_label = label
        layer.brush_size = self.brush_spin.value()
        layer.mode = "paint"
        self.viewer.layers.selection.active = layer
        for btn, lab in zip(self.palette_buttons, self._palette_labels()):
            btn.setChecked(lab == label)

    def _set_brush(self, size: int) -> None:
        if self.labels_layer is not None:
            self.labels_layer.brush_size = size

    @property
    def labels_layer(self) -> Any:
        return self.session.labels if self.session is not None else None

    def _sync_layer(self) -> None:
        """Bind keys 1..9 and the brush default on the tracked segmentation layer (once per layer)."""
        layer = self.labels_layer
        if layer is None or layer is self._bound_layer:
            return
        for n, label in enumerate(self._palette_labels()[:9]):
            layer.bind_key(str(n + 1), self._key_select(label), overwrite=True)
        layer.brush_size = self.brush_spin.value()
        self._bound_layer = layer
        layer.events.mode.connect(self._say_class_keys)  # after napari's own help for the mode
        self._say_class_keys()
        if self.message.text().startswith(f"Error: {NOTHING_YET}"):
            self.message.setText("")  # said before a segmentation existed; one is here now
        self._refresh_position()

    def _say_class_keys(self, *_: Any) -> None:
        """napari's status bar lists the number keys as its Labels tools ("use <1> for activate the label eraser");
        on the tracked layer they pick classes (walk-through), so its help says that instead."""
        layer = self._bound_layer
        if layer is None or self.session is None:
            return
        n = min(9, len(self._palette_labels()))
        layer.help = f"keys 1-{n} pick a class (Review & correct palette); {napari_tool_letters()}"
        if self.viewer.layers.selection.active is not None and same(self.viewer.layers.selection.active, layer):
            self.viewer.help = layer.help

    def _key_select(self, label: int) -> Any:
        """The key's callback: a named function, as napari's key handler reads every bound callback's
        ``__name__`` on each key press (a ``functools.partial`` there made any key on the layer crash napari)."""

        def pick_class(layer: Any) -> None:
            self.select_label(label)

        pick_class.__name__ = f"pick_class_{label}"
        return pick_class

    # -- navigation ----------------------------------------------------------------------------------------
    def current_index(self) -> int | None:
        s = self.session
        if s is not None and editor_for(s) is not None and editor_for(s).index is not None:
            return 0  # the region on screen is the session's one unit
        return s.unit_index_at() if s is not None else None

    def go(self, delta: int) -> None:
        """Previous (-1) / next (+1) tile of a stack or region of a slide."""
        s = self.session
        if s is None or not s.units:
            return
        i = self.current_index()
        i = 0 if i is None else (i + delta) % len(s.units)
        s.flush()
        editor = editor_for(s)
        if editor is not None and editor.regions:  # a whole slide at full resolution: the next tissue region
            try:
                editor.show((editor.index or 0) + delta if editor.index is not None else 0)
            except (ValueError, OSError) as e:
                self._error(e)
                return
            self._sync_layer()
            i = 0
        self.show_unit(i)

    def show_unit(self, i: int) -> None:
        """Bring unit ``i`` of the session on screen (a stack's plane, or a slide region centred and fitted)."""
        s = self.session
        if s.kind == "tiles":
            self.viewer.dims.set_current_step(0, s.units[i].index[0])
        elif s.kind == "slide" and s.labels is not None:
            (ya, yb), (xa, xb) = s.units[i].bbox()[-2:]
            corners = s.labels.data_to_world([ya, xa]), s.labels.data_to_world([yb, xb])
            (wy0, wx0), (wy1, wx1) = (tuple(c[-2:]) for c in corners)
            _camera(self.viewer).center = ((wy0 + wy1) / 2, (wx0 + wx1) / 2)
            h, w = self.viewer.canvas.size  # public canvas model (height, width); no private Qt viewer
            _camera(self.viewer).zoom = 0.9 * min(h / max(wy1 - wy0, 1), w / max(wx1 - wx0, 1))
        self._refresh_position()

    def _accept_next(self) -> None:
        self.set_status("accepted")
        self.go(+1)

    # -- status ------------------------------------------------------------------------------------------
    def set_status(self, status: str) -> None:
        """Mark the tile/region on screen ``accepted`` or ``unreviewed`` (or ``corrected``)."""
        s = self.session
        i = self.current_index()
        if s is None or i is None:
            self._error(ValueError("No tile or region on screen to mark; open tiles or a slide and segment it."))
            return
        if status not in STATUSES:
            raise ValueError(f"Unknown status {status!r}; expected one of {STATUSES}.")
        s.flush()
        key = s.units[i].key
        if status == "accepted" and key in s.project and s.project.item(key).status == "corrected":
            # "Accept" on a tile the user painted means done with it, as corrected: marking it accepted hid which
            # tiles were corrected ("1 corrected" became "0 corrected, 1 accepted", and so in the export manifest)
            self._refresh_position()
            return
        s.project.set_status(key, status)
        self._refresh_position()

    def _saved(self, keys: list[str]) -> None:
        s = self.session
        if s is not None:  # a slide's units are regions, as the position line calls them
            self.save_label.setText(f"saved {len(keys)} {'tile' if s.kind == 'tiles' else 'region'}(s) in "
                                    f"{1000 * s.last_save_s:.0f} ms")
        self._refresh_position()

    def _refresh_position(self, *_: Any) -> None:
        s = self.session
        if s is None:
            for w in (self.position_label, self.status_label, self.counts_label):
                w.setText("")
            return
        i = self.current_index()
        what = "tile" if s.kind == "tiles" else "region"
        if i is None:
            editor = editor_for(s)
            n = len(editor.regions) if editor is not None else len(s.units)
            self.position_label.setText(f"{n} {what}s")
            self.status_label.setText("")
        else:
            key = s.units[i].key
            editor = editor_for(s)
            if editor is not None and editor.index is not None:
                self.position_label.setText(f"region {editor.index + 1} / {len(editor.regions)} (full "
                                            f"resolution): {key}")
            else:  # counted from 1, as Tag counts its tiles ("tile 1 / 6"), not as napari's slider (from 0)
                self.position_label.setText(f"{what} {i + 1} / {len(s.units)}: {key}")
            status = s.project.item(key).status if key in s.project else "unreviewed"
            self.status_label.setText(f"status: {status}")
        editor = editor_for(s)
        counts = editor.counts() if editor is not None and editor.regions else s.project.counts()
        self.counts_label.setText(status_text(counts))

    def _error(self, exc: BaseException) -> None:
        from napari.utils.notifications import show_error

        self.last_error = exc
        self.message.setText(f"Error: {exc}")
        show_error(str(exc))

    # -- closing: nothing painted is lost ------------------------------------------------------------------
    def flush(self) -> None:
        for s in _sessions.sessions(self.viewer):
            s.flush()

    def hideEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        self.flush()
        super().hideEvent(event)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        _sessions.close_sessions(self.viewer)
        super().closeEvent(event)


def napari_tool_letters() -> str:
    """napari's Labels tools by their letter shortcuts ("E erase, P paint, ..."): the number keys, napari's first
    shortcut for each, pick classes on the tracked layer."""
    from napari.settings import get_settings

    tools = []
    for name, keys in get_settings().shortcuts.shortcuts.items():
        m = re.fullmatch(r"napari:activate_labels_(\w+)_mode", name)
        letters = [str(k) for k in keys if not str(k).isdigit()]
        if m and letters:
            tools.append(f"{letters[0]} {m.group(1).replace('_', ' ')}")
    return "napari's tools: " + ", ".join(tools) if tools else ""


def _review_refresh(ref: Any, viewer: Any) -> None:
    w = ref()
    if w is None or not same(w.viewer, viewer):
        return
    try:
        w._build_palette()  # the project may have taken the first model's classes
        w._sync_layer()
        w._refresh_position()
        w.order_box.refresh()  # ... and only models of those classes can order its tiles
    except RuntimeError:  # the Qt side is already deleted
        pass
