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
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty output folder (or an existing slide and its _mask.tif)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data import synthetic

    if args.slide:
        try:
            h, w = (int(v) for v in args.slide.lower().split("x"))
        except ValueError:
            raise ValueError(f"--slide {args.slide!r}: expected HxW, e.g. 20000x20000.") from None
        mask = args.out.with_name(f"{args.out.stem}_mask{args.out.suffix or '.tif'}")
        for f in (args.out, mask):
            if f.is_dir() or (f.exists() and not args.overwrite):
                raise FileExistsError(f"{f} already exists; choose another slide path or pass --overwrite "
                                      "(replaces the slide and its _mask.tif).")
        path = synthetic.write_slide(args.out, shape=(h, w), seed=args.seed, difficulty=args.difficulty)
    else:
        from ..atomic import atomic_dir

        if args.out.exists() and not args.out.is_dir():
            raise FileExistsError(f"{args.out} is a file; give a folder for the tiles (or --slide X.tif).")
        if args.out.is_dir() and any(args.out.iterdir()) and not args.overwrite:
            raise FileExistsError(f"{args.out} is not empty; give a new folder or pass --overwrite to replace it "
                                  "(its files would be lost).")
        with atomic_dir(args.out, overwrite=args.overwrite) as tmp:  # a kill leaves nothing half-written in place
            synthetic.write_dataset(tmp, n_train=args.train, n_val=args.val, n_test=args.test, size=args.size,
                                    seed=args.seed, difficulty=args.difficulty, shown_as=str(args.out))
        path = args.out
    print(path)
    return 0
