"""The records of an annotation project's index (``project.json``): item keys, the item record, (de)serialisation.

Kept apart from :mod:`napari_wsss.store` so the format can be read and checked without the file-writing logic;
``docs/project_format.md`` describes the same format for readers outside Python.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .classes import ClassSchema
from .json_checks import check_list, check_object, check_version

FORMAT_VERSION = 1
INDEX_FILE = "project.json"
STATUSES = ("unreviewed", "corrected", "accepted")
PROTECTED = ("corrected", "accepted")  # statuses a new prediction must not overwrite silently

_REGION_RE = re.compile(r"^r(\d+)_(\d+)_(\d+)_(\d+)_l(\d+)$")


def now_utc() -> str:
    """Current UTC time, ISO 8601 with milliseconds: the `created`/`updated` stamps of the index."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


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
    """One record of the index (see :mod:`napari_wsss.store` for the meaning of each field).

    The project replaces a record with a new object on every change instead of editing it, so a change whose
    index write fails can be dropped without touching the record that is still current.
    """

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
    updated: str = field(default_factory=now_utc)
    # image-level tags (Tag widget): the foreground classes present, in schema order; None = not tagged yet,
    # [] = tagged as holding none of them. Absent from older files (read as None), ignored by older readers.
    tags: list[str] | None = None
    tagged_by: str | None = None
    tagged: str | None = None  # UTC ISO time of the last tag change

    @classmethod
    def from_dict(cls, d: dict, source: str = INDEX_FILE) -> Item:
        if "key" not in d:
            raise ValueError(f"{source}: an item record has no 'key' ({d!r}); the index is damaged.")
        known = set(cls.__dataclass_fields__)
        item = cls(**{k: v for k, v in d.items() if k in known})
        if not isinstance(item.key, str):
            raise ValueError(f"{source}: an item has key {item.key!r}; expected a tile name. The index is damaged.")
        check_key(item.key)
        if item.status not in STATUSES:
            raise ValueError(f"{source}: item {item.key!r} has status {item.status!r}; expected one of {STATUSES}.")
        item.check_fields(source)
        if item.tags is not None and (not isinstance(item.tags, list)
                                      or not all(isinstance(t, str) for t in item.tags)):
            raise ValueError(f"{source}: item {item.key!r} has tags {item.tags!r}; expected a list of class names.")
        return item

    def check_fields(self, source: str) -> None:
        """A ValueError naming the field when one has the wrong type (code reading it would fail far from here,
        or an export would copy the damage into a manifest)."""
        def bad(field: str, expected: str) -> ValueError:
            return ValueError(f"{source}: item {self.key!r} has {field} {getattr(self, field)!r:.60}; expected "
                              f"{expected}. The index is damaged; fix that field or re-open the data in the viewer.")

        for f in ("image", "model", "updated"):
            if getattr(self, f) is not None and not isinstance(getattr(self, f), str):
                raise bad(f, "text")
        for f, kind in (("mask", "masks"), ("prediction", "predictions"), ("touched", "touched")):
            v = getattr(self, f)
            if v is not None and v != f"{kind}/{self.key}.png":  # files are named by key; anything else is damage
                raise bad(f, f"null or '{kind}/{self.key}.png'")
        ints = lambda v, n: (isinstance(v, list) and len(v) in n  # noqa: E731
                             and all(isinstance(x, int) and not isinstance(x, bool) for x in v))
        if self.shape is not None and not (ints(self.shape, (2,)) and min(self.shape) >= 1):
            raise bad("shape", "null or [H, W]")
        if self.region is not None and not ints(self.region, (4, 5)):
            raise bad("region", "null or [y0, x0, y1, x1(, level)]")
        tf = self.touched_fraction
        if isinstance(tf, bool) or not isinstance(tf, (int, float)) or not 0 <= tf <= 1:
            raise bad("touched_fraction", "a share from 0 to 1")


_TAG_FIELDS = ("tags", "tagged_by", "tagged")


def _record_dict(it: Item) -> dict[str, Any]:
    """An item as JSON; untagged items leave the tag fields out, so files without tags stay as they were."""
    d = asdict(it)
    if it.tags is None:
        for k in _TAG_FIELDS:
            d.pop(k)
    return d


SCHEMA_SET_BY = ("user", "default", "model")


def index_dict(source: str, created: str, schema: ClassSchema, items: dict[str, Item],
               schema_set_by: str = "user") -> dict[str, Any]:
    """The JSON object of ``project.json`` for these records (items in registration order).

    ``schema_set_by`` says who chose the classes: ``"user"`` (given when the project was made), ``"default"``
    (nobody: a project opened before any model ran) or ``"model"`` (the first model that wrote into it). While
    the project holds no user work, a model of other classes may replace default and model-set classes
    (``Project.adopt_schema``). Written as ``"schema_default": true`` / ``"schema_set_by": "model"``; absent
    means ``"user"`` (older files)."""
    d = {
        "format": "napari-wsss annotation project",
        "format_version": FORMAT_VERSION,
        "source": source,
        "created": created,
        "updated": now_utc(),
        "schema": schema.to_dict(),
        "items": [_record_dict(it) for it in items.values()],
    }
    if schema_set_by == "default":
        d["schema_default"] = True
    elif schema_set_by == "model":
        d["schema_set_by"] = "model"
    return d


def read_index(root: Path) -> tuple[str, ClassSchema, dict[str, Item], str | None, str]:
    """(source, schema, items by key, created, schema_set_by) of the project folder ``root``, with a clear error
    when damaged."""
    path = root / INDEX_FILE
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"No annotation project at {root} (no {INDEX_FILE}).") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); the project index is damaged. The masks in "
                         f"{root / 'masks'} are intact; move project.json away to rebuild it.") from e
    fix = f"the project index is damaged. The masks in {root / 'masks'} are intact; move project.json away to rebuild it."
    d = check_object(d, "the index", str(path), fix)
    version = check_version(d, str(path), fix)
    if version > FORMAT_VERSION:
        raise ValueError(f"{path}: project format {version} is newer than this napari-wsss "
                         f"understands ({FORMAT_VERSION}); upgrade napari-wsss.")
    schema = ClassSchema.from_dict(check_object(d.get("schema"), "'schema'", str(path), fix))
    items = {r["key"]: Item.from_dict(r, str(path)) for r in check_list(d, "items", str(path), fix)}
    set_by = "default" if d.get("schema_default") else d.get("schema_set_by", "user")
    if set_by not in SCHEMA_SET_BY:
        raise ValueError(f"{path}: 'schema_set_by' is {set_by!r}; expected one of {SCHEMA_SET_BY}. {fix}")
    return d.get("source", ""), schema, items, d.get("created"), set_by
