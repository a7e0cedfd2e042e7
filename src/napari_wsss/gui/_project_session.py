"""Tracks the corrections made on an image's segmentation Labels layer and autosaves them to its project.

A ``ProjectSession`` splits the Labels data into *units* (``_project_units``), each an item of the project
(``store.py``). It records which pixels the user touched from the layer's ``paint`` events, notices changes that
come without one (undo/redo, a wholesale ``data`` replacement) by comparing with what it saw last, and autosaves
dirty units every few seconds, on tile change and on close. The save of one tile (two small PNGs + the index) is
a few milliseconds, so it runs on the Qt thread: a worker would have to copy the arrays anyway and would make
"saved" harder to reason about.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..classes import ClassSchema
from ..store import Project
from ._layers import META_KEY, camera, unwrap
from ._project_units import Unit, slice_bbox, slide_units, static_units, units_in

AUTOSAVE_MS = 2000


class ProjectSession:
    """The project of one image layer and the corrections made on its segmentation layer."""

    def __init__(self, viewer: Any, image_layer: Any, project: Project, kind: str) -> None:
        from qtpy.QtCore import QTimer

        # the objects behind the widgets' proxies: the session outlives the widget that opened it, and its
        # identity checks (which layer is tracked, which was removed) must hold for every widget's proxy
        self.viewer = unwrap(viewer)
        self.image_layer = unwrap(image_layer)
        self.project = project
        self.kind = kind  # tiles | image | slide
        self.schema: ClassSchema = project.schema
        self.labels: Any = None
        self.units: list[Unit] = []
        self._pred: np.ndarray | None = None  # napari label values of the prediction, layer-shaped
        self._painted: np.ndarray | None = None  # bool, pixels a paint/fill/erase event covered
        self._seen: np.ndarray | None = None  # the data as last seen (to notice undo/redo)
        self.dirty: set[int] = set()
        self._watch: set[int] = set()  # units that may change without a paint event (undo history)
        self._check_all = False
        self._fresh: set[str] = set()
        self.last_save_s = 0.0  # duration of the last flush (shown in the widget, reported by tests)
        self.last_saved_at: float | None = None
        self.adopted_from: ClassSchema | None = None  # classes whose predictions the last use_model put aside
        self.on_saved: list[Callable[[list[str]], Any]] = []
        self.timer = QTimer()
        self.timer.setInterval(AUTOSAVE_MS)
        self.timer.timeout.connect(self.flush)
        if kind in ("tiles", "image"):
            self.units = static_units(image_layer, kind)
            self.project.register([{"key": u.key, "image": u.image} for u in self.units])
        self.viewer.dims.events.current_step.connect(self._on_step)
        self.viewer.layers.events.removed.connect(self._on_removed)

    # -- units -----------------------------------------------------------------------------------------
    def units_for(self, placement: dict[str, Any], shape: tuple[int, ...], plane_keys: list[Any]) -> list[Unit]:
        """The units a Segment result covers (``plane_keys``: the stack indices it segmented)."""
        if self.kind == "slide":
            return slide_units(placement, shape[-2:])
        if self.kind == "tiles":
            idx = {k[0] if isinstance(k, tuple) and k else k for k in plane_keys}
            return [u for u in self.units if u.index[0] in idx]
        return list(self.units)

    def unit_index_at(self, world_point: Any = None) -> int | None:
        """Index into ``units`` of the tile on screen (stacks) or under the camera centre (slides)."""
        if not self.units:
            return None
        if self.kind == "tiles":
            i = int(self.viewer.dims.current_step[0])
            return i if 0 <= i < len(self.units) else None
        if self.kind == "image" or self.labels is None:
            return 0
        pt = np.asarray(world_point if world_point is not None else camera(self.viewer).center)[-2:]
        y, x = self.labels.world_to_data(pt)[-2:]
        for i, u in enumerate(self.units):
            (ya, yb), (xa, xb) = u.bbox()[-2:]
            if ya <= y < yb and xa <= x < xb:
                return i
        return None

    # -- predictions from the Segment widget ---------------------------------------------------------------
    def check_model(self, card: Any) -> None:
        """Refuse, in the viewer's words, a model whose classes could not write into this project (before it runs).

        Raises:
            ValueError: the project's classes were chosen or hold user work, and the model's differ.
        """
        advice = (f"In Segment choose a model of the {self.schema.name} classes, or in Review & correct click "
                  f"'Use another project folder…' to start a new project for this image (your work stays in "
                  f"{self.project.root}).")
        refusal = self.project.schema_refusal(card.class_schema, advice)
        if refusal:
            raise ValueError(refusal)
        if card.class_schema.names == self.schema.names:
            self.project.check_model(card)

    def use_model(self, card: Any) -> bool:
        """Let a model write into the project: one holding no user work takes the model's classes (Review docked
        before the first Segment opened it with the default ones, or an earlier model of other classes wrote it;
        those predictions go to ``history/``). Returns whether the classes changed.

        Raises:
            ValueError: see :meth:`check_model`.
        """
        self.check_model(card)
        return self._take_schema(card.class_schema, "model")

    def choose_classes(self, schema: Any) -> bool:
        """The person picks the project's classes (Tag's 'classes', before the first tag): a folder of colon
        images is not tagged with the LUAD default's classes. Returns whether the classes changed.

        Raises:
            ValueError: the project already holds user work (tags, corrections, model versions) of its classes.
        """
        advice = (f"Keep the {self.schema.name} classes, or in Review & correct click 'Use another project "
                  f"folder…' to start a new project for this image (your work stays in {self.project.root}).")
        refusal = self.project.schema_refusal(schema, advice, by="user")
        if refusal:
            raise ValueError(refusal)
        return self._take_schema(schema, "user")

    def _take_schema(self, schema: Any, by: str) -> bool:
        old, had = self.schema, self.project.counts()["predicted"]
        if not self.project.adopt_schema(schema, by=by):
            return False
        self.schema = self.project.schema
        self.adopted_from = old if had else None
        self.detach(retire=True)  # the layer on screen holds the old classes' labels: they no longer fit
        from ._sessions import SESSION_LISTENERS

        for cb in list(SESSION_LISTENERS):  # Review rebuilds its palette
            cb(self.viewer)
        return True

    def store_prediction(self, units: list[Unit], labels: np.ndarray, card: Any) -> tuple[list[str], list[str]]:
        """Save a new prediction for ``units`` (``labels``: the layer-shaped label array about to be shown).

        Corrected/accepted units are not overwritten: their stored mask is put back into ``labels``.
        Returns (saved keys, skipped keys).
        """
        self.flush()  # the user's last strokes count as corrections before anything is replaced
        if not isinstance(card, str):  # a version name (a region of a saved result) was checked when it ran
            self.use_model(card)
        saved, skipped = [], []
        with self.project.batch():
            self._store_units(units, labels, card, saved, skipped)
        self._fresh = set(saved)  # attach() need not read these back from disk
        return saved, skipped

    def _store_units(self, units: list[Unit], labels: np.ndarray, card: Any, saved: list, skipped: list) -> None:
        for u in units:
            if self.project.is_protected(u.key):
                mask = self.project.load_mask(u.key)
                if mask is not None and mask.shape == labels[u.index].shape:
                    labels[u.index] = self.schema.to_labels(mask)
                skipped.append(u.key)
                continue
            self.project.save_prediction(u.key, self.schema.from_labels(labels[u.index]), card, image=u.image,
                                         region=u.region)
            saved.append(u.key)

    # -- attaching a Labels layer --------------------------------------------------------------------------
    def attach(self, layer: Any, units: list[Unit] | None = None) -> None:
        """Track corrections on ``layer`` (the baseline for "touched" is the stored prediction)."""
        layer = unwrap(layer)
        if self.labels is not None and self.labels is not layer:
            self.flush()
            self.detach(retire=True)
        if layer.metadata.get(META_KEY, {}).pop("retired", False):  # retired earlier (see detach), tracked again
            layer.editable, layer.visible = True, True
        # re-attaching the same layer follows a new prediction (already flushed): no flush, or the new
        # prediction would be mistaken for a correction
        self._check_all = False
        if units is not None:
            self.units = units
            self.project.register([{"key": u.key, "region": u.region, "image": u.image} for u in units])
        data = np.asarray(layer.data)
        self._pred, self._seen = data.copy(), data.copy()
        self._painted = np.zeros(data.shape, bool)
        fresh, self._fresh = self._fresh, set()
        for u in self.units:
            if u.key in fresh:  # just predicted: the layer data is the prediction, nothing touched
                continue
            pred, touched = self.project.load_prediction(u.key), self.project.load_touched(u.key)
            if pred is not None and pred.shape == self._pred[u.index].shape:
                self._pred[u.index] = self.schema.to_labels(pred)
            if touched is not None and touched.shape == self._painted[u.index].shape:
                self._painted[u.index] = touched
        self.dirty.clear()
        self._watch.clear()
        if self.labels is not layer:
            layer.events.paint.connect(self._on_paint)
            layer.events.data.connect(self._on_data)
        self.labels = layer
        self.timer.start()

    def detach(self, retire: bool = False) -> None:
        """Stop tracking the layer. ``retire``: another result replaces it, so hide it and make it read-only.

        Strokes on a layer nobody tracks are never saved: after a second model's result (or "Use this version")
        the first result stayed visible and paintable under the new one, blending its colours into it, and a
        correction painted there was silently lost (walk-through on real GlaS tiles).
        """
        if self.labels is None:
            return
        old = self.labels
        old.events.paint.disconnect(self._on_paint)
        old.events.data.disconnect(self._on_data)
        self.labels = None
        self._stop_timer()
        if retire and old in self.viewer.layers:
            old.visible = False
            old.editable = False
            old.metadata.setdefault(META_KEY, {})["retired"] = True

    def _stop_timer(self) -> None:
        try:
            self.timer.stop()
        except RuntimeError:  # Qt already deleted the timer (application shutting down)
            pass

    def reset_units(self, keys: list[str]) -> None:
        """A new prediction replaced these units: it is the new baseline, nothing in them is touched."""
        if self.labels is None:
            return
        data = self.labels.data
        for i, u in enumerate(self.units):
            if u.key in keys:
                cur = np.asarray(data[u.index])
                self._pred[u.index] = cur
                self._seen[u.index] = cur
                self._painted[u.index] = False
                self.dirty.discard(i)
        self._check_all = False

    # -- change tracking -------------------------------------------------------------------------------
    def _on_paint(self, event: Any) -> None:
        shape = self._painted.shape
        for atom in event.value:
            if hasattr(atom, "slice_key"):  # _MaskedPaintAtom: paint / fill / polygon / erase
                region = self._painted[atom.slice_key]
                if atom.mask is None:
                    region[...] = True
                else:
                    region[atom.mask] = True
                bbox = slice_bbox(atom.slice_key, shape)
            else:  # (indices, old_values, new_values) from data_setitem
                indices = atom[0]
                self._painted[indices] = True
                bbox = slice_bbox(indices, shape)
            data = self.labels.data
            for i in units_in(self.units, self.kind, bbox):
                idx = self.units[i].index
                self._seen[idx] = np.asarray(data[idx])
                self.dirty.add(i)
                self._watch.add(i)

    def _on_data(self, event: Any = None) -> None:
        # wholesale replacement: compare everything at the next check (the shapes must still agree)
        if np.shape(self.labels.data) != self._seen.shape:
            self.detach()
            return
        self._check_all = True

    def _check(self) -> None:
        """Notice changes made without a paint event (undo/redo, data replacement)."""
        if self.labels is None:
            return
        data = self.labels.data
        cand = range(len(self.units)) if self._check_all else set(self._watch)
        cur_i = self.unit_index_at()
        if not self._check_all and cur_i is not None:
            cand = cand | {cur_i}
        for i in cand:
            idx = self.units[i].index
            cur, seen = np.asarray(data[idx]), self._seen[idx]
            if np.array_equal(cur, seen):
                continue
            diff = cur != seen
            # pixels an undo put back to the prediction are no longer the user's
            self._painted[idx] &= ~(diff & (cur == self._pred[idx]))
            self._seen[idx] = cur
            self.dirty.add(i)
            self._watch.add(i)
        self._check_all = False

    def flush(self) -> list[str]:
        """Save every unit changed since the last save. Returns the saved keys."""
        if self.labels is None:
            return []
        t0 = time.perf_counter()
        self._check()
        data = self.labels.data
        keys = []
        for i in sorted(self.dirty):
            u = self.units[i]
            cur = np.asarray(data[u.index])
            touched = self._painted[u.index] | (cur != self._pred[u.index])
            self.project.save_correction(u.key, self.schema.from_labels(cur), touched)
            keys.append(u.key)
        self.dirty.clear()
        if keys:
            self.last_save_s = time.perf_counter() - t0
            self.last_saved_at = time.time()
            for cb in list(self.on_saved):
                cb(keys)
        return keys

    def _on_step(self, event: Any = None) -> None:
        if self.dirty or self._watch:
            self.flush()

    def _on_removed(self, event: Any) -> None:
        if unwrap(event.value) is self.labels:
            self.flush()
            self.detach()

    def close(self) -> None:
        self.flush()
        self.detach()
        self._stop_timer()
        for emitter, cb in ((self.viewer.dims.events.current_step, self._on_step),
                            (self.viewer.layers.events.removed, self._on_removed)):
            try:
                emitter.disconnect(cb)
            except Exception:  # the viewer may already be gone
                pass
