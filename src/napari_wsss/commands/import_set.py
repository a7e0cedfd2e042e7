"""``napari-wsss import``: an exported set back into a project, or GeoJSON polygons (QuPath) into a mask."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="import an exported set into a project, or GeoJSON polygons as a mask",
                       description="SOURCE is a folder written by `napari-wsss export` (its masks go into "
                       "--project, checked against manifest.json) or a GeoJSON file (class polygons, e.g. from "
                       "QuPath, level-0 pixels) rasterised into a palette mask --out.")
    p.add_argument("source", type=Path, help="exported set folder, or .geojson/.json file")
    p.add_argument("--project", type=Path, help="project folder to import a set into (or --data: a received set "
                   "does not choose the project it changes)")
    p.add_argument("--data", type=Path, help="the data a new project annotates (default: from the manifest)")
    p.add_argument("--out", type=Path, help="GeoJSON import: mask file to write (.png or .tif)")
    p.add_argument("--schema", default="luad", help="GeoJSON import: class schema (luad, bcss, glas or a .json/.toml file)")
    p.add_argument("--shape", type=int, nargs=2, metavar=("H", "W"),
                   help="GeoJSON import: mask size (default: the polygons' bounding box)")
    p.add_argument("--origin", type=int, nargs=2, metavar=("Y", "X"), default=None,
                   help="GeoJSON import: level-0 pixel of the mask's top-left corner (default 0 0 with --shape)")
    p.add_argument("--downsample", type=float, default=1.0, help="GeoJSON import: level-0 pixels per mask pixel")
    p.add_argument("--overwrite", action="store_true",
                   help="replace corrected/accepted project items (set) or an existing --out file (GeoJSON)")
    p.add_argument("--no-verify", action="store_true", help="skip checking the set's files against their sha256")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..events import run_to_end
    from . import print_progress

    src: Path = args.source
    if args.data is not None and not args.data.exists():
        raise FileNotFoundError(f"--data {args.data} does not exist; give the tile folder or slide the project "
                                "annotates.")
    if src.is_dir():
        from ..export.imports import import_set

        project = run_to_end(import_set(src, args.project, source=args.data, overwrite=args.overwrite,
                                        verify=not args.no_verify), print_progress)
        print(file=sys.stderr)
        print(project.root)
        return 0
    if not src.is_file():
        raise FileNotFoundError(f"{src} does not exist; give an exported set folder or a GeoJSON file.")
    check_geojson(src)
    if args.out is None:
        raise ValueError("GeoJSON import needs --out MASK.png (or .tif): where to write the rasterised mask.")
    if args.out.exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} exists; choose another --out or pass --overwrite.")
    from ..classes import get_schema
    from ..export.masks import write_class_map
    from ..export.vectors import read_geojson_class_map

    schema = get_schema(args.schema)
    origin = tuple(args.origin) if args.origin else ((0, 0) if args.shape else None)
    notes: list[str] = []
    cm, origin = read_geojson_class_map(src, schema, tuple(args.shape) if args.shape else None, origin,
                                        args.downsample, notes=notes)
    for note in notes:
        print(f"napari-wsss import: warning: {note}", file=sys.stderr)
    write_class_map(args.out, cm, schema)
    print(f"{args.out} ({cm.shape[0]} x {cm.shape[1]} px, top-left at level-0 y={origin[0]}, x={origin[1]})")
    return 0


GEOJSON_SUFFIXES = (".geojson", ".json")


def check_geojson(src: Path) -> None:
    """Refuse a file that is not GeoJSON before asking for GeoJSON's options (a PNG was taken for GeoJSON and the
    user told to add --out).

    Raises:
        ValueError: one line saying what the file is and what import takes.
    """
    if src.suffix.lower() in GEOJSON_SUFFIXES:
        return
    with open(src, "rb") as f:
        head = f.read(64).lstrip()
    if head.startswith(b"{"):  # GeoJSON under another name (QuPath writes .geojson, but files get renamed)
        return
    kind = f"a {src.suffix} file" if src.suffix else "a file without a suffix that does not hold JSON"
    raise ValueError(f"{src} is {kind}, not GeoJSON: import takes a folder written by `napari-wsss export` (into "
                     "--project) or a .geojson/.json file of class polygons (e.g. from QuPath, with --out MASK.png).")
