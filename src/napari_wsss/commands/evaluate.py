"""``napari-wsss evaluate``: score a model version on a val/test folder (img/ + mask/, or images/ + masks/)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="per-class IoU, mIoU, FwIoU, Dice, pixel accuracy on a val/test folder")
    p.add_argument("--model", type=Path, required=True, help="model version folder (card.json + weights.pt)")
    p.add_argument("--data", type=Path, required=True, help="folder with img/ + mask/ or images/ + masks/ (GlaS), or a dataset root with test/")
    p.add_argument("--device", help="cpu, cuda, mps or auto")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--stain-normalise", action="store_true",
                   help="Macenko-normalise each tile to the training data's stain (reference stored in the card)")
    p.add_argument("--stain-reference", type=Path,
                   help="with --stain-normalise: fit the reference on this image instead of the card's")
    p.add_argument("--json", type=Path, help="also write the metrics as JSON here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.add_argument("--save-to-card", action="store_true", help="store the metrics in the model's card")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..atomic import atomic_write_json
    from ..evaluation import evaluate_folder, format_metrics
    from ..events import run_to_end
    from ..inference.segmenter import load_segmenter
    from ..models.card import save_card
    from . import print_progress

    from ..data.tiles import find_mask_layout

    if args.json is not None and args.json.is_dir():  # say so now, not after evaluating every image
        raise ValueError(f"--json {args.json} is a folder; give a file name, e.g. {args.json / 'scores.json'}.")
    if args.json is not None and args.json.exists() and not args.overwrite:
        raise FileExistsError(f"--json {args.json} already exists; give another file name or pass --overwrite.")
    folder = args.data
    if find_mask_layout(folder) is None and find_mask_layout(folder / "test") is not None:
        folder = folder / "test"
    seg = load_segmenter(args.model, args.device)
    if args.stain_normalise:
        from ..inference.stain_normalise import with_stain_normalisation

        seg = with_stain_normalisation(seg, args.stain_reference)
    scores = run_to_end(evaluate_folder(seg, folder, batch_size=args.batch_size), print_progress)
    print(file=sys.stderr)
    print(format_metrics(scores, f"{args.model} on {folder} ({scores['n_tiles']} tiles)"))
    if args.json:
        atomic_write_json(args.json, scores)
    if args.save_to_card:
        key = f"eval:{folder}" + (" (stain-normalised)" if args.stain_normalise else "")
        seg.card.metrics[key] = {k: v for k, v in scores.items() if k != "confusion"}
        save_card(args.model, seg.card)
    else:
        print(json.dumps({k: v for k, v in scores.items() if k in ("mIoU", "FwIoU", "mDice", "pixel_accuracy")}))
    return 0
