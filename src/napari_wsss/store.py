"""The annotation project on disk: predictions, the user's corrections, which pixels they touched, model versions.

A project lives in a folder beside the data (``<folder>.wsss/`` for a tile folder ``<folder>/``,
``<stem>.wsss/`` for a slide or single image; in the user data folder for the sample data and read-only folders,
see :func:`default_project_root`) and is readable with nothing but ``json`` and PIL::

    project.json           index: format version, source, class schema, one record per item (below)
    project.lock           locked by the process writing (holds its pid), so two processes never overwrite each other's changes
    masks/<key>.png        current class map (palette PNG, dataset convention: classes 0..K-1, background K)
    predictions/<key>.png  the model's original output for the item (provenance; diff against masks/)
    touched/<key>.png      1-bit PNG: pixels the user changed (True = touched)
    models/<version>/      model versions made for this project (card.json + weights.pt, models/card.py)
    history/               a correction replaced by a forced re-prediction is copied here first; the machine
                           predictions of classes the project gave up for a new model's (adopt_schema)

An *item* is a tile (key = file stem) or a slide region (key = ``r{y0}_{x0}_{y1}_{x1}_l{level}``, level-0
pixel bounds, end-exclusive, the mask stored at ``level``). Item records hold ``key``, ``image`` (tile file) or
``region`` ([y0, x0, y1, x1, level]), ``status`` (unreviewed | corrected | accepted), ``model`` (the version
that predicted it), ``touched_fraction``, ``shape`` ([H, W] of the mask), ``updated`` (UTC ISO time) and, once tagged, ``tags`` (the tissue classes
present, image-level), ``tagged_by`` and ``tagged`` (:mod:`napari_wsss.store_tags`).
The records and their (de)serialisation live in :mod:`napari_wsss.store_records`.

Writers take the project's lock (``project.lock``, :mod:`napari_wsss._store_lock`) and re-read the index before a
change, so two processes writing one project (an import beside a viewer's autosave) keep each other's updates.
Every file is written atomically (temp file + rename): killing the process at any moment leaves each file
either old or new, never half written; the index is rewritten after the image files it points to.
Memory follows disk, never leads it: a change builds new records, writes the index, and only then becomes the
project's state. When the index write fails (disk full, no permission), the image files the change wrote are
put back (``_store_undo``) and the records in memory stay the old ones, so the project shows what is saved.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ._store_lock import ProjectLock
from ._store_undo import FileUndo
from .atomic import atomic_save, atomic_write_json
from .classes import LUAD_HISTOSEG, ClassSchema
from .store_models import ProjectModels
from .store_tags import ProjectTags
from .store_records import (
    FORMAT_VERSION,
    INDEX_FILE,
    PROTECTED,
    STATUSES,
    Item,
    check_key,
    index_dict,
    now_utc,
    parse_region_key,
    read_index,
    region_key,
)

__all__ = ["FORMAT_VERSION", "INDEX_FILE", "PROJECT_SUFFIX", "PROTECTED", "STATUSES", "Item", "Project",
           "beside_project_root", "check_key", "default_project_root", "parse_region_key", "region_key"]

PROJECT_SUFFIX = ".wsss"


def beside_project_root(source: str | Path) -> Path:
    """The project folder beside the data: ``<folder>.wsss`` beside a folder, ``<stem>.wsss`` beside a file."""
    source = Path(source).resolve()
    if source.is_dir():
        return source.parent / f"{source.name}{PROJECT_SUFFIX}"
    name = source.name
    for suffix in (".ome.tiff", ".ome.tif"):  # double suffixes: slide.ome.tif -> slide.wsss
        if name.lower().endswith(suffix):
            return source.parent / f"{name[: -len(suffix)]}{PROJECT_SUFFIX}"
    return source.parent / f"{source.stem}{PROJECT_SUFFIX}"


def takes_projects(folder: Path) -> bool:
    """Whether a project may be written into ``folder``: writable, and not marked read-only for everyone.

    ``os.access`` says yes to root everywhere; a walk-through run as root (as napari in a container is) wrote a
    project into a shared data folder whose mode, r-xr-xr-x, says nobody should write there.
    """
    import stat

    try:
        mode = folder.stat().st_mode
    except OSError:
        return False
    return os.access(folder, os.W_OK) and bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def default_project_root(source: str | Path) -> Path:
    """Where the project of ``source`` lives: beside the data (:func:`beside_project_root`), unless the data ships
    with napari-wsss (sample data inside the package or the checkout) or its folder is not writable and no
    project is there yet; then in the user data folder (``resources.user_data_dir()/projects/<digest>/``, the
    digest of the data's folder keeping same-named data of different folders apart; the name stays the same)."""
    import hashlib

    from .resources import is_shipped, user_data_dir

    beside = beside_project_root(source)
    if (beside / INDEX_FILE).is_file():
        return beside
    if not is_shipped(beside.parent) and takes_projects(beside.parent):
        return beside
    digest = hashlib.sha1(str(beside.parent).encode()).hexdigest()[:12]
    return user_data_dir() / "projects" / digest / beside.name


_F = TypeVar("_F", bound=Callable[..., Any])


def _writes(method: _F) -> _F:
    """Run a changing method holding the project lock, on the records as saved (see ``Project._locked``)."""

    @functools.wraps(method)
    def locked(self: Project, *args: Any, **kwargs: Any) -> Any:
        with self._locked():
            return method(self, *args, **kwargs)

    return locked  # type: ignore[return-value]


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What identifies one version of the index file (a rewrite is a new inode): None when there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


@dataclass
class _Batch:
    """An open :meth:`Project.batch`: the records as its single index write will store them, the files to undo."""

    items: dict[str, Item]
    files: FileUndo = field(default_factory=FileUndo)
    changed: bool = False


class Project(ProjectModels, ProjectTags):
    """An annotation project folder. Open with :meth:`Project.open`; every method writes through to disk.

    Model versions kept in the project (``models/``) come from :class:`~napari_wsss.store_models.ProjectModels`,
    image-level tags (``set_tags``, ``tags``, ``tag_counts``) from :class:`~napari_wsss.store_tags.ProjectTags`.
    """

    def __init__(self, root: Path, source: str, schema: ClassSchema, items: dict[str, Item],
                 created: str | None = None, schema_set_by: str = "user") -> None:
        self.root = Path(root)
        self.source = source
        self.schema = schema
        self.schema_set_by = schema_set_by  # user | default | model (see adopt_schema)
        self._items = items  # the records project.json holds; replaced whole, only after a successful write
        self.created = created or now_utc()
        self._batch: _Batch | None = None
        self._lock_depth = 0
        self._seen: tuple[int, int, int] | None = None  # the index version _items was read from or written as

    # -- opening -------------------------------------------------------------------------------------
    @classmethod
    def open(cls, source: str | Path, schema: ClassSchema | None = None, root: str | Path | None = None,
             create: bool = True) -> Project:
        """Open (or create) the project of a data source (tile folder, slide or image file).

        Args:
            source: the data the project annotates.
            schema: class schema; checked against an existing project, required for a new one (default LUAD).
            root: project folder; default :func:`default_project_root` (beside the data).
            create: create the project when it does not exist (otherwise FileNotFoundError).

        Raises:
            ValueError: the existing project uses another class schema, or its index is damaged/newer.
        """
        root = Path(root) if root is not None else default_project_root(source)
        if (root / INDEX_FILE).is_file():
            project = cls.load(root)
            if schema is not None and schema.names != project.schema.names:
                raise ValueError(
                    f"The project {root} uses classes {project.schema.names} ({project.schema.name}), but "
                    f"{schema.names} ({schema.name}) were asked for. Open the data with the "
                    f"{project.schema.name} schema, or give another project folder (root=...)."
                )
            return project
        if not create:
            raise FileNotFoundError(f"No annotation project at {root} (no {INDEX_FILE}).")
        project = cls(root, str(Path(source).resolve()), schema or LUAD_HISTOSEG, {},
                      schema_set_by="default" if schema is None else "user")
        with project._locked():
            if project._seen is None:  # nobody created it meanwhile
                project._commit({}, FileUndo())
        return project

    @classmethod
    def load(cls, root: str | Path) -> Project:
        """Open an existing project folder (``project.json`` inside)."""
        root = Path(root)
        seen = _stamp(root / INDEX_FILE)
        source, schema, items, created, schema_set_by = read_index(root)
        project = cls(root, source, schema, items, created, schema_set_by)
        project._seen = seen
        return project

    # -- one writer at a time ------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the project lock; on taking it, read the index again when another process rewrote it.

        A change then starts from the saved records, so it keeps what other writers saved since this project
        was opened. Re-entrant within this object (a batch holds it for all its changes).
        """
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        with ProjectLock(self.root):
            self._lock_depth = 1
            try:
                self._refresh()
                yield
            finally:
                self._lock_depth = 0

    def _refresh(self) -> None:
        seen = _stamp(self.root / INDEX_FILE)
        if seen is None or seen == self._seen:
            return
        self.source, self.schema, self._items, created, self.schema_set_by = read_index(self.root)
        self.created = created or self.created
        self._seen = seen

    # -- writing the index ---------------------------------------------------------------------------
    @contextmanager
    def batch(self) -> Iterator[Project]:
        """Write the index once for many item changes (e.g. a prediction of a whole folder).

        Changes made before an error inside the block are still written. When that one write fails, every
        change of the batch is taken back, in memory and on disk. Nested batches join the outermost one.
        """
        if self._batch is not None:
            yield self
            return
        with self._locked():  # other writers wait for the batch: its records are built on the saved ones
            batch = self._batch = _Batch(dict(self._items))
            try:
                yield self
            finally:
                self._batch = None
                if batch.changed:
                    self._commit(batch.items, batch.files)

    @contextmanager
    def _change(self) -> Iterator[tuple[dict[str, Item], FileUndo]]:
        """One change: the caller puts new records (key -> Item) in the dict and logs the files it writes.

        Leaving writes the index with the new records (or hands them to the open batch); an error anywhere
        undoes the files and leaves the records in memory as they were.
        """
        records: dict[str, Item] = {}
        files = FileUndo()
        try:
            yield records, files
        except BaseException:
            files.undo()
            raise
        if self._batch is not None:
            self._batch.items.update(records)
            self._batch.files.absorb(files)
            self._batch.changed = self._batch.changed or bool(records)
        elif records:
            self._commit({**self._items, **records}, files)

    def _commit(self, items: dict[str, Item], files: FileUndo) -> None:
        """Write ``items`` as the index, then make them current; if the write fails, undo ``files`` instead."""
        try:
            atomic_write_json(self.root / INDEX_FILE, index_dict(self.source, self.created, self.schema, items,
                                                                 self.schema_set_by))
        except BaseException:
            files.undo()
            raise
        self._items = items
        self._seen = _stamp(self.root / INDEX_FILE)
        files.forget()

    @property
    def schema_default(self) -> bool:
        """Nobody chose the classes yet: the project was opened before any model ran (default LUAD)."""
        return self.schema_set_by == "default"

    def user_work(self) -> dict[str, int]:
        """What a person made in the project: items corrected, accepted or painted (``reviewed``), items tagged
        (``tagged``) and model versions kept in it (``models``). Machine predictions are not user work."""
        recs = self._records.values()
        return {"reviewed": sum(it.status in PROTECTED or it.touched_fraction > 0 for it in recs),
                "tagged": sum(it.tags is not None for it in recs),
                "models": len(self.model_versions())}

    def schema_refusal(self, schema: ClassSchema, advice: str | None = None, by: str = "model") -> str | None:
        """Why a model of ``schema`` may not write into the project, or None when it may (the classes match, or
        :meth:`adopt_schema` can take the model's: the classes were not a person's choice and no user work).
        ``advice`` replaces the closing "what to do" (the viewer says it in its own terms). ``by="user"``: a person
        choosing the classes may change their own earlier choice while the project holds no user work."""
        if schema.names == self.schema.names:
            return None
        advice = advice or ("Choose a model of the project's classes, or use another project folder for these "
                            f"images (what is in {self.root} stays there).")
        if self.schema_set_by == "user" and by != "user":
            return (f"The project {self.root} was made for the classes {self.schema.names} ({self.schema.name}); a "
                    f"model of {schema.names} ({schema.name}) cannot write into it. {advice}")
        work = self.user_work()
        if any(work.values()):
            what = ", ".join(f"{n} {k}" for k, n in (("item(s) corrected or accepted", work["reviewed"]),
                                                     ("item(s) tagged", work["tagged"]),
                                                     ("model version(s)", work["models"])) if n)
            return (f"The project {self.root} holds your work on the classes {self.schema.names} "
                    f"({self.schema.name}): {what}; a model of {schema.names} ({schema.name}) cannot write into it. "
                    f"{advice}")
        return None

    @_writes
    def adopt_schema(self, schema: ClassSchema, by: str = "model") -> bool:
        """Take the classes of a model about to write into the project (``by="user"``: the classes a person chose,
        e.g. in Tag, before any work); returns whether the classes changed.

        A project opened before any model ran starts with the default classes, and one whose classes a model
        set holds only machine output: while no person corrected, accepted or tagged anything (and no model
        version was made in it), the model that segments next decides the classes. Predictions of the old
        classes are kept aside in ``history/<time>-<schema>/`` (not deleted); the item records stay, emptied.

        Raises:
            ValueError: the classes were given when the project was made, or it holds user work
                (:meth:`schema_refusal` says which, and what to do).
        """
        if by not in ("model", "user"):
            raise ValueError(f"adopt_schema(by={by!r}): expected 'model' or 'user'.")
        if schema.names == self.schema.names:
            if self.schema_set_by == "default" or (by == "user" and self.schema_set_by != "user"):
                self.schema_set_by = by  # the default classes are now a choice (a model's, or the person's)
                self._commit(dict(self._items), FileUndo())
            return False
        refusal = self.schema_refusal(schema, by=by)
        if refusal:
            raise ValueError(refusal)
        old, old_by = self.schema, self.schema_set_by
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        aside = self.root / "history" / f"{stamp}-{old.name}"
        moved: list[str] = []
        items = {k: replace(it, mask=None, prediction=None, touched=None, touched_fraction=0.0, model=None,
                            status="unreviewed", updated=now_utc()) for k, it in self._items.items()}
        try:
            for kind in ("masks", "predictions", "touched"):  # whole-slide zarr results name their model
                if (self.root / kind).exists():
                    aside.mkdir(parents=True, exist_ok=True)
                    os.replace(self.root / kind, aside / kind)
                    moved.append(kind)
            if moved:
                atomic_write_json(aside / "schema.json", old.to_dict())
            self.schema, self.schema_set_by = schema, by
            self._commit(items, FileUndo())
        except BaseException:
            self.schema, self.schema_set_by = old, old_by
            for kind in moved:  # put the old predictions back where the unchanged index points
                os.replace(aside / kind, self.root / kind)
            raise
        return True

    # -- items ---------------------------------------------------------------------------------------
    @property
    def _records(self) -> dict[str, Item]:
        """The records as changes see them: those of the open batch (written at its end), else the saved ones."""
        return self._batch.items if self._batch is not None else self._items

    def items(self) -> list[Item]:
        """All item records, in the order they were first registered."""
        return list(self._records.values())

    def item(self, key: str) -> Item:
        try:
            return self._records[key]
        except KeyError:
            raise KeyError(f"No item {key!r} in the project {self.root}.") from None

    def __contains__(self, key: str) -> bool:
        return key in self._records

    @_writes
    def register(self, entries: list[dict[str, Any]]) -> None:
        """Add items that are not there yet, e.g. every tile of a folder: ``[{"key", "image"|"region"}, ...]``.

        Existing records are left as they are; the index is written once.
        """
        new: dict[str, Item] = {}
        for e in entries:
            key = check_key(e["key"])
            if key not in self._records and key not in new:
                new[key] = Item(key, image=e.get("image"), region=e.get("region"), shape=e.get("shape"))
        with self._change() as (records, _):
            records.update(new)

    def _record(self, key: str, image: str | None = None, region: list[int] | None = None) -> Item:
        """A new record for ``key`` to fill in: a copy of the current one (left untouched), or a fresh one."""
        old = self._records.get(check_key(key))
        if old is None:
            if region is None and (r := parse_region_key(key)) is not None:
                region = list(r)
            it = Item(key)
        else:
            it = replace(old)
        if image is not None:
            it.image = image
        if region is not None:
            it.region = [int(v) for v in region]
        return it

    def is_protected(self, key: str) -> bool:
        """True when the user corrected or accepted the item: a new prediction must ask first."""
        it = self._records.get(key)
        return it is not None and it.status in PROTECTED

    def counts(self) -> dict[str, int]:
        """``{"total", "unreviewed", "corrected", "accepted", "reviewed", "predicted"}``."""
        records = self._records
        c = {s: 0 for s in STATUSES}
        for it in records.values():
            c[it.status] += 1
        return {"total": len(records), **c, "reviewed": c["corrected"] + c["accepted"],
                "predicted": sum(it.prediction is not None for it in records.values())}

    # -- files ---------------------------------------------------------------------------------------
    def path(self, kind: str, key: str) -> Path:
        """File of an item: ``kind`` is ``masks``, ``predictions`` or ``touched``."""
        if kind not in ("masks", "predictions", "touched"):
            raise ValueError(f"Unknown project file kind {kind!r}; expected masks, predictions or touched.")
        return self.root / kind / f"{check_key(key)}.png"

    def _write_class_map(self, kind: str, key: str, class_map: np.ndarray, files: FileUndo) -> str:
        from .data.tiles import write_mask

        path = self.path(kind, key)
        files.keep(path)
        write_mask(path, class_map, self.schema)
        return str(path.relative_to(self.root))

    def _write_touched(self, key: str, touched: np.ndarray, files: FileUndo) -> str:
        from PIL import Image

        path = self.path("touched", key)
        files.keep(path)
        with atomic_save(path) as tmp:
            Image.fromarray(np.asarray(touched, dtype=bool)).save(tmp, format="PNG")  # mode "1": 1 bit/pixel
        return str(path.relative_to(self.root))

    def load_mask(self, key: str) -> np.ndarray | None:
        """Current class map of an item, (H, W) uint8 (dataset convention), or None when none is saved."""
        return self._read_class_map("masks", key)

    def load_prediction(self, key: str) -> np.ndarray | None:
        """The model's original class map for an item, or None."""
        return self._read_class_map("predictions", key)

    def load_touched(self, key: str) -> np.ndarray | None:
        """(H, W) bool map of the pixels the user changed, or None when the item was never edited."""
        from PIL import Image

        path = self.path("touched", key)
        if not path.is_file():
            return None
        with Image.open(path) as im:
            return np.asarray(im.convert("1"), dtype=bool)

    def _read_class_map(self, kind: str, key: str) -> np.ndarray | None:
        from .data.tiles import read_mask

        path = self.path(kind, key)
        return read_mask(path, self.schema) if path.is_file() else None

    # -- writing -------------------------------------------------------------------------------------
    @_writes
    def save_prediction(self, key: str, class_map: np.ndarray, model: Any, *, image: str | None = None,
                        region: list[int] | None = None, force: bool = False) -> Item:
        """Store a model's output for an item as its prediction and its current mask.

        Args:
            class_map: (H, W) uint8 class map (dataset convention).
            model: a ``ModelCard`` (its classes are checked against the project) or a version name.
            force: replace a corrected/accepted item; its correction is copied to ``history/`` first.

        Raises:
            ValueError: the model's classes differ from the project's, or the item is corrected/accepted and
                ``force`` is False (nothing is written then).
        """
        name = model if isinstance(model, str) else (model.name or "model")
        if not isinstance(model, str):
            self.check_model(model)
        check_key(key)
        if self.is_protected(key) and not force:
            raise ValueError(f"Item {key!r} is {self._records[key].status} by the user; a new prediction would "
                             "replace that work. Skip it, or pass force=True (the correction goes to history/).")
        cm = self.schema.validate_class_map(class_map, source=f"prediction for {key}")
        it = self._record(key, image, region)
        with self._change() as (records, files):
            if self.is_protected(key):
                self._archive(key, files)
            it.prediction = self._write_class_map("predictions", key, cm, files)
            it.mask = self._write_class_map("masks", key, cm, files)
            files.remove(self.path("touched", key))
            it.touched, it.touched_fraction = None, 0.0
            it.status, it.model, it.shape, it.updated = "unreviewed", name, list(cm.shape), now_utc()
            records[key] = it
        return it

    @_writes
    def save_correction(self, key: str, class_map: np.ndarray, touched: np.ndarray) -> Item:
        """Store the user's current class map of an item and the pixels they touched.

        The status becomes ``corrected`` when anything is touched; an untouched item keeps ``accepted`` or
        falls back to ``unreviewed`` (an undo back to the prediction).

        Args:
            class_map: (H, W) uint8 class map (dataset convention).
            touched: (H, W) bool, True where the user changed or painted a pixel.
        """
        cm = self.schema.validate_class_map(class_map, source=f"correction for {key}")
        touched = np.asarray(touched, dtype=bool)
        if touched.shape != cm.shape:
            raise ValueError(f"Correction for {key!r}: touched map shape {touched.shape} differs from the mask's "
                             f"{cm.shape}; both must cover the same pixels.")
        it = self._record(key)
        with self._change() as (records, files):
            it.mask = self._write_class_map("masks", key, cm, files)
            it.touched = self._write_touched(key, touched, files)
            it.touched_fraction = round(float(touched.mean()) if touched.size else 0.0, 6)
            it.shape, it.updated = list(cm.shape), now_utc()
            if touched.any():
                it.status = "corrected"
            elif it.status == "corrected":
                it.status = "unreviewed"
            records[key] = it
        return it

    @_writes
    def set_status(self, key: str, status: str) -> Item:
        """Mark an item ``unreviewed``, ``corrected`` or ``accepted``."""
        if status not in STATUSES:
            raise ValueError(f"Unknown status {status!r}; expected one of {STATUSES}.")
        it = self._record(key)
        it.status, it.updated = status, now_utc()
        with self._change() as (records, _):
            records[key] = it
        return it

    @_writes
    def set_model(self, key: str, model: str) -> Item:
        """Record which model version predicted an existing item (provenance, e.g. from an imported set)."""
        if not isinstance(model, str) or not model:
            raise TypeError(f"Model version of {key!r}: expected a non-empty version name (str), got {model!r}.")
        it = replace(self.item(key), model=model, updated=now_utc())
        with self._change() as (records, _):
            records[key] = it
        return it

    def _archive(self, key: str, files: FileUndo) -> None:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        for kind in ("masks", "touched"):
            src = self.path(kind, key)
            if src.is_file():
                dst = self.root / "history" / f"{key}.{stamp}.{kind}.png"
                files.keep(dst)  # a new file: removed again if the change fails
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
