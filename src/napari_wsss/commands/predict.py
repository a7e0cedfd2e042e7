"""``napari-wsss predict``: class-map masks (palette PNG, dataset convention) for an image or a folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="segment tiles into palette-PNG class maps")
    p.add_argument("--model", type=Path, help="model version folder (default: the shipped default model)")
    p.add_argument("input", type=Path, help="an image file or a folder of tiles")
    p.add_argument("-o", "--out", type=Path, required=True, help="output PNG (single image) or folder")
    p.add_argument("--device", help="cpu, cuda, mps or auto")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--confidence", action="store_true", help="also write <name>_confidence.png (0..255)")
    p.add_argument("--method", help="insist the model is of this method (e.g. cam_sam); default: what its card says")
    p.add_argument("--sam-checkpoint", type=Path, help="cam_sam: your SAM checkpoint file (else "
                   "$NAPARI_WSSS_SAM_CHECKPOINT, else the path recorded in the model card)")
    p.add_argument("--sam-model-type", choices=["auto", "vit_b", "vit_l", "vit_h"],
                   help="cam_sam: SAM encoder the checkpoint must hold (default: the card's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from ..atomic import atomic_save
    from ..data.tiles import list_images, read_rgb, write_mask
    from ..inference.segmenter import load_segmenter
    from ..resources import default_model_dir
    from . import print_progress
    from ..events import Progress

    import os

    from ..models.card import load_card
    from ..models.sam import ENV_CHECKPOINT, ENV_MODEL_TYPE

    model_dir = args.model or default_model_dir()
    if args.method and load_card(model_dir).method != args.method:
        raise ValueError(f"{model_dir} is a {load_card(model_dir).method} model, not {args.method}; choose a "
                         f"{args.method} model version with --model.")
    if args.sam_checkpoint:  # the loader reads these (same as setting them in the shell)
        os.environ[ENV_CHECKPOINT] = str(args.sam_checkpoint)
    if args.sam_model_type:
        os.environ[ENV_MODEL_TYPE] = args.sam_model_type
    seg = load_segmenter(model_dir, args.device)
    schema = seg.card.class_schema
    if args.input.is_dir():
        files = list_images(args.input)
        out_dir = args.out
        targets = [out_dir / f"{f.stem}.png" for f in files]
    else:
        if not args.input.is_file():
            raise FileNotFoundError(f"{args.input} does not exist; give an image file or a folder of tiles.")
        files = [args.input]
        targets = [args.out if args.out.suffix.lower() == ".png" else args.out / f"{args.input.stem}.png"]
    for i, (src, dst) in enumerate(zip(files, targets)):
        # One tile at a time: folders may mix tile sizes, and memory stays flat.
        pred = seg.predict(read_rgb(src)[None], batch_size=args.batch_size)
        write_mask(dst, pred.class_map[0], schema)
        if args.confidence:
            conf = (pred.probs[0].max(0) * 255 + 0.5).astype(np.uint8)
            with atomic_save(dst.with_name(f"{dst.stem}_confidence.png")) as tmp:
                Image.fromarray(conf).save(tmp, format="PNG")
        print_progress(Progress(i + 1, len(files), "predicting"))
    print(file=sys.stderr)
    print(targets[0] if len(targets) == 1 else args.out)
    return 0
