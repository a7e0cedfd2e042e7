"""Class maps <-> GeoJSON class polygons (QuPath-compatible), in slide level-0 pixel coordinates.

The package's arrays are ``(y, x)``; GeoJSON and QuPath coordinates are ``(x, y)``. A pixel ``(r, c)`` of a
mask at ``downsample`` d whose top-left corner sits at level-0 ``origin = (y0, x0)`` covers the level-0 square
``[x0 + c*d, x0 + (c+1)*d) x [y0 + r*d, y0 + (r+1)*d)`` (QuPath's convention: pixel centres at +0.5).

Vectorising uses ``skimage.measure.find_contours`` at level 0.5 of each connected component (outer ring) and of
each hole (interior rings), so the polygon passes half-way between inside and outside pixel centres;
rasterising (``skimage.draw.polygon``) fills the pixels whose centres lie inside. The round trip is exact away
from boundaries and within one pixel at them (diagonal corners).

One Feature per (class, item): a ``MultiPolygon`` whose ``properties`` carry QuPath's ``objectType`` and
``classification`` (``name``, ``color`` as [r, g, b]) plus our ``class_index`` and ``item`` key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes
from ..classes import ClassSchema


def _ring_area(ring: np.ndarray) -> float:
    """Signed (shoelace) area of a ring, closed or not: positive when counter-clockwise in its own frame."""
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(x[:-1] @ y[1:] - y[:-1] @ x[1:] + x[-1] * y[0] - y[-1] * x[0])


def mask_polygons(binary: np.ndarray, origin: tuple[float, float] = (0, 0), downsample: float = 1.0,
                  min_area: int = 0, tolerance: float = 0.0) -> list[list[list[list[float]]]]:
    """Polygons (GeoJSON MultiPolygon coordinates: [polygon][ring][point] = [x, y]) of a boolean mask.

    One contour pass over the whole mask (components 8-connected, holes 4-connected: ``fully_connected="high"``),
    then each ring is given to its component by the pixel beside it: the cost grows with the boundary's length,
    not with the number of components times the mask (a per-pixel-noisy tile has thousands).

    Args:
        binary: (H, W) bool.
        origin: level-0 (y0, x0) of the mask's top-left corner.
        downsample: level-0 pixels per mask pixel.
        min_area: components (and holes) of fewer pixels are left out (0: keep every pixel; exact round trip).
        tolerance: simplify rings to within this many mask pixels (Douglas-Peucker; 0: exact outlines).
    """
    from skimage.measure import approximate_polygon, find_contours, label

    binary = np.asarray(binary, dtype=bool)
    if not binary.any():
        return []
    comps = np.pad(label(binary, connectivity=2), 1)
    holes = np.pad(label(~binary, connectivity=1), 1) if min_area > 1 else None
    sizes = np.bincount(comps.ravel()) if min_area > 1 else None
    hole_sizes = np.bincount(holes.ravel()) if holes is not None else None
    rings: list[tuple[int, bool, np.ndarray]] = []  # (component, is a hole, contour)
    for c in find_contours(comps > 0, 0.5, fully_connected="high", positive_orientation="high"):
        r, k = c[0]  # a point on a pixel edge: one coordinate whole, the other half-way
        a = (int(np.floor(r)), int(np.floor(k)))
        b = (int(np.ceil(r)), int(np.ceil(k)))
        lab = max(comps[a], comps[b])  # the foreground pixel beside the edge: the ring's component
        is_hole = _ring_area(c) < 0  # outlines wind one way around foreground, holes the other
        if sizes is not None and sizes[lab] < min_area:
            continue
        if is_hole and hole_sizes is not None:
            bg = holes[a] if comps[a] == 0 else holes[b]
            if hole_sizes[bg] < min_area:
                continue
        if tolerance > 0:
            c = approximate_polygon(c, tolerance)
            if len(c) < 4:
                continue
        rings.append((int(lab), is_hole, c))
    if not rings:
        return []
    # every ring converted in one go (per-ring numpy calls dominated the time for thousands of specks): rows and
    # columns become level-0 (x, y); swapping the axes flips the winding, so reversing each contour gives
    # RFC 7946's counter-clockwise outlines and clockwise holes
    rc = np.concatenate([c[::-1] for _, _, c in rings]) - 1.0  # undo the one-pixel padding
    xy = np.empty_like(rc)
    xy[:, 0] = origin[1] + (rc[:, 1] + 0.5) * downsample
    xy[:, 1] = origin[0] + (rc[:, 0] + 0.5) * downsample
    flat = np.round(xy, 3).tolist()
    outer: dict[int, list[list[float]]] = {}
    inner: dict[int, list[list[list[float]]]] = {}
    start = 0
    for lab, is_hole, c in rings:
        ring = flat[start:start + len(c)]
        start += len(c)
        if ring[0] != ring[-1]:
            ring.append(ring[0])
        if is_hole:
            inner.setdefault(lab, []).append(ring)
        else:
            outer[lab] = ring
    return [[outer[lab], *inner.get(lab, [])] for lab in sorted(outer)]


def class_map_to_features(class_map: np.ndarray, schema: ClassSchema, origin: tuple[float, float] = (0, 0),
                          downsample: float = 1.0, item: str | None = None,
                          include_background: bool = False, min_area: int = 0,
                          tolerance: float = 0.0) -> list[dict[str, Any]]:
    """GeoJSON Features (one MultiPolygon per class present) of a class map (dataset convention, (H, W) uint8).

    Args:
        origin: level-0 (y0, x0) of the map's top-left pixel; ``downsample``: level-0 pixels per map pixel.
        item: project item key recorded in ``properties`` (provenance).
        include_background: also vectorise the background class (QuPath users rarely want glass outlined).
        min_area, tolerance: see :func:`mask_polygons` (defaults: every pixel, exact outlines).
    """
    cm = schema.validate_class_map(class_map, "class map")
    feats = []
    for c in schema.classes:
        if c.background and not include_background:
            continue
        binary = cm == c.index
        if not binary.any():
            continue
        polys = mask_polygons(binary, origin, downsample, min_area, tolerance)
        if not polys:
            continue
        props: dict[str, Any] = {
            "objectType": "annotation",
            "classification": {"name": c.name, "color": list(c.colour)},
            "isLocked": False,
            "class_index": c.index,
        }
        if item is not None:
            props["item"] = item
        feats.append({"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": polys},
                      "properties": props})
    return feats


def feature_collection(features: Iterable[dict[str, Any]], **properties: Any) -> dict[str, Any]:
    fc: dict[str, Any] = {"type": "FeatureCollection", "features": list(features)}
    if properties:
        fc["properties"] = properties
    return fc


def write_geojson(path: str | Path, features: Iterable[dict[str, Any]], **properties: Any) -> Path:
    """Write a FeatureCollection atomically."""
    data = json.dumps(feature_collection(features, **properties), separators=(",", ":")).encode()
    return atomic_write_bytes(path, data)


def read_geojson(path: str | Path) -> list[dict[str, Any]]:
    """Features of a GeoJSON file: a FeatureCollection, a list of Features (QuPath's export) or one Feature.

    Raises:
        ValueError: not JSON, or no Features inside — naming the file.
    """
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"No GeoJSON file at {path}.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid GeoJSON ({e}). Export the annotations from QuPath with "
                         "File > Export objects as GeoJSON.") from e
    if isinstance(d, dict) and d.get("type") == "FeatureCollection":
        feats = d.get("features", [])
        if not isinstance(feats, list):
            raise ValueError(f"{path}: 'features' should be a list of Features, got {type(feats).__name__} "
                             f"({str(feats)[:40]!r}); the file is damaged or not GeoJSON.")
    elif isinstance(d, dict) and d.get("type") == "Feature":
        feats = [d]
    elif isinstance(d, list):
        feats = d
    else:
        raise ValueError(f"{path}: expected a GeoJSON FeatureCollection, a Feature or a list of Features; got "
                         f"{type(d).__name__} {str(d)[:80]!r}.")
    for n, f in enumerate(feats):
        if not isinstance(f, dict):
            raise ValueError(f"{path}: feature {n} should be an object ({{...}}), got {type(f).__name__} "
                             f"({str(f)[:40]!r}); the file is damaged or not GeoJSON.")
        if f.get("geometry"):
            check_geometry(f["geometry"], f"{path}: feature {n}")
    return [f for f in feats if f.get("geometry")]


_AREA_TYPES = ("Polygon", "MultiPolygon", "GeometryCollection")


def check_geometry(geometry: Any, where: str) -> None:
    """A ValueError naming ``where`` when a polygon's coordinates are not rings of >= 3 finite (x, y) points
    (NaN, text, one- or two-point rings would rasterise to nothing or fail deep inside numpy)."""
    if not isinstance(geometry, dict):
        raise ValueError(f"{where}: 'geometry' should be an object, got {type(geometry).__name__}.")
    t = geometry.get("type")
    if t == "GeometryCollection":
        parts = geometry.get("geometries", [])
        if not isinstance(parts, list):
            raise ValueError(f"{where}: 'geometries' should be a list.")
        for g in parts:
            check_geometry(g, where)
        return
    if t not in ("Polygon", "MultiPolygon"):
        return  # points and lines: no area, counted by the caller
    coords = geometry.get("coordinates")
    polys = coords if t == "MultiPolygon" else [coords]
    if not isinstance(polys, list) or not polys:
        raise ValueError(f"{where}: a {t} needs a list of coordinates, got {str(coords)[:40]!r}.")
    for poly in polys:
        if not isinstance(poly, list) or not poly:
            raise ValueError(f"{where}: a {t} needs a list of rings, got {str(poly)[:40]!r}.")
        for ring in poly:
            try:
                xy = np.asarray(ring, dtype=float)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: a polygon ring should be a list of [x, y] numbers, got "
                                 f"{str(ring)[:60]!r}.") from None
            if xy.ndim != 2 or xy.shape[1] < 2:
                raise ValueError(f"{where}: a polygon ring should be a list of [x, y] points, got "
                                 f"{str(ring)[:60]!r}.")
            if not np.isfinite(xy[:, :2]).all():
                raise ValueError(f"{where}: a polygon has a coordinate that is not a finite number (NaN or "
                                 "infinity); fix or delete that annotation and export again.")
            if len(np.unique(xy[:, :2], axis=0)) < 3:
                raise ValueError(f"{where}: a polygon ring has {len(np.unique(xy[:, :2], axis=0))} distinct "
                                 "point(s); a polygon needs at least 3 (a point or a line covers no area).")


def feature_class(feature: dict[str, Any], schema: ClassSchema) -> int | None:
    """Class index of a Feature from its QuPath ``classification`` name (or our ``class_index``); None if none."""
    props = feature.get("properties") or {}
    cls = props.get("classification")
    name = cls.get("name") if isinstance(cls, dict) else cls if isinstance(cls, str) else None
    if name:
        try:
            return schema.index_of(name)
        except KeyError:
            return None
    idx = props.get("class_index")
    return int(idx) if isinstance(idx, int) and 0 <= idx < schema.n_classes else None


def _polygons_of(geometry: dict[str, Any]) -> list[list[Any]]:
    t = geometry.get("type")
    if t == "Polygon":
        return [geometry["coordinates"]]
    if t == "MultiPolygon":
        return list(geometry["coordinates"])
    if t == "GeometryCollection":
        return [p for g in geometry.get("geometries", []) for p in _polygons_of(g)]
    return []  # points and lines carry no area


def features_bbox(features: Iterable[dict[str, Any]]) -> tuple[int, int, int, int] | None:
    """Level-0 (y0, x0, y1, x1) around every polygon, or None when there are none."""
    pts = [np.asarray(poly[0], float)[:, :2] for f in features for poly in _polygons_of(f.get("geometry") or {})
           if poly and len(poly[0])]
    if not pts:
        return None
    allp = np.vstack(pts)
    x0, y0 = np.floor(allp.min(0)).astype(int)
    x1, y1 = np.ceil(allp.max(0)).astype(int)
    return int(y0), int(x0), int(y1), int(x1)


def features_to_class_map(features: Iterable[dict[str, Any]], schema: ClassSchema, shape: tuple[int, int],
                          origin: tuple[float, float] = (0, 0), downsample: float = 1.0,
                          unknown: str = "skip", missed: list[int] | None = None) -> np.ndarray:
    """Rasterise class polygons into an (H, W) uint8 class map (background where no polygon is).

    Later features paint over earlier ones where they overlap (QuPath allows overlapping annotations).

    Args:
        shape: (H, W) of the map; ``origin``/``downsample`` place it in level-0 coordinates (see module doc).
        unknown: ``"skip"`` features whose class is not in the schema (or unclassified), or ``"error"``.
        missed: when given, the index (in ``features``) of each polygon that fills no pixel of the map
            (outside it, or thinner than a pixel) is appended: the caller tells the user.

    Raises:
        ValueError: with ``unknown="error"``, naming the unknown class and the schema's classes.
    """
    from skimage.draw import polygon as draw_polygon

    from ..data.tiles import check_whole_size

    h, w = int(shape[0]), int(shape[1])
    check_whole_size(h, w, "The mask to rasterise (--shape)", "give the shape of one region (with --origin), or "
                     "a --downsample that makes the mask smaller.")
    out = np.full((h, w), schema.background_index, np.uint8)
    for n, f in enumerate(features):
        idx = feature_class(f, schema)
        if idx is None:
            if unknown == "error":
                props = f.get("properties") or {}
                raise ValueError(f"A polygon has class {props.get('classification')!r}, which is not in the "
                                 f"{schema.name} schema ({', '.join(schema.names)}). Rename the class in QuPath or "
                                 "choose the matching schema.")
            continue
        for poly in _polygons_of(f.get("geometry") or {}):
            region = np.zeros((h, w), bool)
            for k, ring in enumerate(poly):
                xy = np.asarray(ring, float)[:, :2]
                if len(xy) < 3:
                    continue
                cols = (xy[:, 0] - origin[1]) / downsample - 0.5
                rows = (xy[:, 1] - origin[0]) / downsample - 0.5
                rr, cc = draw_polygon(rows, cols, shape=(h, w))
                region[rr, cc] = k == 0  # exterior fills, holes clear
            if missed is not None and not region.any():
                missed.append(n)
            out[region] = idx
    return out


def read_geojson_class_map(path: str | Path, schema: ClassSchema, shape: tuple[int, int] | None = None,
                           origin: tuple[float, float] | None = None, downsample: float = 1.0,
                           notes: list[str] | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Rasterise a GeoJSON file. Without ``shape``, the map covers the polygons' bounding box.

    Args:
        notes: when given, one sentence is appended for what was left out (points or lines, polygons outside
            the map), for the caller to show as a warning.

    Returns:
        (class map, level-0 origin (y0, x0) of its top-left pixel).

    Raises:
        ValueError: the file holds no polygons of the schema's classes, or none of them falls inside the map.
    """
    if not downsample > 0 or not np.isfinite(downsample):
        raise ValueError(f"--downsample {downsample}: expected a positive number of level-0 pixels per mask pixel.")
    if shape is not None and (int(shape[0]) < 1 or int(shape[1]) < 1):
        raise ValueError(f"--shape {shape[0]} {shape[1]}: the mask needs at least 1 x 1 pixels.")
    feats = read_geojson(path)
    classed = [f for f in feats if feature_class(f, schema) is not None]
    usable = [f for f in classed if _polygons_of(f["geometry"])]
    if classed and not usable:
        kinds = sorted({str(f["geometry"].get("type")) for f in classed})
        raise ValueError(f"{path}: its {len(classed)} annotation(s) of the {schema.name} classes are "
                         f"{'/'.join(kinds)} geometries, which cover no area; draw areas (polygons) and export "
                         "again.")
    if len(usable) < len(classed) and notes is not None:
        notes.append(f"{len(classed) - len(usable)} annotation(s) are points or lines (no area) and were left out.")
    if not usable:
        names = sorted({str((f.get("properties") or {}).get("classification", {}).get("name", "?"))
                        if isinstance((f.get("properties") or {}).get("classification"), dict) else "?"
                        for f in feats})
        raise ValueError(f"{path}: none of its {len(feats)} polygons has a class of the {schema.name} schema "
                         f"({', '.join(schema.foreground_names)}); found classes {names}.")
    if shape is None:
        y0, x0, y1, x1 = features_bbox(usable)  # type: ignore[misc]
        origin = (y0, x0) if origin is None else origin
        shape = (int(np.ceil((y1 - origin[0]) / downsample)), int(np.ceil((x1 - origin[1]) / downsample)))
    origin = origin or (0, 0)
    missed: list[int] = []
    cm = features_to_class_map(usable, schema, shape, origin, downsample, missed=missed)
    n_polys = sum(len(_polygons_of(f["geometry"])) for f in usable)
    if missed:
        y0, x0 = origin
        where = (f"the mask covers level-0 x {x0}..{x0 + shape[1] * downsample:g}, "
                 f"y {y0}..{y0 + shape[0] * downsample:g} ({shape[0]} x {shape[1]} px at downsample {downsample:g})")
        if len(missed) == n_polys:
            bb = features_bbox(usable)
            raise ValueError(f"{path}: none of its {n_polys} polygon(s) fills a pixel of the mask: {where}, the "
                             f"polygons lie at x {bb[1]}..{bb[3]}, y {bb[0]}..{bb[2]}. Check --shape, --origin and "
                             "--downsample (or leave --shape out to cover the polygons).")
        if notes is not None:
            notes.append(f"{len(missed)} of {n_polys} polygon(s) fill no pixel of the mask (outside it or thinner "
                         f"than a pixel) and were left out; {where}.")
    return cm, (int(origin[0]), int(origin[1]))
