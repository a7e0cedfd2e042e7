"""The annotation project on disk: predictions, the user's corrections, which pixels they touched, model versions.

A project lives in a folder beside the data (``<folder>.wsss/`` for a tile folder ``<folder>/``,
``<stem>.wsss/`` for a slide or single image) and is readable with nothing but ``json`` and PIL::

    project.json           index: format version, source, class schema, one record per item (below)
    masks/<key>.png        current class map (palette PNG, dataset convention: classes 0..K-1, background K)
    predictions/<key>.png  the model's original output for the item (provenance; diff against masks/)
    touched/<key>.png      1-bit PNG: pixels the user changed (True = touched)
    models/<version>/      model versions made for this project (card.json + weights.pt, models/card.py)
    history/               a correction replaced by a forced re-prediction is moved here first

An *item* is a tile (key = file stem) or a slide region (key = ``r{y0}_{x0}_{y1}_{x1}_l{level}``, level-0
pixel bounds, end-exclusive, the mask stored at ``level``). Item records hold ``key``, ``image`` (tile file) or
``region`` ([y0, x0, y1, x1, level]), ``status`` (unreviewed | corrected | accepted), ``model`` (the version
that predicted it), ``touched_fraction``, ``shape`` ([H, W] of the mask) and ``updated`` (UTC ISO time).

Every file is written atomically (temp file + rename): killing the process at any moment leaves each file
either old or new, never half written; the index is rewritten after the image files it points to.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_dir, atomic_save, atomic_write_json
from .classes import LUAD_HISTOSEG, ClassSchema

FORMAT_VERSION = 1
INDEX_FILE = "project.json"
PROJECT_SUFFIX = ".wsss"
STATUSES = ("unreviewed", "corrected", "accepted")
PROTECTED = ("corrected", "accepted")  # statuses a new prediction must not overwrite silently

_REGION_RE = re.compile(r"^r(\d+)_(\d+)_(\d+)_(\d+)_l(\d+)$")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def default_project_root(source: str | Path) -> Path:
    """Where the project of ``source`` lives: ``<folder>.wsss`` beside a folder, ``<stem>.wsss`` beside a file."""
    source = Path(source).resolve()
    if source.is_dir():
        return source.parent / f"{source.name}{PROJECT_SUFFIX}"
    name = source.name
    for suffix in (".ome.tiff", ".ome.tif"):  # double suffixes: slide.ome.tif -> slide.wsss
        if name.lower().endswith(suffix):
            return source.parent / f"{name[: -len(suffix)]}{PROJECT_SUFFIX}"
    return source.parent / f"{source.stem}{PROJECT_SUFFIX}"


def region_key(y0: int, x0: int, y1: int, x1: int, level: int = 0) -> str:
    """Item key of a slide region (level-0 bounds, end-exclusive; the mask is stored at ``level``)."""
    return f"r{int(y0)}_{int(x0)}_{int(y1)}_{int(x1)}_l{int(level)}"


def parse_region_key(key: str) -> tuple[int, int, int, int, int] | None:
    """(y0, x0, y1, x1, level) of a region key, or None for a tile key."""
    m = _REGION_RE.match(key)
    return tuple(int(v) for v in m.groups()) if m else None  # type: ignore[return-value]


def check_key(key: str) -> str:
    """Keys become file names: refuse path separators, hidden names and control characters."""
    if not key or "/" in key or "\\" in key or key.startswith(".") or any(ord(c) < 32 for c in key):
        raise ValueError(f"Invalid item key {key!r}: keys are tile file stems or region keys "
                         "(r{y0}_{x0}_{y1}_{x1}_l{level}); no '/', '\\', leading '.' or control characters.")
    return key


@dataclass
class Item:
    """One record of the index (see the module docstring for the meaning of each field)."""

    key: str
    image: str | None = None
    region: list[int] | None = None
    status: str = "unreviewed"
    model: str | None = None
    touched_fraction: float = 0.0
    shape: list[int] | None = None
    mask: str | None = None
    prediction: str | None = None
    touched: str | None = None
    updated: str = field(default_factory=_now)

    @classmethod
    def from_dict(cls, d: dict, source: str = "project.json") -> Item:
        if "key" not in d:
            raise ValueError(f"{source}: an item record has no 'key' ({d!r}); the index is damaged.")
        known = set(cls.__dataclass_fields__)
        item = cls(**{k: v for k, v in d.items() if k in known})
        if item.status not in STATUSES:
            raise ValueError(f"{source}: item {item.key!r} has status {item.status!r}; expected one of {STATUSES}.")
        return item


class Project:
    """An annotation project folder. Open with :meth:`Project.open`; every method writes through to disk."""

    def __init__(self, root: Path, source: str, schema: ClassSchema, items: dict[str, Item],
                 created: str | None = None) -> None:
        self.root = Path(root)
        self.source = source
        self.schema = schema
        self._items = items
        self.created = created or _now()
        self._defer = 0  # > 0 inside batch(): the index is written once at the end
        self._pending = False

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
        project = cls(root, str(Path(source).resolve()), schema or LUAD_HISTOSEG, {})
        project._write_index()
        return project

    @classmethod
    def load(cls, root: str | Path) -> Project:
        """Open an existing project folder (``project.json`` inside)."""
        root = Path(root)
        path = root / INDEX_FILE
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"No annotation project at {root} (no {INDEX_FILE}).") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e}); the project index is damaged. The masks in "
                             f"{root / 'masks'} are intact; move project.json away to rebuild it.") from e
        if int(d.get("format_version", 1)) > FORMAT_VERSION:
            raise ValueError(f"{path}: project format {d['format_version']} is newer than this napari-wsss "
                             f"understands ({FORMAT_VERSION}); upgrade napari-wsss.")
        schema = ClassSchema.from_dict(d["schema"])
        items = {r["key"]: Item.from_dict(r, str(path)) for r in d.get("items", [])}
        return cls(root, d.get("source", ""), schema, items, d.get("created"))

    @contextmanager
    def batch(self) -> Iterator[Project]:
        """Write the index once for many item changes (e.g. a prediction of a whole folder)."""
        self._defer += 1
        try:
            yield self
        finally:
            self._defer -= 1
            if self._defer == 0 and self._pending:
                self._write_index()

    def _write_index(self) -> None:
        if self._defer:
            self._pending = True
            return
        self._pending = False
        atomic_write_json(self.root / INDEX_FILE, {
            "format": "napari-wsss annotation project",
            "format_version": FORMAT_VERSION,
            "source": self.source,
            "created": self.created,
            "updated": _now(),
            "schema": self.schema.to_dict(),
            "items": [asdict(it) for it in self._items.values()],
        })

    # -- items ---------------------------------------------------------------------------------------
    def items(self) -> list[Item]:
        """All item records, in the order they were first registered."""
        return list(self._items.values())

    def item(self, key: str) -> Item:
        try:
            return self._items[key]
        except KeyError:
            raise KeyError(f"No item {key!r} in the project {self.root}.") from None

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def register(self, entries: list[dict[str, Any]]) -> None:
        """Add items that are not there yet, e.g. every tile of a folder: ``[{"key", "image"|"region"}, ...]``.

        Existing records are left as they are; the index is written once.
        """
        new = False
        for e in entries:
            key = check_key(e["key"])
            if key not in self._items:
                self._items[key] = Item(key, image=e.get("image"), region=e.get("region"), shape=e.get("shape"))
                new = True
        if new:
            self._write_index()

    def _ensure(self, key: str, image: str | None = None, region: list[int] | None = None) -> Item:
        check_key(key)
        it = self._items.get(key)
        if it is None:
            if region is None and (r := parse_region_key(key)) is not None:
                region = list(r)
            it = self._items[key] = Item(key, image=image, region=region)
        if image is not None:
            it.image = image
        if region is not None:
            it.region = [int(v) for v in region]
        return it

    def is_protected(self, key: str) -> bool:
        """True when the user corrected or accepted the item: a new prediction must ask first."""
        it = self._items.get(key)
        return it is not None and it.status in PROTECTED

    def counts(self) -> dict[str, int]:
        """``{"total", "unreviewed", "corrected", "accepted", "reviewed", "predicted"}``."""
        c = {s: 0 for s in STATUSES}
        for it in self._items.values():
            c[it.status] += 1
        total = len(self._items)
        return {"total": total, **c, "reviewed": c["corrected"] + c["accepted"],
                "predicted": sum(it.prediction is not None for it in self._items.values())}

    # -- files ---------------------------------------------------------------------------------------
    def path(self, kind: str, key: str) -> Path:
        """File of an item: ``kind`` is ``masks``, ``predictions`` or ``touched``."""
        if kind not in ("masks", "predictions", "touched"):
            raise ValueError(f"Unknown project file kind {kind!r}; expected masks, predictions or touched.")
        return self.root / kind / f"{check_key(key)}.png"

    def _write_class_map(self, kind: str, key: str, class_map: np.ndarray) -> str:
        from .data.tiles import write_mask

        path = self.path(kind, key)
        write_mask(path, class_map, self.schema)
        return str(path.relative_to(self.root))

    def _write_touched(self, key: str, touched: np.ndarray) -> str:
        from PIL import Image

        path = self.path("touched", key)
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
    def check_model(self, card: Any) -> None:
        """Raise a clear ValueError when a model (a ``ModelCard``) predicts other classes than the project."""
        from .models.card import check_schema

        check_schema(card, self.schema, "model")

    def save_prediction(self, key: str, class_map: np.ndarray, model: Any, *, image: str | None = None,
                        region: list[int] | None = None, force: bool = False) -> Item:
        """Store a model's output for an item as its prediction and its current mask.

        Args:
            class_map: (H, W) uint8 class map (dataset convention).
            model: a ``ModelCard`` (its classes are checked against the project) or a version name.
            force: replace a corrected/accepted item; its correction is moved to ``history/`` first.

        Raises:
            ValueError: the model's classes differ from the project's, or the item is corrected/accepted and
                ``force`` is False (nothing is written then).
        """
        name = model if isinstance(model, str) else (model.name or "model")
        if not isinstance(model, str):
            self.check_model(model)
        if self.is_protected(key) and not force:
            raise ValueError(f"Item {key!r} is {self._items[key].status} by the user; a new prediction would "
                             "replace that work. Skip it, or pass force=True (the correction goes to history/).")
        it = self._ensure(key, image, region)
        if self.is_protected(key):
            self._archive(key)
        cm = self.schema.validate_class_map(class_map, source=f"prediction for {key}")
        it.prediction = self._write_class_map("predictions", key, cm)
        it.mask = self._write_class_map("masks", key, cm)
        self.path("touched", key).unlink(missing_ok=True)
        it.touched, it.touched_fraction = None, 0.0
        it.status, it.model, it.shape, it.updated = "unreviewed", name, list(cm.shape), _now()
        self._write_index()
        return it

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
        it = self._ensure(key)
        it.mask = self._write_class_map("masks", key, cm)
        it.touched = self._write_touched(key, touched)
        it.touched_fraction = round(float(touched.mean()) if touched.size else 0.0, 6)
        it.shape, it.updated = list(cm.shape), _now()
        if touched.any():
            it.status = "corrected"
        elif it.status == "corrected":
            it.status = "unreviewed"
        self._write_index()
        return it

    def set_status(self, key: str, status: str) -> Item:
        """Mark an item ``unreviewed``, ``corrected`` or ``accepted``."""
        if status not in STATUSES:
            raise ValueError(f"Unknown status {status!r}; expected one of {STATUSES}.")
        it = self._ensure(key)
        it.status, it.updated = status, _now()
        self._write_index()
        return it

    def set_model(self, key: str, model: str) -> Item:
        """Record which model version predicted an existing item (provenance, e.g. from an imported set)."""
        if not isinstance(model, str) or not model:
            raise TypeError(f"Model version of {key!r}: expected a non-empty version name (str), got {model!r}.")
        it = self.item(key)
        it.model, it.updated = model, _now()
        self._write_index()
        return it

    def _archive(self, key: str) -> None:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        for kind in ("masks", "touched"):
            src = self.path(kind, key)
            if src.is_file():
                dst = self.root / "history" / f"{key}.{stamp}.{kind}.png"
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)

    # -- model versions ------------------------------------------------------------------------------
    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def model_versions(self) -> list[Path]:
        """Model version folders stored in the project (e.g. fine-tuned from its corrections), by name."""
        d = self.models_dir
        return sorted(p for p in d.iterdir() if (p / "card.json").is_file()) if d.is_dir() else []

    def add_model_version(self, folder: str | Path, name: str | None = None) -> Path:
        """Copy a model version folder into ``models/<name>`` (atomically), after checking its classes."""
        from .models.card import load_card

        card = load_card(folder)
        self.check_model(card)
        dst = self.models_dir / check_key(name or Path(folder).name)
        with atomic_dir(dst) as tmp:
            for f in Path(folder).iterdir():
                if f.is_file():
                    shutil.copy2(f, tmp / f.name)
        return dst
