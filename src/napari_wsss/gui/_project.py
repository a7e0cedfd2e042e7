"""Links an image layer, its segmentation Labels layer and the annotation project (``store.py``) on disk.

A ``ProjectSession`` splits the Labels data into *units* (one per tile of a stack, the whole of a single image,
or grid regions of a slide result), each an item of the project. It records which pixels the user touched
from the layer's ``paint`` events, notices changes that come without one (undo/redo, a wholesale ``data``
replacement) by comparing with what it saw last, and autosaves dirty units every few seconds, on tile change
and on close. The save of one tile (two small PNGs + the index) is a few milliseconds, so it runs on the Qt
thread: a worker would have to copy the arrays anyway and would make "saved" harder to reason about.
"""

from __future__ import annotations

import time
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..classes import ClassSchema
from ..store import Project, region_key
from ._layers import (
    SLIDE_GRID,
    camera,
    image_source,
    is_segmentation_of,
    labels_layer_kwargs,
    layer_meta,
    result_geometry,
    segmentation_name,
)

AUTOSAVE_MS = 2000
MAX_RESTORE_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class Unit:
    """One project item inside a Labels layer: ``index`` selects its pixels from ``layer.data``."""

    key: str
    index: tuple
    image: str | None = None
    region: list[int] | None = None

    def bbox(self) -> list[tuple[int, int]]:
        out = []
        for s in self.index:
            out.append((s, s + 1) if isinstance(s, (int, np.integer)) else (s.start, s.stop))
        return out


def _slice_bbox(key: Any, shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """Per-axis [start, stop) of a paint atom's basic-slicing key or fancy index."""
    if not isinstance(key, tuple):
        key = (key,)
    out = []
    for ax, s in enumerate(key):
        if isinstance(s, slice):
            start, stop, _ = s.indices(shape[ax])
            out.append((start, stop))
        elif isinstance(s, (int, np.integer)):
            out.append((int(s), int(s) + 1))
        else:
            a = np.asarray(s)
            out.append((int(a.min()), int(a.max()) + 1) if a.size else (0, 0))
    out += [(0, n) for n in shape[len(out):]]
    return out


class ProjectSession:
    """The project of one image layer and the corrections made on its segmentation layer."""

    def __init__(self, viewer: Any, image_layer: Any, project: Project, kind: str) -> None:
        from qtpy.QtCore import QTimer

        self.viewer = viewer
        self.image_layer = image_layer
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
        self.on_saved: list[Callable[[list[str]], Any]] = []
        self.timer = QTimer()
        self.timer.setInterval(AUTOSAVE_MS)
        self.timer.timeout.connect(self.flush)
        if kind in ("tiles", "image"):
            self.units = self._static_units()
            self.project.register([{"key": u.key, "image": u.image} for u in self.units])
        viewer.dims.events.current_step.connect(self._on_step)
        viewer.layers.events.removed.connect(self._on_removed)

    # -- units -----------------------------------------------------------------------------------------
    def _static_units(self) -> list[Unit]:
        meta = layer_meta(self.image_layer)
        if self.kind == "tiles":
            folder = Path(meta["folder"])
            out = []
            for i, (f, (h, w)) in enumerate(zip(meta["files"], meta["sizes"])):
                f = Path(f)
                rel = str(f.relative_to(folder)) if f.is_relative_to(folder) else str(f)
                out.append(Unit(f.stem, (i, slice(0, h), slice(0, w)), image=rel))
            return out
        h, w = self.image_layer.data.shape[:2]
        p = Path(meta["path"])
        return [Unit(p.stem, (slice(0, h), slice(0, w)), image=p.name)]

    def slide_units(self, placement: dict[str, Any], shape: tuple[int, int]) -> list[Unit]:
        """Grid regions (``SLIDE_GRID`` level-0 px) covered by a slide result of ``shape`` at ``placement``."""
        ds, level = float(placement["downsample"]), int(placement["level"])
        oy, ox = (float(v) for v in placement["origin"])

        def cuts(origin: float, n: int) -> list[int]:
            # cell boundaries in result pixels, aligned to the level-0 grid
            vals, k = {0, int(n)}, int(origin // SLIDE_GRID) + 1
            while k * SLIDE_GRID < origin + n * ds:
                vals.add(int(round((k * SLIDE_GRID - origin) / ds)))
                k += 1
            return sorted(v for v in vals if 0 <= v <= n)

        ys, xs = cuts(oy, shape[0]), cuts(ox, shape[1])
        units = []
        for ya, yb in zip(ys, ys[1:]):
            for xa, xb in zip(xs, xs[1:]):
                r = [int(round(oy + ya * ds)), int(round(ox + xa * ds)), int(round(oy + yb * ds)),
                     int(round(ox + xb * ds)), level]
                units.append(Unit(region_key(*r), (slice(ya, yb), slice(xa, xb)), region=r))
        return units

    def units_for(self, placement: dict[str, Any], shape: tuple[int, ...], plane_keys: list[Any]) -> list[Unit]:
        """The units a Segment result covers (``plane_keys``: the stack indices it segmented)."""
        if self.kind == "slide":
            return self.slide_units(placement, shape[-2:])
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
    def store_prediction(self, units: list[Unit], labels: np.ndarray, card: Any) -> tuple[list[str], list[str]]:
        """Save a new prediction for ``units`` (``labels``: the layer-shaped label array about to be shown).

        Corrected/accepted units are not overwritten: their stored mask is put back into ``labels``.
        Returns (saved keys, skipped keys).
        """
        self.flush()  # the user's last strokes count as corrections before anything is replaced
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
        if self.labels is not None and self.labels is not layer:
            self.flush()
            self.detach()
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

    def detach(self) -> None:
        if self.labels is None:
            return
        self.labels.events.paint.disconnect(self._on_paint)
        self.labels.events.data.disconnect(self._on_data)
        self.labels = None
        self._stop_timer()

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
    def _units_in(self, bbox: list[tuple[int, int]]) -> list[int]:
        if self.kind == "tiles":
            lo, hi = bbox[0]
            return [i for i in range(max(0, lo), min(hi, len(self.units)))]
        out = []
        for i, u in enumerate(self.units):
            ub = u.bbox()
            if all(a < d and c < b for (a, b), (c, d) in zip(bbox[-2:], ub[-2:])):
                out.append(i)
        return out

    def _on_paint(self, event: Any) -> None:
        shape = self._painted.shape
        for atom in event.value:
            if hasattr(atom, "slice_key"):  # _MaskedPaintAtom: paint / fill / polygon / erase
                region = self._painted[atom.slice_key]
                if atom.mask is None:
                    region[...] = True
                else:
                    region[atom.mask] = True
                bbox = _slice_bbox(atom.slice_key, shape)
            else:  # (indices, old_values, new_values) from data_setitem
                indices = atom[0]
                self._painted[indices] = True
                bbox = _slice_bbox(indices, shape)
            data = self.labels.data
            for i in self._units_in(bbox):
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
        if event.value is self.labels:
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

    # -- restoring ---------------------------------------------------------------------------------------
    def restore_layer(self) -> Any:
        """Show the stored masks as a segmentation layer (reopening a folder/slide). None when none saved."""
        items = [it for it in self.project.items() if it.mask is not None]
        if not items:
            return None
        version = Counter(it.model or "restored" for it in items).most_common(1)[0][0]
        name = segmentation_name(self.image_layer.name, version)
        if self.kind == "slide":
            data, placement, units = self._restore_slide(items)
            if data is None:
                return None
        else:
            placement = {"kind": "stack" if self.kind == "tiles" else "single"}
            units = self.units
            data = np.zeros(self.image_layer.data.shape[:-1], np.uint8)
            by_key = {it.key for it in items}
            for u in units:
                if u.key in by_key:
                    mask = self.project.load_mask(u.key)
                    if mask is not None and mask.shape == data[u.index].shape:
                        data[u.index] = self.schema.to_labels(mask)
        meta = {"kind": "segmentation", "model": version, "image": self.image_layer.name, "placement": placement,
                "restored_from": str(self.project.root)}
        scale, translate = result_geometry(self.image_layer, placement)
        layer = self.viewer.add_labels(data, scale=scale, translate=translate,
                                       **labels_layer_kwargs(self.schema, name, meta=meta))
        self.attach(layer, units if self.kind == "slide" else None)
        return layer

    def _restore_slide(self, items: list[Any]) -> tuple[Any, dict, list[Unit]]:
        latest = max(items, key=lambda it: it.updated)
        level = latest.region[4] if latest.region else 0
        items = [it for it in items if it.region and it.region[4] == level]
        y0, x0 = min(it.region[0] for it in items), min(it.region[1] for it in items)
        y1, x1 = max(it.region[2] for it in items), max(it.region[3] for it in items)
        levels = self.image_layer.data
        ds = levels[0].shape[0] / levels[level].shape[0]
        if ((y1 - y0) / ds) * ((x1 - x0) / ds) > MAX_RESTORE_PIXELS:
            items, (y0, x0, y1, x1) = [latest], latest.region[:4]
        h, w = int(round((y1 - y0) / ds)), int(round((x1 - x0) / ds))
        data = np.zeros((h, w), np.uint8)
        units = []
        for it in items:
            ya, xa = int(round((it.region[0] - y0) / ds)), int(round((it.region[1] - x0) / ds))
            mask = self.project.load_mask(it.key)
            if mask is None:
                continue
            mh, mw = min(mask.shape[0], h - ya), min(mask.shape[1], w - xa)
            data[ya:ya + mh, xa:xa + mw] = self.schema.to_labels(mask[:mh, :mw])
            units.append(Unit(it.key, (slice(ya, ya + mh), slice(xa, xa + mw)), region=it.region))
        placement = {"kind": "slide", "level": level, "downsample": ds, "origin": (y0, x0)}
        return data, placement, units


# -- one registry per viewer: the Review widget opens sessions, the Segment widget uses them ---------------------
_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
SESSION_LISTENERS: list[Callable[[Any], Any]] = []  # called with the viewer when a session opens or closes


def open_session(viewer: Any, image_layer: Any, schema: ClassSchema | None = None) -> ProjectSession:
    """The project session of an image layer, opened (and its stored masks restored) on first use.

    Raises:
        ValueError: the layer holds an in-memory array (no file to keep a project beside), or the project on
            disk uses other classes than ``schema``.
    """
    sessions = _SESSIONS.setdefault(viewer, {})
    sess = sessions.get(id(image_layer))
    if sess is not None:
        return sess
    src = image_source(image_layer)
    if src is None:
        raise ValueError(f"Layer {image_layer.name!r} was not opened from a file, so there is nowhere to keep its "
                         "corrections. Open the tile folder, slide or image with File > Open (napari-wsss reader).")
    kind, path = src
    project = Project.open(path, schema)
    sess = ProjectSession(viewer, image_layer, project, kind)
    sessions[id(image_layer)] = sess
    existing = [ly for ly in viewer.layers if is_segmentation_of(ly, image_layer.name)]
    if existing:
        layer = existing[-1]
        units = None
        if kind == "slide":
            units = sess.slide_units(layer_meta(layer)["placement"], layer.data.shape)
        sess.attach(layer, units)
    else:
        sess.restore_layer()
    for cb in list(SESSION_LISTENERS):
        cb(viewer)
    return sess


def session_for(viewer: Any, image_layer: Any) -> ProjectSession | None:
    """The open session of an image layer, or None (no project is kept until the Review widget opens one)."""
    return _SESSIONS.get(viewer, {}).get(id(image_layer))


def sessions(viewer: Any) -> list[ProjectSession]:
    return list(_SESSIONS.get(viewer, {}).values())


def close_sessions(viewer: Any, *_: Any) -> None:
    """Save and close every session of a viewer (widget/viewer close)."""
    for sess in _SESSIONS.pop(viewer, {}).values():
        try:
            sess.close()
        except Exception as e:  # closing must not raise out of a Qt destroy signal; the last autosave stands
            import warnings

            warnings.warn(f"napari-wsss: could not save the last corrections of {sess.project.root}: {e}",
                          stacklevel=1)
    for cb in list(SESSION_LISTENERS):
        cb(viewer)


def project_model_versions(viewer: Any) -> list[tuple[str, Path, str]]:
    """(label, folder, method) of the model versions stored in the viewer's open projects."""
    from ..models.card import load_card

    out = []
    for sess in sessions(viewer):
        for d in sess.project.model_versions():
            try:
                out.append((f"{d.name} (project)", d, load_card(d).method))
            except (ValueError, FileNotFoundError):
                continue
    return out
