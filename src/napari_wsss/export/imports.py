"""Import: an exported set back into an annotation project, and GeoJSON polygons (e.g. QuPath) into a class map.

An exported set is put back item by item: its tile masks are pasted into the item's mask (tiles cut with an
overlap agree where they overlap, since they were cut from one mask), or, when the set holds no masks, the
item's GeoJSON polygons are rasterised. Reviewer status, model version and touched map come from the manifest.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from ..classes import ClassSchema
from ..data.tiles import check_whole_size
from ..events import Cancelled, Progress, StopFlag, never_stop
from ..store import INDEX_FILE, Project, default_project_root
from ..store_records import STATUSES, check_key
from .manifest import check_manifest, load_manifest
from .masks import read_class_map
from .slides import resize_nearest
from .vectors import features_to_class_map, read_geojson


def inside_set(set_dir: Path, rel: str) -> Path:
    """``set_dir / rel``, refused when a received manifest names a file outside its own set (``../..``, an
    absolute path): such files would be read unchecked, since only the set's own files are hashed."""
    path = (set_dir / rel).resolve()
    if not path.is_relative_to(set_dir.resolve()):
        raise ValueError(f"The set's manifest names {rel!r}, which is outside the set {set_dir}; a received set "
                         "may only refer to its own files. Nothing was imported; ask for a fresh export.")
    return path


def check_records(m: dict[str, Any], source: Path) -> None:
    """Refuse a received manifest whose item or tile records would fail (or be skipped) halfway through an
    import: keys that are not file-safe names, shapes that are not [H, W], tile boxes out of order or negative."""
    fix = "Nothing was imported; fix the manifest or ask for a fresh export."
    for n, rec in enumerate(m.get("items", [])):
        key = rec.get("key")
        if not isinstance(key, str):
            raise ValueError(f"{source}: item {n} has key {key!r}; expected a tile name or region key. {fix}")
        try:
            check_key(key)
        except ValueError as e:
            raise ValueError(f"{source}: {e} {fix}") from None
        shape = rec.get("shape")
        if not _whole_numbers(shape, 2) or min(shape) < 1:
            raise ValueError(f"{source}: item {key!r} has shape {shape!r}; expected [H, W], two positive whole "
                             f"numbers. {fix}")
        region, ds = rec.get("region"), rec.get("downsample", 1.0)
        if region is not None and not (_whole_numbers(region, 4) or _whole_numbers(region, 5)):
            raise ValueError(f"{source}: item {key!r} has region {region!r}; expected null or [y0, x0, y1, x1"
                             f"(, level)] in whole level-0 pixels. {fix}")
        if ds is not None and (not isinstance(ds, (int, float)) or isinstance(ds, bool) or not 0 < ds < 1e6):
            raise ValueError(f"{source}: item {key!r} has downsample {ds!r}; expected a positive number. {fix}")
    shapes = {rec["key"]: rec["shape"] for rec in m.get("items", [])}
    levels = {rec["key"]: rec.get("level") for rec in m.get("items", [])}
    for n, t in enumerate(m.get("tiles", [])):
        files = t.get("files") or {}
        if "mask" not in files:
            continue  # a tile exported without a mask (labels only)
        mask = files["mask"]
        if not isinstance(mask, str) or not mask:
            raise ValueError(f"{source}: tile {n} has mask {mask!r}; expected a path inside the set. {fix}")
        if t.get("item") not in shapes:
            raise ValueError(f"{source}: tile {n} belongs to item {t.get('item')!r}, which the manifest does not "
                             f"list. {fix}")
        box = t.get("item_box")
        if not _whole_numbers(box, 4) or min(box) < 0 or box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"{source}: tile {n} (item {t.get('item')!r}) has item_box {box!r}; expected "
                             f"[y0, x0, y1, x1] with 0 <= y0 < y1 and 0 <= x0 < x1. {fix}")
        h, w = shapes[t["item"]]
        if t.get("item_box_level", levels[t["item"]]) == levels[t["item"]] and (box[2] > h or box[3] > w):
            raise ValueError(f"{source}: tile {n} has item_box {box!r}, outside its item {t['item']!r} of "
                             f"{h} x {w} px. {fix}")


def _whole_numbers(value: Any, n: int) -> bool:
    return (isinstance(value, list) and len(value) == n
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value))


def _item_masks(set_dir: Path, m: dict[str, Any], schema: ClassSchema) -> Generator[tuple[dict, np.ndarray], None, None]:
    tiles = defaultdict(list)
    for t in m.get("tiles", []):
        if t.get("files", {}).get("mask"):
            tiles[t["item"]].append(t)
    features: dict[str, list[dict]] = defaultdict(list)
    if any(rec["key"] not in tiles for rec in m.get("items", [])):
        for rel in m.get("geojson", []):
            for f in read_geojson(inside_set(set_dir, rel)):
                features[(f.get("properties") or {}).get("item")].append(f)
    for rec in m.get("items", []):
        key, shape = rec["key"], tuple(rec["shape"])
        check_whole_size(*shape, f"The set's item {key!r}",  # a received manifest may claim any size
                         "nothing was imported; ask for a fresh export (slide regions are at most a few thousand "
                         "pixels a side).")
        if tiles.get(key):
            cm = np.full(shape, schema.background_index, np.uint8)
            for t in tiles[key]:
                mask = read_class_map(inside_set(set_dir, t["files"]["mask"]), schema)
                y0, x0, y1, x1 = t["item_box"]
                if t.get("item_box_level", rec["level"]) != rec["level"]:  # tiled at another level: rescale
                    f = shape[0] / round((rec["region"][2] - rec["region"][0]) / t["source"]["downsample"])
                    y0, x0, y1, x1 = (int(round(v * f)) for v in (y0, x0, y1, x1))
                    mask = resize_nearest(mask, (y1 - y0, x1 - x0))
                cm[y0:y1, x0:x1] = mask[: shape[0] - y0, : shape[1] - x0]
        elif features.get(key):
            origin = (rec["region"][0], rec["region"][1]) if rec.get("region") else (0, 0)
            cm = features_to_class_map(features[key], schema, shape, origin, rec.get("downsample", 1.0))
        else:
            continue  # nothing of this item was exported (e.g. only slide label images)
        yield rec, cm


def import_set(set_dir: str | Path, project_dir: str | Path | None = None, *, source: str | Path | None = None,
               overwrite: bool = False, verify: bool = True, should_stop: StopFlag = never_stop
               ) -> Generator[Progress, None, Project]:
    """Put the masks of an exported set into a project (created when absent).

    Args:
        set_dir: the exported folder (with ``manifest.json``).
        project_dir: the project folder; default: the project the set was exported from.
        source: the data a new project annotates (default: the source recorded in the manifest).
        overwrite: replace corrected/accepted items whose mask differs (otherwise refuse, writing nothing).
        verify: check every file's sha256 against the manifest first.

    Returns the project.

    Raises:
        FileNotFoundError / ValueError: not an exported set, changed files, other classes, or conflicts.
    """
    set_dir = Path(set_dir)
    m = check_manifest(set_dir) if verify else load_manifest(set_dir)
    schema = ClassSchema.from_dict(m["schema"])
    check_records(m, set_dir / "manifest.json")
    for t in m.get("tiles", []):  # every path the set names stays inside it, checked before anything is read
        if t.get("files", {}).get("mask"):
            inside_set(set_dir, t["files"]["mask"])
    for rel in m.get("geojson", []):
        inside_set(set_dir, rel)
    if project_dir is not None:
        root = Path(project_dir)
    elif source is not None:
        root = default_project_root(source)
    else:  # a received file does not decide where on this machine a project is created or changed
        raise ValueError(f"Say which project to import into: --project DIR, or --data for the data it annotates "
                         f"(the set names {m.get('project', {}).get('root')!r}, which is not used on its own).")
    if (root / INDEX_FILE).is_file():
        project = Project.load(root)
        if project.schema.names != schema.names:
            raise ValueError(f"The set {set_dir} has classes {schema.names}, the project {root} "
                             f"{project.schema.names}; import it into a project of the same schema.")
    else:
        project = None
    # first read and check everything, then write: a conflict leaves the project as it was
    pending, conflicts = [], []
    for n, (rec, cm) in enumerate(_item_masks(set_dir, m, schema)):
        if should_stop():
            raise Cancelled("import cancelled")
        yield Progress(n, len(m.get("items", [])), f"reading {rec['key']}")
        if project is not None and project.is_protected(rec["key"]) and not overwrite:
            old = project.load_mask(rec["key"])
            if old is None or not np.array_equal(old, cm):
                conflicts.append(rec["key"])
        status = rec.get("status", "corrected")
        if status not in STATUSES:  # refused now, before the first write, not after half the items
            raise ValueError(f"The set's item {rec['key']!r} has status {status!r}; expected one of {STATUSES}. "
                             "Nothing was imported; fix the manifest or ask for a fresh export.")
        check_key(rec["key"])
        pending.append((rec, cm))
    if conflicts:
        raise ValueError(f"{len(conflicts)} items of {project.root} were corrected or accepted there and differ "
                         f"from the set (e.g. {conflicts[:3]}); nothing was imported. Pass overwrite=True "
                         "(--overwrite) to replace them.")
    if project is None:
        data = source or (m.get("project") or {}).get("source")
        if not isinstance(data, (str, Path)) or not str(data):
            raise ValueError(f"{set_dir / 'manifest.json'} names no data the new project annotates; pass --data "
                             "(the tile folder or slide). Nothing was imported.")
        project = Project.open(data, schema, root=root)
    for n, (rec, cm) in enumerate(pending):
        yield Progress(n, len(pending), f"importing {rec['key']}")
        image = None
        if rec.get("image"):
            src = Path(project.source)
            img = Path(rec["image"])
            image = str(img.relative_to(src)) if src.is_dir() and img.is_relative_to(src) else rec["image"]
        project.register([{"key": rec["key"], "image": image, "region": rec.get("region"),
                           "shape": list(cm.shape)}])
        touched = _touched(set_dir, rec["key"], cm.shape)
        if touched is None:
            pred = project.load_prediction(rec["key"])
            touched = (cm != pred) if pred is not None and pred.shape == cm.shape else np.zeros(cm.shape, bool)
        with project.batch():  # mask, provenance and status: one index write, all or nothing
            project.save_correction(rec["key"], cm, touched)
            if rec.get("model") and not project.item(rec["key"]).model:
                project.set_model(rec["key"], rec["model"])
            project.set_status(rec["key"], rec.get("status", "corrected"))
    return project


def _touched(set_dir: Path, key: str, shape: tuple[int, int]) -> np.ndarray | None:
    p = set_dir / "provenance" / "touched" / f"{key}.png"
    if not p.is_file():
        return None
    from PIL import Image

    with Image.open(p) as im:
        t = np.asarray(im.convert("1"), dtype=bool)
    return t if t.shape == shape else None
