"""``napari-wsss generate``: write a synthetic LUAD-style data set or slide with exact ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="write synthetic H&E tiles (LUAD-HistoSeg layout) or a pyramidal slide")
    p.add_argument("out", type=Path, help="output folder (tiles) or .tif file (with --slide)")
    p.add_argument("--train", type=int, default=200, help="training tiles (labels in file names)")
    p.add_argument("--val", type=int, default=20, help="validation tiles with masks")
    p.add_argument("--test", type=int, default=20, help="test tiles with masks")
    p.add_argument("--size", type=int, default=224, help="tile size in pixels")
    p.add_argument("--difficulty", type=float, default=0.5, help="0 (easy) .. 1 (hard)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--slide", metavar="HxW", help="write a pyramidal TIFF slide of this size instead, e.g. 20000x20000")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data import synthetic

    if args.slide:
        try:
            h, w = (int(v) for v in args.slide.lower().split("x"))
        except ValueError:
            raise ValueError(f"--slide {args.slide!r}: expected HxW, e.g. 20000x20000.") from None
        path = synthetic.write_slide(args.out, shape=(h, w), seed=args.seed, difficulty=args.difficulty)
    else:
        path = synthetic.write_dataset(args.out, n_train=args.train, n_val=args.val, n_test=args.test,
                                       size=args.size, seed=args.seed, difficulty=args.difficulty)
    print(path)
    return 0
