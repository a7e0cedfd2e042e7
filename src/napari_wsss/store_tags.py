"""Image-level tags kept in an annotation project: which of the schema's tissue classes a tile holds.

A tag is the cheap kind of annotation weak supervision learns from (the Tag widget makes them in the viewer,
``napari-wsss train --project`` trains on them). Tags live in the item records of ``project.json`` (``tags``,
``tagged_by``, ``tagged``, see :class:`~napari_wsss.store_records.Item`) and are written like every other change:
holding the project lock, on the records as saved (re-read under the lock), so a viewer tagging beside a CLI run
or a second viewer never loses a tag.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .store_records import Item, now_utc

if TYPE_CHECKING:
    from .classes import ClassSchema


def current_user() -> str:
    """Who tags (recorded with each tag): the login name, or ``"unknown"`` where the OS gives none."""
    try:
        return getpass.getuser() or "unknown"
    except (OSError, KeyError, ImportError):
        return "unknown"


def canonical_tags(schema: ClassSchema, names: Iterable[str] | None, where: str = "tags") -> list[str] | None:
    """``names`` as the schema spells them, in schema order, each once; None stays None (untagged).

    Raises:
        ValueError: a name no tissue class of the schema has (background cannot be tagged: image-level labels
            say which tissue is present, glass is implied).
    """
    if names is None:
        return None
    if isinstance(names, str):
        raise TypeError(f"{where}: expected a list of class names, got the string {names!r}; write [{names!r}].")
    wanted = {str(n).strip().lower() for n in names}
    known = {c.name.lower(): c.name for c in schema.foreground}
    bad = sorted(wanted - set(known))
    if bad:
        raise ValueError(f"{where}: {bad} are not tissue classes of the {schema.name} schema; expected some of "
                         f"{schema.foreground_names} (background is not tagged).")
    return [c.name for c in schema.foreground if c.name.lower() in wanted]


@dataclass(frozen=True)
class TagCounts:
    """How far tagging got: ``tagged`` of ``total`` items, and how many tagged items hold each class."""

    total: int
    tagged: int
    per_class: dict[str, int]

    def progress_text(self) -> str:
        """``"212 / 400 tagged"``: the Tag widget's progress line."""
        return f"{self.tagged} / {self.total} tagged"


class ProjectTags:
    """The tag part of :class:`napari_wsss.store.Project` (mixed in; uses its lock, records and change log)."""

    schema: ClassSchema
    _records: dict[str, Item]

    def set_tags(self, key: str, tags: Iterable[str] | None, by: str | None = None, *,
                 image: str | None = None, region: list[int] | None = None) -> Item:
        """Tag one item with the classes it holds (None: remove its tag); creates the item when it is new.

        Args:
            key: tile stem or region key (``r{y0}_{x0}_{y1}_{x1}_l{level}``).
            tags: foreground class names present in the tile ([] = none of them).
            by: who tagged (default the login name).
            image / region: the item's source when it is registered now.
        """
        return self.set_tags_many({key: tags}, by, images={key: image} if image else None,
                                  regions={key: region} if region is not None else None)[key]

    def set_tags_many(self, tags: Mapping[str, Iterable[str] | None], by: str | None = None, *,
                      images: Mapping[str, str | None] | None = None,
                      regions: Mapping[str, list[int] | None] | None = None) -> dict[str, Item]:
        """Tag many items with one index write (e.g. tags read from masks or a CSV); see :meth:`set_tags`."""
        clean = {k: canonical_tags(self.schema, v, f"tags of {k!r}") for k, v in tags.items()}
        who = by or current_user()
        out: dict[str, Item] = {}
        with self._locked():  # type: ignore[attr-defined]
            stamp = now_utc()
            for key, t in clean.items():
                it = self._record(key, (images or {}).get(key), (regions or {}).get(key))  # type: ignore[attr-defined]
                it.tags, it.tagged_by, it.tagged = t, (who if t is not None else None), stamp
                if t is None:
                    it.tagged = None
                out[key] = it
            with self._change() as (records, _):  # type: ignore[attr-defined]
                records.update(out)
        return out

    def tags(self) -> dict[str, list[str]]:
        """Tagged items only: key -> class names present (schema order)."""
        return {k: list(it.tags) for k, it in self._records.items() if it.tags is not None}

    def tag_counts(self, keys: Iterable[str] | None = None) -> TagCounts:
        """Tagging progress over ``keys`` (default every item of the project)."""
        records = self._records
        keys = list(records) if keys is None else list(keys)
        per = {n: 0 for n in self.schema.foreground_names}
        tagged = 0
        for k in keys:
            it = records.get(k)
            if it is None or it.tags is None:
                continue
            tagged += 1
            for t in it.tags:
                per[t] = per.get(t, 0) + 1
        return TagCounts(len(keys), tagged, per)

    def tag_vector(self, key: str) -> Any:
        """(n_foreground,) int64 multi-hot image-level label of a tagged item (what trainers read), or None."""
        import numpy as np

        it = self._records.get(key)
        if it is None or it.tags is None:
            return None
        present = {t.lower() for t in it.tags}
        return np.array([int(c.name.lower() in present) for c in self.schema.foreground], np.int64)
