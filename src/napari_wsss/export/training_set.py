"""Export an annotation project (``store.py``) as a training set other tools read, with a manifest.

Layout of an exported set (every part optional but the manifest)::

    manifest.json                    provenance of every tile + sha256 of every file (export/manifest.py)
    img/<name>.png|.tif              tile images (RGB)
    mask/<name>.png|.tif             class maps, palette (LUAD-HistoSeg val/test layout: img/ + mask/)
    training/<name>-[1 0 0 1].png    the tile again, image-level label in the file name (LUAD-HistoSeg training/)
    labels.csv                       filename,<class names>: image-level labels of img/ (0/1)
    geojson/<source>.geojson         class polygons per slide (level-0 pixels) or per tile (QuPath-compatible)
    slides/<slide>.ome.zarr          OME-NGFF label pyramid of the slide's annotated regions
    slides/<slide>.labels.tif        the same as a tiled pyramidal palette TIFF
    provenance/touched/<key>.png     1-bit maps of the pixels the reviewer changed (for re-import)

The set is written into a temporary folder beside ``out_dir`` and renamed into place when complete
(``atomic.atomic_dir``): a failure, a full disk or a cancel leaves nothing behind.
"""

from __future__ import annotations

import csv
import datetime as _dt
import errno
import os
import re
import shutil
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_dir
from ..classes import ClassSchema
from ..data.tiles import format_label_name
from ..events import Cancelled, Progress, StopFlag, never_stop
from ..store import INDEX_FILE, Item, Project, default_project_root
from .manifest import FORMAT, FORMAT_VERSION, write_manifest
from .slides import SourceReader, resize_nearest, write_slide_labels

FORMATS = ("png", "tiff", "labels", "geojson", "ome-zarr", "pyramidal-tiff")
DEFAULT_FORMATS = ("png", "labels", "geojson")
FILTERS: dict[str, tuple[str, ...]] = {
    "accepted": ("accepted",),
    "corrected": ("corrected",),
    "reviewed": ("corrected", "accepted"),
    "all": ("unreviewed", "corrected", "accepted"),
}
_OLD_LABEL = re.compile(r"-?\[[01\s]+\]$")


def open_project(path: str | Path) -> Project:
    """The project at ``path``: a project folder, or the data (tile folder, slide) it annotates.

    Raises:
        FileNotFoundError: neither is there — naming what was looked for.
    """
    path = Path(path)
    if (path / INDEX_FILE).is_file():
        return Project.load(path)
    if path.exists() and (default_project_root(path) / INDEX_FILE).is_file():
        return Project.load(default_project_root(path))
    raise FileNotFoundError(
        f"No annotation project at {path}: expected a folder with {INDEX_FILE} (e.g. <tiles>.wsss/ beside the data), "
        "or the tile folder/slide it annotates. Open the data in napari and review it first (Review widget).")


def check_options(formats: Any, filter: str, tile_size: int, overlap: int, level: int | None) -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(f.lower() for f in ([formats] if isinstance(formats, str) else formats)))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"Unknown export format(s) {bad or formats}; expected some of {', '.join(FORMATS)}.")
    if "png" in formats and "tiff" in formats:
        raise ValueError("Choose one tile format: png or tiff, not both.")
    if filter not in FILTERS:
        raise ValueError(f"Unknown filter {filter!r}; expected one of {', '.join(FILTERS)}.")
    if tile_size < 0 or (tile_size and tile_size < 8):
        raise ValueError(f"Tile size {tile_size}: expected 0 (no tiling) or at least 8 pixels.")
    if overlap < 0 or (tile_size and overlap >= tile_size):
        raise ValueError(f"Overlap {overlap}: expected 0 <= overlap < tile size ({tile_size}).")
    if level is not None and level < 0:
        raise ValueError(f"Level {level}: expected a pyramid level >= 0 (0 = full resolution).")
    return formats


def grid_starts(n: int, size: int, overlap: int) -> list[int]:
    """Tile starts along one axis: stride ``size - overlap``; the last tile ends at ``n`` (no partial tiles)."""
    if size <= 0 or n <= size:
        return [0]
    starts = list(range(0, n - size + 1, size - overlap))
    if starts[-1] + size < n:
        starts.append(n - size)
    return starts


def image_labels(class_map: np.ndarray, schema: ClassSchema, min_fraction: float = 0.0) -> np.ndarray:
    """(n_foreground,) int64 multi-hot: foreground classes covering more than ``min_fraction`` of the map."""
    counts = np.bincount(class_map.ravel(), minlength=schema.n_classes)[: schema.n_foreground]
    return (counts > min_fraction * class_map.size).astype(np.int64)


def _item_level(it: Item, shape: tuple[int, int]) -> tuple[int, float]:
    """(level, downsample) at which an item's mask is stored (tiles: 0, 1.0)."""
    if it.region is None:
        return 0, 1.0
    y0, _, y1, _, level = it.region
    return int(level), (y1 - y0) / shape[0]


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    if path.suffix == ".png":
        from PIL import Image

        Image.fromarray(rgb).save(path, format="PNG")
    else:
        import tifffile

        tifffile.imwrite(path, rgb, photometric="rgb", compression="zlib")


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # same folder tree: no second copy of the pixels on disk
    except OSError:
        shutil.copy2(src, dst)


def export_project(
    project_dir: str | Path,
    out_dir: str | Path,
    formats: Any = DEFAULT_FORMATS,
    filter: str = "reviewed",
    tile_size: int = 0,
    overlap: int = 0,
    level: int | None = None,
    overwrite: bool = False,
    label_style: str = "luad",
    label_min_fraction: float = 0.0,
    should_stop: StopFlag = never_stop,
    geojson_min_area: int = 0,
    geojson_tolerance: float = 0.0,
) -> Generator[Progress, None, Path]:
    """Export the masks of a project as a training set (layout in the module docstring).

    Args:
        project_dir: the project folder (``*.wsss``) or the data it annotates.
        out_dir: folder to create; must be empty or absent unless ``overwrite``.
        formats: some of :data:`FORMATS`.
        filter: which items: ``accepted``, ``corrected``, ``reviewed`` (both) or ``all`` (with a mask).
        tile_size: cut items into ``tile_size`` squares (0: one tile per item); ``overlap`` pixels shared.
        level: pyramid level of slide tiles (None: the level each region was reviewed at).
        label_style: ``luad`` (``-[1 0 0 1]``) or ``bcss`` (``-[1001]``) names in ``training/``.
        label_min_fraction: a class is in a tile's image-level label when it covers more than this fraction.
        geojson_min_area, geojson_tolerance: GeoJSON outlines leave out specks of fewer pixels and are simplified
            to within this many pixels (defaults: every pixel, exact; see ``vectors.mask_polygons``).

    Yields Progress per item; returns the path of the finished set.

    Raises:
        FileNotFoundError / ValueError: bad project path or options, nothing to export (named, with the fix).
        FileExistsError: ``out_dir`` is not empty and ``overwrite`` is False.
        OSError: the target cannot be written (read-only, disk full); nothing is left behind.
        Cancelled: ``should_stop`` became true; nothing is left behind.
    """
    formats = check_options(formats, filter, tile_size, overlap, level)
    project = open_project(project_dir)
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} is a file; give a folder for the export.")
    if out_dir.resolve() == project.root.resolve() or project.root.resolve() in out_dir.resolve().parents:
        raise ValueError(f"{out_dir} is inside the project {project.root}; export to a folder outside it.")
    chosen = [it for it in project.items() if it.status in FILTERS[filter]]
    lost = [it.key for it in chosen if it.mask is not None and not project.path("masks", it.key).is_file()]
    if lost:  # a corrected tile must not silently leave the training set
        raise FileNotFoundError(
            f"The project index lists a mask for {len(lost)} item(s) whose mask file is missing from "
            f"{project.root / 'masks'} ({', '.join(lost[:5])}{'...' if len(lost) > 5 else ''}); restore the files "
            "(e.g. from a backup or an earlier export), or mark those items unreviewed, then export again.")
    items = [it for it in chosen if project.path("masks", it.key).is_file()]
    if not items:
        counts, n_tagged = project.counts(), len(project.tags())
        summary = (f"{counts['total']} items: {counts['unreviewed']} unreviewed, {counts['corrected']} corrected, "
                   f"{counts['accepted']} accepted" + (f", {n_tagged} tagged" if n_tagged else "") + ")")
        # 'all' found no mask at all: suggesting filter 'all' again (as it did) helps nobody
        what = (f"no item has a mask yet ({summary}. Segment and review some first" if filter == "all" else
                f"no item with a mask is {filter} ({summary}. Review some, or choose filter 'all'")
        tags = (f"; tags are image-level labels, not masks: train from them with `napari-wsss train --project "
                f"{project.root}`" if n_tagged else "")
        raise ValueError(f"Nothing to export from {project.root}: {what}{tags}.")
    try:
        with atomic_dir(out_dir, overwrite=overwrite) as tmp:
            yield from _export_into(tmp, project, items, formats, filter, tile_size, overlap, level,
                                             label_style, label_min_fraction, should_stop,
                                             (geojson_min_area, geojson_tolerance))
    except OSError as e:
        if isinstance(e, (FileExistsError, FileNotFoundError)):
            raise
        what = "the disk is full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else (
            "it is read-only or not yours" if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else e.strerror)
        raise OSError(e.errno, f"Cannot write the export to {out_dir}: {what} ({e}). Nothing was written; choose "
                      "another folder or free some space and export again.") from e
    return out_dir


def _export_into(tmp: Path, project: Project, items: list[Item], formats: tuple[str, ...], filter: str,
                 tile_size: int, overlap: int, level: int | None, label_style: str, label_min_fraction: float,
                 should_stop: StopFlag, vector_options: tuple[int, float] = (0, 0.0)
                 ) -> Generator[Progress, None, None]:
    from .. import __version__
    from .vectors import class_map_to_features, write_geojson

    schema = project.schema
    tile_fmt = "png" if "png" in formats else "tiff" if "tiff" in formats else None
    want_images = tile_fmt is not None or "labels" in formats
    suffix = ".png" if tile_fmt != "tiff" else ".tif"
    if want_images:
        (tmp / "img").mkdir()
    if tile_fmt:
        (tmp / "mask").mkdir()
    if "labels" in formats:
        (tmp / "training").mkdir()
    sources = SourceReader(project)
    tiles_rec, items_rec, csv_rows, notes = [], [], [], []
    features: dict[str, list[dict]] = {}
    slide_blocks: list[tuple[Item, np.ndarray, int, float]] = []
    used_names: set[str] = set()
    try:
        for n, it in enumerate(items):
            if should_stop():
                raise Cancelled("export cancelled")
            yield Progress(n, len(items), f"exporting {it.key}")
            mask = project.load_mask(it.key)
            touched = project.load_touched(it.key)
            ilevel, ids = _item_level(it, mask.shape)
            oy, ox = (it.region[0], it.region[1]) if it.region else (0, 0)
            items_rec.append({"key": it.key, "image": str(sources.tile_path(it)) if it.region is None else None,
                              "region": it.region, "level": ilevel, "downsample": ids, "shape": list(mask.shape),
                              "status": it.status, "model": it.model, "touched_fraction": it.touched_fraction,
                              "updated": it.updated})
            if touched is not None and touched.shape == mask.shape:
                from PIL import Image

                p = tmp / "provenance" / "touched" / f"{it.key}.png"
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(touched).save(p, format="PNG")
            if "geojson" in formats:
                src = default_project_root(project.source).stem if it.region else it.key
                features.setdefault(src, []).extend(class_map_to_features(
                    mask, schema, (oy, ox), ids, item=it.key, min_area=vector_options[0], tolerance=vector_options[1]))
            if it.region is not None and ({"ome-zarr", "pyramidal-tiff"} & set(formats)):
                slide_blocks.append((it, mask, ilevel, ids))
            if not want_images:
                continue
            # the tiles' level: the item's own, or the one asked for (slide regions only)
            tlevel, tds, tmask, ttouched = ilevel, ids, mask, touched
            if level is not None and it.region is not None and level != ilevel:
                tlevel = level
                tds = sources.level_downsample(level)
                shp = (max(1, int(round((it.region[2] - it.region[0]) / tds))),
                       max(1, int(round((it.region[3] - it.region[1]) / tds))))
                tmask = resize_nearest(mask, shp)
                ttouched = resize_nearest(touched, shp) if touched is not None else None
            image = sources.read(it, tlevel, tmask.shape)
            base = _OLD_LABEL.sub("", it.key) or it.key
            h, w = tmask.shape
            for y in grid_starts(h, tile_size, overlap):
                for x in grid_starts(w, tile_size, overlap):
                    th, tw = (min(tile_size, h), min(tile_size, w)) if tile_size else (h, w)
                    m = tmask[y: y + th, x: x + tw]
                    if tile_size and not (m != schema.background_index).any():
                        continue  # a glass-only tile teaches nothing
                    name = base if not tile_size else f"{base}_y{int(round(oy + y * tds))}_x{int(round(ox + x * tds))}"
                    while name in used_names:
                        name += "_"
                    used_names.add(name)
                    files: dict[str, str] = {}
                    img_rel = f"img/{name}{suffix}"
                    _write_rgb(tmp / img_rel, image[y: y + th, x: x + tw])
                    files["image"] = img_rel
                    if tile_fmt:
                        from .masks import write_class_map

                        files["mask"] = f"mask/{name}{suffix}"
                        write_class_map(tmp / files["mask"], m, schema)
                    labels = image_labels(m, schema, label_min_fraction)
                    if "labels" in formats:
                        tname = Path(format_label_name(name, labels, label_style)).with_suffix(suffix).name
                        _link_or_copy(tmp / img_rel, tmp / "training" / tname)
                        files["training"] = f"training/{tname}"
                        csv_rows.append([f"{name}{suffix}", *labels.tolist()])
                    tt = ttouched[y: y + th, x: x + tw] if ttouched is not None else None
                    fr = np.bincount(m.ravel(), minlength=schema.n_classes) / m.size
                    tiles_rec.append({
                        "name": name, "files": files, "item": it.key,
                        "source": {"image": items_rec[-1]["image"], "slide": project.source if it.region else None,
                                   "region": [int(round(oy + y * tds)), int(round(ox + x * tds)),
                                              int(round(oy + (y + th) * tds)), int(round(ox + (x + tw) * tds))],
                                   "level": tlevel, "downsample": tds},
                        "item_box": [y, x, y + th, x + tw], "item_box_level": tlevel,
                        "labels": labels.tolist(),
                        "class_fractions": {c.name: round(float(fr[c.index]), 6) for c in schema.classes},
                        "model": it.model, "status": it.status,
                        "corrected": bool(tt is not None and tt.any()) or it.status == "corrected",
                        "touched_fraction": round(float(tt.mean()), 6) if tt is not None else 0.0,
                        "updated": it.updated,
                    })
        if should_stop():
            raise Cancelled("export cancelled")
        yield Progress(len(items), len(items), "writing label images and manifest")
        geojson_files = []
        for src, feats in features.items():
            rel = f"geojson/{src}.geojson"
            write_geojson(tmp / rel, feats, schema=schema.to_dict(), coordinates="level-0 pixels (x, y)")
            geojson_files.append(rel)
        slides = []
        if {"ome-zarr", "pyramidal-tiff"} & set(formats):
            if slide_blocks:
                slides.append(write_slide_labels(tmp, project, sources, slide_blocks, formats, level, schema))
            else:
                notes.append("ome-zarr / pyramidal-tiff skipped: the project has no slide regions (tiles only).")
        if csv_rows:
            with open(tmp / "labels.csv", "w", newline="") as f:
                wr = csv.writer(f)
                wr.writerow(["filename", *schema.foreground_names])
                wr.writerows(csv_rows)
    finally:
        sources.close()
    write_manifest(tmp, {
        "format": FORMAT, "format_version": FORMAT_VERSION, "napari_wsss": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
        "project": {"root": str(project.root.resolve()), "source": project.source, "created": project.created},
        "schema": schema.to_dict(),
        "options": {"formats": list(formats), "filter": filter, "tile_size": tile_size, "overlap": overlap,
                    "level": level, "label_style": label_style, "label_min_fraction": label_min_fraction},
        "conventions": {"arrays": "(y, x)", "regions": "[y0, x0, y1, x1] level-0 pixels, end-exclusive",
                        "masks": "class map: classes 0..K-1, background K (palette)",
                        "slide_labels": "napari labels: 0 = background/unannotated, class i = i + 1",
                        "geojson": "(x, y) level-0 pixels"},
        "items": items_rec, "tiles": tiles_rec, "geojson": geojson_files, "slides": slides,
        "labels_csv": "labels.csv" if csv_rows else None, "notes": notes,
    })
