"""Tag dock widget: image-level labels made in the viewer, one tile at a time, in seconds per tile.

On a tile folder (a stack) or a slide (a grid of tiles over tissue at a chosen tile size and pyramid level) the
pathologist sees one tile, toggles the classes present with keys 1-9 (the project schema's order, the palette of
the Review widget) and confirms with Enter, which saves the tags into the annotation project (``store_tags``,
under the project lock) and moves on. A light Shapes overlay outlines every tile in the colour of its first tag
(grey: untagged) with its tags written in it, so the whole slide shows what is tagged with what. "Order by model"
proposes the untagged tiles that help most first (``tagging.next_tile``: uncertainty plus diversity), computed in a
background worker, with the project's newest version or, before it has one, the shipped model of its classes.
"""

from __future__ import annotations

import weakref
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QWidget,
)

from ..tagging.tiles import TagTile, edge_remainder_text, folder_tiles, slide_tiles
from . import _sessions
from ._class_choice import choose_classes, make_classes_combo, sync_classes_combo
from ._job_controls import JobControlsMixin, scrolling_layout
from ._layers import camera as _camera
from ._layers import image_source, layer_meta, same
from ._tag_overlay import add_overlay, highlight_tile, paint_tile
from ._worker import Job, run_job

if TYPE_CHECKING:
    import napari

def _text_colour(rgb: tuple[int, int, int]) -> str:
    return "black" if 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 140 else "white"


class TagWidget(JobControlsMixin, QWidget):
    """Tag tiles with the classes they hold (image-level labels) and save the tags into the annotation project."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.session: Any = None
        self.tiles: list[TagTile] = []
        self.order: list[int] = []  # tile indices in the order they are proposed
        self.pos = 0  # position in ``order``
        self.pending: set[str] = set()  # classes toggled on for the tile on screen (not saved until Enter)
        self._slip = ""  # the status line shown after Enter with no class ticked
        self.overlay: Any = None
        self.hidden_layers: list[Any] = []  # segmentation layers hidden while Tag is on screen (shown again after)
        self._in_front = True  # False while another dock's tab is in front of Tag's (_tab_visible)
        self.class_buttons: list[QPushButton] = []
        self.job: Job | None = None

        self.image_combo = QComboBox()
        self.project_label = QLabel("no project")
        self.project_label.setWordWrap(True)
        self.tile_spin = QSpinBox()
        self.tile_spin.setRange(16, 8192)
        self.tile_spin.setValue(512)
        self.level_spin = QSpinBox()
        self.level_spin.setRange(0, 16)
        self.grid_btn = QPushButton("Make tile grid")
        self.classes_combo = make_classes_combo()
        self.classes_box = QGridLayout()
        self.prev_btn = QPushButton("◀ Previous")
        self.confirm_btn = QPushButton("Confirm && next (Enter)")
        self.skip_btn = QPushButton("Skip ▶")
        self.overview_btn = QPushButton("Overview")
        self.position_label = QLabel("")
        self.progress_label = QLabel("")
        self.counts_label = QLabel("")
        self.counts_label.setWordWrap(True)
        self.model_combo = QComboBox()
        self.rank_btn = QPushButton("Order by model (most useful first)")
        self.primary_row = self.confirm_btn  # kept on screen when docks stack (_dock_room)
        self._init_job_controls()

        form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("project", self.project_label)
        form.addRow("classes", self.classes_combo)
        form.addRow("slide tile (px)", self.tile_spin)
        form.addRow("slide level", self.level_spin)
        form.addRow(self.grid_btn)
        nav = QHBoxLayout()
        for b in (self.prev_btn, self.confirm_btn, self.skip_btn):
            nav.addWidget(b)
        rank = QFormLayout()
        rank.addRow("model", self.model_combo)
        rank.addRow(self.rank_btn)
        layout = scrolling_layout(self)  # scrolls when the dock is short: docking never grows the window
        layout.addLayout(form)
        layout.addWidget(QLabel("classes present (keys 1-9 toggle, Enter confirms)"))
        layout.addLayout(self.classes_box)
        layout.addLayout(nav)
        layout.addWidget(self.position_label)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.counts_label)
        layout.addWidget(self.overview_btn)
        layout.addLayout(rank)
        layout.addWidget(self.cancel_btn)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.image_combo.currentTextChanged.connect(self._open_current)
        self.grid_btn.clicked.connect(self._make_tiles)
        self.classes_combo.activated.connect(lambda *_: self._choose_classes())
        self.classes_combo.lineEdit().editingFinished.connect(self._choose_classes)
        self.prev_btn.clicked.connect(lambda: self.go(-1))
        self.skip_btn.clicked.connect(lambda: self.go(+1))
        self.confirm_btn.clicked.connect(self.confirm)
        self.overview_btn.clicked.connect(self.overview)
        self.rank_btn.clicked.connect(self.rank_by_model)
        self.cancel_btn.clicked.connect(self.cancel)
        self.viewer.layers.events.inserted.connect(self._refresh_images)
        self.viewer.layers.events.removed.connect(self._refresh_images)
        listener = partial(_tag_refresh, weakref.ref(self))
        _sessions.SESSION_LISTENERS.append(listener)
        self.destroyed.connect(lambda *_: listener in _sessions.SESSION_LISTENERS
                               and _sessions.SESSION_LISTENERS.remove(listener))
        self._refresh_images()
        self._open_current()

    def _follow_session(self) -> None:
        """The project changed under the widget: a Segment gave it a model's classes (rebuild the keys), or Review
        moved the image to another project folder (tag into that one)."""
        layer = self.image_layer
        live = _sessions.session_for(self.viewer, layer) if layer is not None else None
        if self.session is None or live is None:
            return  # closing: nothing to follow
        if live is not self.session:
            self._open_current()
        elif [b.text().split(": ")[-1] for b in self.class_buttons] != self.schema.foreground_names:
            self._build_classes()
            self._sync_buttons()
            self._refresh_models()  # the versions offered are those of the new classes

    # -- the view while tagging ----------------------------------------------------------------------------
    def showEvent(self, event: Any) -> None:  # noqa: N802  (Qt's name)
        """Docking narrows the canvas: fit the whole tile again once the layout settles, as Review does."""
        super().showEvent(event)
        from ._dock_room import follow_tab, make_room_when_shown
        from ._view import fit_view_when_shown

        fit_view_when_shown(self, self.viewer)
        make_room_when_shown(self)
        follow_tab(self, self._tab_visible)
        self._hide_segmentation()

    def _tab_visible(self, visible: bool) -> None:
        """Tag's tab chosen or left (docks tabbed together): hide the segmentation only while Tag is in front."""
        self._in_front = visible
        if visible:
            self._hide_segmentation()
        else:
            self._show_segmentation()

    def hideEvent(self, event: Any) -> None:  # noqa: N802  (Qt's name; also sent when the dock is closed)
        if not event.spontaneous():  # a minimised window is no reason to change the layers
            self._show_segmentation()
        super().hideEvent(event)

    def _hide_segmentation(self) -> None:
        """Hide the image's segmentation layers while Tag is on screen: a tile is tagged with the classes its tissue
        shows, and the model's colours (50% opacity) cover that tissue and suggest an answer. Shown again when Tag
        closes (or is hidden); a layer the user shows meanwhile stays shown."""
        from ._layers import is_result_of

        layer = self.image_layer
        if layer is None or self.session is None or not self.isVisible() or not self._in_front:
            return
        segs = [ly for ly in self.viewer.layers if is_result_of(ly, layer.name) and ly.visible]  # and confidence
        for ly in segs:
            ly.visible = False
            self.hidden_layers.append(ly)
        if segs:
            self.status.setText("Segmentation hidden while you tag; closing Tag shows it again.")

    def _show_segmentation(self) -> None:
        for ly in self.hidden_layers:
            if ly in self.viewer.layers:
                ly.visible = True
        self.hidden_layers = []

    # -- which image, which tiles ----------------------------------------------------------------------------
    def _image_layers(self) -> list[Any]:
        from napari.layers import Image

        return [ly for ly in self.viewer.layers if isinstance(ly, Image)
                and (image_source(ly) or ("", ""))[0] in ("tiles", "slide")]

    def _refresh_images(self, *_: Any) -> None:
        current = self.image_combo.currentText()
        names = [ly.name for ly in self._image_layers()]
        if not names:  # a single image (dropped files) is not taggable: say so rather than show an empty widget
            self.status.setText(untaggable_hint(self.viewer))
        if names == [self.image_combo.itemText(i) for i in range(self.image_combo.count())]:
            return
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)
        self.image_combo.blockSignals(False)
        if self.image_combo.currentText() != current:
            self._open_current()

    def _open_current(self, *_: Any) -> None:
        name = self.image_combo.currentText()
        if not name or name not in self.viewer.layers:
            self.session, self.tiles, self.order = None, [], []
            self._show()
            return
        try:
            self.session = _sessions.open_session(self.viewer, self.viewer.layers[name])
        except (ValueError, KeyError, OSError) as e:
            self._show_error(e)
            return
        self.project_label.setText(str(self.session.project.root))
        self._take_model_classes()
        self._build_classes()
        self._refresh_models()
        self._make_tiles()
        self._hide_segmentation()

    @property
    def image_layer(self) -> Any:
        name = self.image_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _make_tiles(self) -> None:
        """The tiles of the chosen image: a stack's tiles, or the slide's tissue grid at the chosen size/level."""
        if self.session is None:
            return
        layer = self.image_layer
        meta = layer_meta(layer)
        note = ""  # the slide grid's untiled edge strips, said plainly
        try:
            if self.session.kind == "tiles":
                self.tiles = folder_tiles(meta["folder"], meta["files"])
            else:
                levels = list(layer.data)
                ds = [levels[0].shape[0] / lv.shape[0] for lv in levels]
                level = min(self.level_spin.value(), len(levels) - 1)
                self.tiles = slide_tiles(levels, ds, self.tile_spin.value(), level)
                note = edge_remainder_text(*levels[level].shape[:2], self.tile_spin.value())
                if not self.tiles:
                    raise ValueError(f"No tissue tile of {self.tile_spin.value()} px at level {level}; choose a "
                                     "smaller tile or a finer level.")
        except (ValueError, KeyError, OSError) as e:
            self._show_error(e)
            return
        tags = self.session.project.tags()
        self.order = list(range(len(self.tiles)))
        untagged = [i for i in self.order if self.tiles[i].key not in tags]
        self.pos = untagged[0] if untagged else 0
        self._draw_overlay()
        self.show_current()
        self.status.setText(note)

    # -- classes -------------------------------------------------------------------------------------------
    @property
    def schema(self) -> Any:
        return self.session.project.schema if self.session is not None else None

    def _choose_classes(self) -> None:
        """The classes combo changed: the project takes them (only before any user work), the keys follow."""
        if self.session is None or not self.classes_combo.isEnabled():
            return
        try:
            if choose_classes(self.session, self.classes_combo.currentText()):
                self.pending = set()  # toggles of the old classes mean nothing in the new ones
        except (KeyError, ValueError, OSError) as e:
            self._show_error(e)
        self._follow_session()
        sync_classes_combo(self.classes_combo, self.session.project)
        self._show()  # the counts line names the new classes (it kept the old ones)

    def _take_model_classes(self) -> None:
        """A new, empty project takes the classes of the model Segment would preselect for the image, as Review does
        (walk-through: on colon images Tag offered LUAD's lung classes while Review offered glands)."""
        from ._model_choice import adopt_model_classes, shipped_preferred_card

        try:
            took = adopt_model_classes(self.session, shipped_preferred_card(self.session.image_layer))
        except (ValueError, OSError) as e:
            self._show_error(e)
            return
        if took:
            self.status.setText(f"{took}; 'classes' changes them before the first tag.")

    def _build_classes(self) -> None:
        for b in self.class_buttons:
            self.classes_box.removeWidget(b)
            b.hide()
            b.setParent(None)
            b.deleteLater()
        self.class_buttons = []
        sync_classes_combo(self.classes_combo, self.session.project)
        for n, c in enumerate(self.schema.foreground):
            btn = QPushButton(f"{n + 1}: {c.name}" if n < 9 else c.name)
            btn.setCheckable(True)
            btn.setToolTip(c.description or c.name)
            r, g, b = c.colour
            btn.setStyleSheet(f"QPushButton:checked {{ background-color: rgb({r},{g},{b}); "
                              f"color: {_text_colour(c.colour)}; font-weight: bold; }}")
            btn.clicked.connect(partial(self._button_toggled, c.name))
            self.classes_box.addWidget(btn, n // 3, n % 3)
            self.class_buttons.append(btn)

    def toggle(self, name: str) -> None:
        """Key / button: the class ``name`` is present in the tile on screen, or no longer."""
        self.pending ^= {name}
        self._sync_buttons()
        if self.pending:
            self._clear_slip()

    def _button_toggled(self, name: str, *_: Any) -> None:
        self.toggle(name)

    def _sync_buttons(self) -> None:
        if self.schema is None:
            return
        for btn, c in zip(self.class_buttons, self.schema.foreground):
            btn.setChecked(c.name in self.pending)

    # -- moving and saving ---------------------------------------------------------------------------------
    @property
    def current(self) -> TagTile | None:
        return self.tiles[self.order[self.pos]] if self.tiles and 0 <= self.pos < len(self.order) else None

    def confirm(self) -> None:
        """Enter: save the toggled classes as the tile's tags (autosaved to the project), then the next tile.

        With no class toggled nothing is saved and the tile stays, with a line saying what to do: a tile holding
        none of the schema's tissue classes is almost always a slip (Enter before the keys; saving it counted the tile
        as tagged, with no class). Unticking a tagged tile's classes keeps its saved tags the same way.
        """
        t = self.current
        if t is None:
            return
        names = [c.name for c in self.schema.foreground if c.name in self.pending]
        if not names:
            self._say_nothing_ticked(self.session.project.tags().get(t.key))
            return
        try:
            self.session.project.set_tags(t.key, names, image=t.image,
                                          region=list(t.region) if t.region is not None else None)
        except (ValueError, OSError, TimeoutError) as e:  # the tile stays on screen; nothing is lost
            self._show_error(e)
            return
        self._paint_tile(self.order[self.pos])
        sync_classes_combo(self.classes_combo, self.session.project)  # the first tag fixes the classes
        self.go(+1)

    def _say_nothing_ticked(self, saved: list[str] | None) -> None:
        n = len(self.schema.foreground)
        how = f"press 1-{min(n, 9)}" + (" or click a class" if n > 9 else "")
        after = "without tagging" if saved is None else \
            f"and keeps its saved tags ({', '.join(saved) or 'none of the classes'})"
        self._slip = (f"No class ticked for this tile: {how} to tick the classes it shows, then Enter; "
                      f"Skip ▶ moves on {after}.")
        self.status.setText(self._slip)
        scroll = self.findChild(QScrollArea)  # a short dock: the line is below the buttons
        if scroll is not None:
            scroll.ensureWidgetVisible(self.status)

    def _clear_slip(self) -> None:
        """The no-class line goes once a class is ticked or the tile changes (it is about one Enter)."""
        if self._slip and self.status.text() == self._slip:
            self.status.setText("")
        self._slip = ""

    def go(self, delta: int) -> None:
        """Previous (-1) / next (+1) tile in the proposed order (wraps around)."""
        if not self.order:
            return
        self.pos = (self.pos + delta) % len(self.order)
        self.show_current()

    def show_current(self) -> None:
        """Put the tile on screen, load its saved tags into the toggles, highlight it in the overlay."""
        t = self.current
        if t is None:
            self._show()
            return
        saved = self.session.project.tags().get(t.key)
        self.pending = set(saved or [])
        self._sync_buttons()
        self._clear_slip()
        layer = self.image_layer
        i = self.order[self.pos]
        if self.session.kind == "tiles":
            from ._view import fit_view_if_cropped

            self.viewer.dims.set_current_step(0, i)
            fit_view_if_cropped(self.viewer)  # the whole tile is tagged: a view zoomed into the last one is reset
        elif layer is not None:
            y0, x0, y1, x1, _ = t.region  # type: ignore[misc]
            scale, translate = np.asarray(layer.scale[-2:], float), np.asarray(layer.translate[-2:], float)
            (wy0, wx0), (wy1, wx1) = np.array([y0, x0]) * scale + translate, np.array([y1, x1]) * scale + translate
            cam = _camera(self.viewer)
            cam.center = ((wy0 + wy1) / 2, (wx0 + wx1) / 2)
            h, w = self.viewer.canvas.size
            cam.zoom = 0.9 * min(h / max(wy1 - wy0, 1), w / max(wx1 - wx0, 1))
        self._highlight(i)
        self._activate_overlay()
        self._show()

    def overview(self) -> None:
        """The whole image with the overlay: which tiles are tagged with what."""
        self.viewer.reset_view()

    def _show(self) -> None:
        t = self.current
        if t is None or self.session is None:
            for w in (self.position_label, self.progress_label, self.counts_label):
                w.setText("")
            return
        saved = self.session.project.tags().get(t.key)
        state = "untagged" if saved is None else ("tagged: " + (", ".join(saved) or "none of the classes"))
        self.position_label.setText(f"tile {self.pos + 1} / {len(self.order)}: {t.key} ({state})")
        counts = self.session.project.tag_counts([x.key for x in self.tiles])
        self.progress_label.setText(counts.progress_text())
        self.counts_label.setText("  ".join(f"{k}: {v}" for k, v in counts.per_class.items()))

    # -- overlay (gui/_tag_overlay.py) ---------------------------------------------------------------------
    def _draw_overlay(self) -> None:
        self.overlay = add_overlay(self.viewer, self.image_layer, self.tiles, self.session.project.tags(),
                                   self.schema, self.session.kind)
        self._bind_keys(self.overlay)

    def _paint_tile(self, i: int) -> None:
        paint_tile(self.viewer, self.overlay, i, self.tiles[i].key, self.session.project.tags(), self.schema)

    def _highlight(self, i: int) -> None:
        highlight_tile(self.viewer, self.overlay, i, len(self.tiles))

    def _activate_overlay(self) -> None:
        """Keys 1-9 and Enter are bound on the overlay layer: keep it the active one while tagging."""
        if self.overlay is not None and self.overlay in self.viewer.layers:
            self.viewer.layers.selection.active = self.overlay

    def _bind_keys(self, layer: Any) -> None:
        # Keys are bound by position and name their class when pressed: the classes may change after binding
        # (chosen in the combo, or adopted from a model), and a key must never tag a class the project lost.
        for n in range(9):
            layer.bind_key(str(n + 1), partial(self._key_toggle, n), overwrite=True)
        layer.bind_key("Enter", self._key_confirm, overwrite=True)
        layer.bind_key("Backspace", self._key_back, overwrite=True)

    def _key_toggle(self, n: int, layer: Any) -> None:
        if self.schema is not None and n < len(self.schema.foreground):
            self.toggle(self.schema.foreground[n].name)

    def _key_confirm(self, layer: Any) -> None:
        self.confirm()

    def _key_back(self, layer: Any) -> None:
        self.go(-1)

    # -- which tile next -------------------------------------------------------------------------------------
    def _refresh_models(self) -> None:
        """The project's versions newest first, then the shipped ones of its classes (a fresh project can be ordered
        by the model Segment would pick, which is preselected until the project has a version of its own)."""
        from ._model_choice import fitting_versions, latest_used_version, preferred_version

        current = self.model_combo.currentData()
        offered = {self.model_combo.itemData(i) for i in range(self.model_combo.count())}
        self.model_combo.clear()
        if self.session is None:
            return
        cards = []
        for label, d, card in fitting_versions(self.session.project):
            self.model_combo.addItem(label, str(d))
            cards.append((label, card))
        own = self.session.project.model_versions()
        i = self.model_combo.findData(current)
        if any(str(d) not in offered for d in own):
            i = 0  # a version trained since (Train widget): the newest, offered first, is chosen
        elif i < 0 and not own and self.image_layer is not None:
            found = latest_used_version(self.image_layer, cards) or preferred_version(self.image_layer, cards)
            i = found[0] if found else -1
        if i >= 0:
            self.model_combo.setCurrentIndex(i)

    def rank_by_model(self) -> None:
        """Order the untagged tiles by what the chosen model version is least sure of, spread out (worker)."""
        if self.session is None or not self.tiles or (self.job is not None and self.job.running):
            return
        if any(self.model_combo.findData(str(d)) < 0 for d in self.session.project.model_versions()):
            self._refresh_models()  # a version trained since (Train widget) is offered, newest first
        model = self.model_combo.currentData()
        if not model:
            self._show_error(ValueError(f"No model of the classes {', '.join(self.session.schema.names)} yet: "
                                        "train one from the tags first (Train widget, source: the open "
                                        "project's tags)."))
            return
        from ..tagging.next_tile import rank_tiles_job

        tags = self.session.project.tags()
        todo = [i for i, t in enumerate(self.tiles) if t.key not in tags]
        self._set_running(True)
        self.job = run_job(rank_tiles_job, model, [self.tiles[i] for i in todo], self.session.project.source, tags,
                           on_progress=self._on_progress, on_error=self._show_error,
                           on_result=partial(self._ranked, todo),
                           on_cancelled=lambda: self.status.setText("Ordering cancelled; the order is unchanged."),
                           on_finished=lambda: self._set_running(False))

    def _ranked(self, todo: list[int], order: list[int]) -> None:
        ranked = [todo[j] for j in order]
        self.order = ranked + [i for i in range(len(self.tiles)) if i not in set(ranked)]
        self.pos = 0
        self.status.setText(f"{len(ranked)} untagged tile(s) ordered by the model (most useful first).")
        self.show_current()

    def _run_buttons(self) -> list[Any]:
        return [self.rank_btn, self.grid_btn]


def untaggable_hint(viewer: Any) -> str:
    """What to open to tag: single images (one file, or several files dropped) are segmented, not tagged."""
    from napari.layers import Image

    single = [ly.name for ly in viewer.layers if isinstance(ly, Image) and (image_source(ly) or ("",))[0] == "image"]
    if single:
        return (f"{', '.join(single[:3])}{'…' if len(single) > 3 else ''}: single images are not tagged; open their "
                "folder (File > Open Folder) to tag them as a tile stack, or a slide to tag its tissue grid.")
    from ._layers import reopen_hint

    return reopen_hint(viewer) or "Open a tile folder or a slide (File > Open) to tag its tiles."


def _tag_refresh(ref: Any, viewer: Any) -> None:
    w = ref()
    if w is None or not same(w.viewer, viewer):
        return
    try:
        w._follow_session()
    except RuntimeError:  # the Qt side is already deleted
        pass
