"""``napari-wsss export``: a project's masks as a training set (PNG/TIFF tiles, labels, GeoJSON, label pyramids)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..export.training_set import DEFAULT_FORMATS, FILTERS, FORMATS

    p = sub.add_parser("export", help="export corrected masks as a training set with a provenance manifest",
                       description="Write the masks of an annotation project as tiles + masks (img/, mask/), "
                       "image-level label files (training/, labels.csv), GeoJSON class polygons (QuPath), "
                       "OME-Zarr / pyramidal TIFF label images of slides and manifest.json (sources, model "
                       "versions, reviewer status, touched fraction, sha256). Written atomically.")
    p.add_argument("--project", type=Path, required=True,
                   help="project folder (<data>.wsss) or the tile folder / slide it annotates")
    p.add_argument("--out", type=Path, required=True, help="folder to create (must be empty unless --overwrite)")
    p.add_argument("--format", dest="formats", nargs="+", choices=FORMATS, default=list(DEFAULT_FORMATS),
                   metavar="FORMAT", help=f"some of {', '.join(FORMATS)} (default: {' '.join(DEFAULT_FORMATS)})")
    p.add_argument("--filter", choices=list(FILTERS), default="reviewed",
                   help="which items: accepted, corrected, reviewed (both; default) or all")
    p.add_argument("--tile-size", type=int, default=0, help="cut items into squares of this size (0: whole items)")
    p.add_argument("--overlap", type=int, default=0, help="pixels shared by neighbouring tiles")
    p.add_argument("--level", type=int, default=None, help="slide pyramid level of the tiles (default: as reviewed)")
    p.add_argument("--label-style", choices=["luad", "bcss"], default="luad",
                   help="training/ names: luad '-[1 0 0 1]' or bcss '-[1001]'")
    p.add_argument("--min-area", type=int, default=0, metavar="PX",
                   help="GeoJSON: leave out specks (and holes) of fewer pixels (default 0: every pixel)")
    p.add_argument("--simplify", type=float, default=0.0, metavar="PX",
                   help="GeoJSON: simplify outlines to within this many pixels (default 0: exact)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..events import run_to_end
    from ..export.training_set import export_project
    from . import print_progress

    if args.min_area < 0 or not 0 <= args.simplify < float("inf"):
        raise ValueError(f"--min-area {args.min_area} / --simplify {args.simplify}: expected pixels >= 0 (0 keeps "
                         "every pixel / the exact outline).")
    try:
        out = run_to_end(export_project(args.project, args.out, args.formats, args.filter, args.tile_size,
                                        args.overlap, args.level, args.overwrite, args.label_style,
                                        geojson_min_area=args.min_area, geojson_tolerance=args.simplify),
                         print_progress)
    except OSError as e:
        if isinstance(e, (FileExistsError, FileNotFoundError)):
            raise  # the CLI prints these
        print(f"\nnapari-wsss export: error: {e.strerror or e}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    print(out)
    return 0
