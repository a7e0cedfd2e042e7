"""``napari-wsss patches``: images with masks (or QuPath GeoJSON) -> patches with image-level labels only."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..export.patches import DEFAULT_MAX_GLASS, DEFAULT_MIN_FRACTION

    p = sub.add_parser(
        "patches", help="cut images with masks into a weakly supervised training set (image-level labels only)",
        description="DATA holds images/ + masks/ (GlaS), img/ + mask/, or images/ + geojson/ (QuPath exports, one "
        "<stem>.geojson per image). Training images become patches whose only label is which classes they "
        "contain (names like stem_y0_x0-[1 0].png, and labels.csv); validation images, chosen by source image, "
        "never by patch, are written whole with their masks (val/img, val/mask); split.json records the split. "
        "Train on OUT with `napari-wsss train --data OUT --schema SAME`.")
    p.add_argument("data", type=Path, help="folder with images/ and masks/ (or img/ + mask/, or images/ + geojson/)")
    p.add_argument("--out", type=Path, required=True, help="folder to create (must be empty unless --overwrite)")
    p.add_argument("--schema", default="luad", help="class schema: luad, bcss, glas or a .json/.toml file "
                   "(its mask_values read greyscale masks; default luad)")
    p.add_argument("--size", type=int, default=224, help="patch side in pixels (default 224)")
    p.add_argument("--stride", type=int, help="step between patches in pixels (default: --size, no overlap)")
    p.add_argument("--min-fraction", type=float, default=DEFAULT_MIN_FRACTION,
                   help=f"a class is a patch's label when it covers at least this share of it (default "
                   f"{DEFAULT_MIN_FRACTION}); patches left without a label are dropped")
    p.add_argument("--max-glass", type=float, default=DEFAULT_MAX_GLASS,
                   help=f"drop patches whose near-white glass share exceeds this (default {DEFAULT_MAX_GLASS}; 1 keeps all)")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of source images held out whole for validation (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random validation split (default 0)")
    p.add_argument("--val-list", type=Path, help="text file naming the validation images, one per line "
                   "(instead of --val-fraction)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..classes import load_schema
    from ..events import run_to_end
    from ..export.patches import make_patches, read_val_list
    from . import print_progress

    schema = load_schema(args.schema)
    val_list = read_val_list(args.val_list) if args.val_list else None
    command = "napari-wsss " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    out = run_to_end(make_patches(args.data, args.out, schema, size=args.size, stride=args.stride,
                                  min_fraction=args.min_fraction, max_glass=args.max_glass,
                                  val_fraction=args.val_fraction, seed=args.seed, val_list=val_list,
                                  overwrite=args.overwrite, command=command), print_progress)
    print(file=sys.stderr)
    print(out)
    return 0
