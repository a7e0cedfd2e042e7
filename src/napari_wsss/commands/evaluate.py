"""``napari-wsss evaluate``: score a model version on a val/test folder (img/ + mask/, or images/ + masks/)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="per-class IoU, mIoU, FwIoU, Dice, pixel accuracy on a val/test folder")
    p.add_argument("--model", required=True, help="model version folder (card.json + weights.pt), or a shipped "
                   "model's name (napari-wsss info lists them)")
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
    from ..data.tiles import find_mask_layout
    from ..resources import is_shipped, resolve_model
    from . import print_progress

    if args.json is not None and args.json.is_dir():  # say so now, not after evaluating every image
        raise ValueError(f"--json {args.json} is a folder; give a file name, e.g. {args.json / 'scores.json'}.")
    if args.json is not None and args.json.exists() and not args.overwrite:
        raise FileExistsError(f"--json {args.json} already exists; give another file name or pass --overwrite.")
    model_dir = resolve_model(args.model)
    if args.save_to_card and is_shipped(model_dir):  # names made the shipped folders one word away
        raise ValueError(f"--save-to-card would change the shipped model {model_dir.name}, which napari-wsss never "
                         f"writes to; copy its folder and evaluate the copy, or leave out --save-to-card.")
    folder = args.data
    if not folder.is_dir():  # said before "must contain img/ and mask/", which sent the user looking for folders
        raise FileNotFoundError(f"--data {folder} {'is a file' if folder.exists() else 'does not exist'}; give a "
                                "folder with images/ + masks/ (GlaS) or img/ + mask/ (LUAD-HistoSeg val/test).")
    if find_mask_layout(folder) is None and find_mask_layout(folder / "test") is not None:
        folder = folder / "test"
    check_masks_fit(model_dir, folder)  # before the model loads and every image is predicted
    seg = load_segmenter(model_dir, args.device)
    if args.stain_normalise:
        from ..inference.stain_normalise import with_stain_normalisation

        seg = with_stain_normalisation(seg, args.stain_reference)
    scores = run_to_end(evaluate_folder(seg, folder, batch_size=args.batch_size), print_progress)
    print(file=sys.stderr)
    print(format_metrics(scores, f"{model_dir} on {folder} ({scores['n_tiles']} tiles)"))
    if args.json:
        atomic_write_json(args.json, scores)
    if args.save_to_card:
        key = f"eval:{folder}" + (" (stain-normalised)" if args.stain_normalise else "")
        seg.card.metrics[key] = {k: v for k, v in scores.items() if k != "confusion"}
        save_card(model_dir, seg.card)
    else:
        print(json.dumps({k: v for k, v in scores.items() if k in ("mIoU", "FwIoU", "mDice", "pixel_accuracy")}))
    return 0


def check_masks_fit(model_dir: Path, folder: Path) -> None:
    """Refuse masks whose values the model's classes cannot read, naming the shipped models whose classes can
    (evaluate has no --schema: the masks are read through the model's own classes).

    Raises:
        ValueError: the first mask does not fit the model's class schema; one line, with the model(s) to use.
    """
    from ..data.tiles import find_mask_layout, list_mask_pairs, read_mask
    from ..model_choice import shipped_versions
    from ..models.card import load_card

    if find_mask_layout(folder) is None:
        return  # evaluate_folder says what the folder lacks
    pairs = list_mask_pairs(folder)
    if not pairs:
        return
    mask = pairs[0].mask
    card = load_card(model_dir)
    try:
        read_mask(mask, card.class_schema)
        return
    except ValueError as e:
        why = str(e).split(". Check that")[0]  # the values and the schema, without the advice that does not apply
    fits: list[tuple[str, str]] = []  # (shipped name, its classes) of the models these masks fit
    for label, _, other in shipped_versions():
        try:
            read_mask(mask, other.class_schema)
        except ValueError:
            continue
        fits.append((label.removesuffix(" (shipped)"), ", ".join(other.class_schema.foreground_names)))
    if fits:
        advice = f"give --model {fits[0][0]}, whose classes ({fits[0][1]}) these masks fit"
        advice += "".join(f", or --model {name} ({classes})" for name, classes in fits[1:])
    else:
        advice = "give a model trained on this dataset's classes (napari-wsss train --schema ...)"
    raise ValueError(f"{why}: the masks are not of {model_dir.name}'s classes; {advice}.")
