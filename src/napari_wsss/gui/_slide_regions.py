"""Correcting a whole-slide segmentation at full resolution, one tissue region at a time.

A whole-slide result is a zarr label pyramid shown as a multiscale layer, which napari cannot paint and which is
far too large to hold. The Review widget instead steps through the level-0 grid regions (``SLIDE_GRID`` px) that
hold tissue: each is read from the pyramid's level 0 into a small editable Labels layer placed exactly over the
slide, tracked by the project session like any region (autosave, touched pixels, status). Every save writes the
region back into the pyramid's level 0 and, by the same nearest-neighbour striding that built them, into its
lower levels, so the slide's segmentation on disk (and the multiscale layer) carries the correction.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from ._layers import SLIDE_GRID, labels_layer_kwargs, layer_meta, segmentation_name
from ._project_units import slide_units


def tissue_regions(labels_zarr: list[Any], grid: int | None = None) -> list[tuple[int, int, int, int]]:
    """Level-0 (y0, x0, y1, x1) grid cells in which the label pyramid holds any class, in reading order.

    Judged on the coarsest level that still has a pixel per cell, so a 100k-px slide costs a thumbnail read.
    """
    grid = grid or SLIDE_GRID
    h, w = labels_zarr[0].shape[:2]
    best = 0
    for lv in range(len(labels_zarr)):
        if grid / (h / labels_zarr[lv].shape[0]) >= 1:
            best = lv
    coarse = np.asarray(labels_zarr[best][...])
    ds = h / coarse.shape[0]
    out = []
    for i in range(math.ceil(h / grid)):
        for j in range(math.ceil(w / grid)):
            sub = coarse[int(i * grid / ds): max(int(i * grid / ds) + 1, int(math.ceil((i + 1) * grid / ds))),
                         int(j * grid / ds): max(int(j * grid / ds) + 1, int(math.ceil((j + 1) * grid / ds)))]
            if sub.size and sub.any():
                out.append((i * grid, j * grid, min(h, (i + 1) * grid), min(w, (j + 1) * grid)))
    return out


class SlideRegionEditor:
    """Shows one level-0 tissue region of a whole-slide result at a time for the session to track."""

    def __init__(self, session: Any, slide_layer: Any, zarr_path: str | Path, version: str) -> None:
        import zarr

        self.session, self.slide_layer, self.version = session, slide_layer, version
        self.zarr_path = Path(zarr_path)
        root = zarr.open_group(str(self.zarr_path), mode="r+")
        n = sum(1 for _ in root["labels"].array_keys())
        self.labels = [root[f"labels/{i}"] for i in range(n)]
        self.regions = tissue_regions(self.labels)
        self.index: int | None = None
        self.layer: Any = None
        self.carry_job: Any = None  # the worker carrying the corrected regions into a new result (carry_reviewed)
        self._lock = threading.Lock()  # pyramid writes: the worker's and the Qt thread's saves
        self._written: set[str] = set()  # regions written back from the screen (newer than what the worker reads)
        session.on_saved.append(self._write_back)

    def show(self, i: int) -> Any:
        """Put region ``i`` (wrapped) on screen as the editable layer; returns the layer."""
        s = self.session
        if not self.regions:
            raise ValueError("The whole-slide segmentation holds no tissue region to correct.")
        s.flush()
        i %= len(self.regions)
        y0, x0, y1, x1 = self.regions[i]
        data = np.array(self.labels[0][y0:y1, x0:x1], dtype=np.uint8)
        placement = {"kind": "slide", "level": 0, "downsample": 1.0, "origin": (y0, x0)}
        units = slide_units(placement, data.shape)
        s.store_prediction(units, data, self.version)  # corrected regions come back as the user left them
        image = s.image_layer
        scale = np.asarray(image.scale, float)[-2:]
        translate = np.asarray(image.translate, float)[-2:] + np.array([y0, x0], float) * scale
        meta = {"kind": "segmentation", "model": self.version, "image": image.name, "placement": placement,
                "zarr": str(self.zarr_path), "region_of": layer_meta(self.slide_layer).get("zarr")}
        if self.layer is None or self.layer not in s.viewer.layers:
            name = segmentation_name(image.name, f"{self.version} region")
            if name in s.viewer.layers:
                s.viewer.layers.remove(name)
            self.layer = s.viewer.add_labels(data, scale=scale, translate=translate,
                                             **labels_layer_kwargs(s.schema, name, meta=meta))
        else:
            self.layer.data = data
            self.layer.translate = translate
            layer_meta(self.layer).update(meta)
        s.attach(self.layer, units)
        self.index = i
        from ._sessions import SESSION_LISTENERS

        for cb in list(SESSION_LISTENERS):  # the Review widget shows "region i / N"
            cb(s.viewer)
        return self.layer

    def carry_reviewed(self) -> Any:
        """Write the project's corrected and accepted level-0 regions into this result's pyramid, in a worker;
        returns its ``Job`` (``carry_job``; None with nothing to carry), whose result is the keys written.

        A new whole-slide result (segmenting again, "Use this version") held the new model's labels where the user
        had corrected: the region editor showed the user's masks, but the slide's overview layer, its zarr and
        every later reopening showed the model's, as if the corrections were gone. Reading each mask and writing
        it into every level takes about 40 ms a region, seconds for a slide corrected over days: off the Qt
        thread, which only lists the regions (the project's records are the Qt thread's to read).
        """
        from ._worker import run_job

        project, (h, w) = self.session.project, self.labels[0].shape[:2]
        todo = [(it.key, list(it.region)) for it in project.items()
                if it.region and it.region[4] == 0 and project.is_protected(it.key)
                and it.region[2] <= h and it.region[3] <= w]
        if not todo:
            return None
        self.carry_job = run_job(self._carry, todo, on_result=self._carried)
        return self.carry_job

    def _carry(self, todo: list[tuple[str, list[int]]], *, should_stop: Any) -> Any:
        from ..events import Progress
        from ..inference.slide_segmentation import write_pyramid_block  # lazy: it loads torch

        done = []
        for n, (key, r) in enumerate(todo):
            if should_stop():
                break
            yield Progress(n, len(todo), "your corrected regions into the slide's segmentation")
            mask = self.session.project.load_mask(key)
            if mask is None or mask.shape != (r[2] - r[0], r[3] - r[1]):
                continue
            block = self.session.schema.to_labels(mask).astype(np.uint8)
            with self._lock:
                if key in self._written:
                    continue  # saved again from the screen since this started: that is newer
                write_pyramid_block(self.labels, r[0], r[1], block)
            done.append(key)
        return done

    def _carried(self, keys: list[str]) -> None:
        if keys:
            try:
                self.slide_layer.refresh()
            except Exception:  # noqa: BLE001  (the multiscale layer may have been closed; the zarr is what counts)
                pass

    def counts(self) -> dict[str, int]:
        """Review counts over this result's tissue regions (``Project.counts`` keys), visited or not.

        The project holds a region once it was shown, so its own counts read "2 / 2 reviewed" after two of nine
        regions (walk-through on the real CMU-1 SVS): done, it seemed, with seven regions never looked at.
        """
        from ..store import region_key

        project = self.session.project
        status = [project.item(k).status if k in project else "unreviewed"
                  for k in (region_key(*r, 0) for r in self.regions)]
        c = {st: status.count(st) for st in ("unreviewed", "corrected", "accepted")}
        return {"total": len(status), **c, "reviewed": c["corrected"] + c["accepted"]}

    def _write_back(self, keys: list[str]) -> None:
        """The session saved these items: copy the region on screen into the pyramid (all levels)."""
        if self.index is None or self.layer is None:
            return
        if not {u.key for u in self.session.units} & set(keys):
            return
        y0, x0, _, _ = self.regions[self.index]
        from ..inference.slide_segmentation import write_pyramid_block  # lazy: it loads torch

        # grid origins are multiples of every level's factor, as the segmentation's blocks are
        with self._lock:
            write_pyramid_block(self.labels, y0, x0, np.asarray(self.layer.data, np.uint8))
            self._written.update(keys)
        try:
            self.slide_layer.refresh()
        except Exception:  # noqa: BLE001  (the multiscale layer may have been closed; the zarr is what counts)
            pass


def result_schema(zarr_path: str | Path) -> Any:
    """The classes (``ClassSchema``) a whole-slide result's zarr was written with; None for one without them."""
    import zarr

    from ..classes import ClassSchema

    attrs = dict(zarr.open_group(str(zarr_path), mode="r").attrs)
    return ClassSchema.from_dict(attrs["schema"]) if "schema" in attrs else None


def editor_for(session: Any) -> SlideRegionEditor | None:
    return getattr(session, "region_editor", None)


def start_region_editor(session: Any, slide_layer: Any) -> SlideRegionEditor | None:
    """Attach a region editor to ``session`` for a complete whole-slide result layer; show its first region."""
    meta = layer_meta(slide_layer)
    if meta.get("placement", {}).get("kind") != "slide_full" or not meta.get("zarr"):
        return None
    old = editor_for(session)
    if old is not None and old.zarr_path == Path(meta["zarr"]):
        return old
    schema = result_schema(meta["zarr"])
    if schema is not None:  # the project takes the result's classes, or refuses them before anything is shown
        # (walk-through: a gland result on a new slide project left Review's palette on the default LUAD classes
        # and the region layer drew non-gland as necrosis)
        session.use_model(SimpleNamespace(class_schema=schema, name=meta.get("model") or "model"))
    editor = SlideRegionEditor(session, slide_layer, meta["zarr"], meta.get("model") or "model")
    session.region_editor = editor
    editor.carry_reviewed()  # the user's corrected regions, not the new model's labels, in the overview too
    if editor.regions:
        editor.show(0)
    return editor
