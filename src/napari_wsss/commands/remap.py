"""``napari-wsss remap``: a model version re-expressed in another class schema (one source class per new class)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("remap", help="start a model of new classes from one of other classes (CAM channels "
                       "chosen per class), e.g. the LUAD demo's TE as gland")
    p.add_argument("--model", required=True, help="model version folder to start from, or a shipped model's name")
    p.add_argument("--schema", required=True, help="the new classes: luad, bcss, glas or a schema file")
    p.add_argument("--map", dest="pairs", action="append", default=[], metavar="NEW=OLD", required=True,
                   help="a new class and the model's class it takes its output from (one per new class)")
    p.add_argument("--out", type=Path, required=True, help="new model version folder")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..classes import load_schema
    from ..models.remap import remap_version
    from ..resources import resolve_model

    bad = [p for p in args.pairs if "=" not in p]
    if bad:
        raise ValueError(f"--map {bad[0]!r}: expected NEW=OLD, e.g. --map gland=TE.")
    mapping = dict(p.split("=", 1) for p in args.pairs)
    out = remap_version(resolve_model(args.model), args.out, load_schema(args.schema), mapping,
                        overwrite=args.overwrite)
    print(out)
    return 0
