"""``napari-wsss train``: train a method on a LUAD-HistoSeg style folder and write a model version."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a segmentation method from image-level labels")
    p.add_argument("--method", default="sshr", help="registered method (see `napari-wsss info`); default sshr")
    p.add_argument("--data", type=Path, required=True, help="dataset root (training/, val/, test/) or tile folder")
    p.add_argument("--out", type=Path, required=True, help="new model version folder, e.g. models/my-sshr")
    p.add_argument("--labels-csv", type=Path, help="image-level labels as filename,<class names> instead of names")
    p.add_argument("--schema", help="class schema: luad or bcss (default luad)")
    p.add_argument("--backbone", help="small_cnn, resnet18, resnet34, resnet50")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--input-size", type=int, help="side tiles are resized to for training (inference rescales)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="cpu, cuda, mps or auto")
    p.add_argument("--threads", type=int, dest="num_threads", help="CPU threads for torch")
    p.add_argument("--segmix", action="store_true", default=None, help="SegMix patch shuffling (CAM methods)")
    p.add_argument("--segmix-patch", type=int, help="SegMix: first cell side in input pixels (default input/2)")
    p.add_argument("--segmix-ratio", type=float, help="SegMix: first shuffle ratio (default 0.25)")
    p.add_argument("--segmix-patience", type=int,
                   help="SegMix: feedback windows without improvement before patch shrinks / ratio grows (3)")
    p.add_argument("--segmix-window", type=int, help="SegMix: batches per feedback window (default 20)")
    p.add_argument("--segmix-signal", choices=["loss", "accuracy"], help="SegMix: monitored signal (default loss)")
    p.add_argument("--pcm", action="store_true", default=None,
                   help="pixel correlation module: CAM consistency loss in training, refined CAMs at inference")
    p.add_argument("--no-pretrained", action="store_const", const="none", dest="pretrained",
                   help="start from scratch even if ImageNet weights are cached")
    p.add_argument("--sam-checkpoint", type=Path, help="cam_sam: your SAM checkpoint file (else $NAPARI_WSSS_SAM_CHECKPOINT)")
    p.add_argument("--sam-model-type", choices=["auto", "vit_b", "vit_l", "vit_h"],
                   help="cam_sam: SAM encoder the checkpoint must hold (default auto: read from the file)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other method option, e.g. --set threshold=0.3 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from <out>.ckpt.pt if it exists")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model version folder")
    p.add_argument("--no-eval", action="store_true", help="skip evaluation on val/ and test/")
    p.set_defaults(func=run)


def parse_set(items: list[str]) -> dict:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` (JSON values where they parse)."""
    import json

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. --set threshold=0.3.")
        try:
            out[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.replace("-", "_")] = value
    return out


def run(args: argparse.Namespace) -> int:
    from .. import methods  # noqa: F401  (fills the registry)
    from ..events import run_to_end
    from ..models._registry import METHODS
    from . import print_progress

    spec = METHODS.get(args.method)
    if spec.train is None:
        raise ValueError(f"Method {args.method!r} cannot be trained from the command line.")
    options = {k: getattr(args, k) for k in ("schema", "backbone", "epochs", "batch_size", "lr", "input_size",
                                             "seed", "device", "num_threads", "segmix", "segmix_patch", "segmix_ratio",
                                             "segmix_patience", "segmix_window", "segmix_signal", "pcm", "pretrained",
                                             "sam_checkpoint", "sam_model_type")
               if getattr(args, k) is not None}
    if "sam_checkpoint" in options:
        options["sam_checkpoint"] = str(options["sam_checkpoint"])
    if options.get("pretrained") == "none":
        options["pretrained"] = False
    options.update(parse_set(args.set))
    command = "napari-wsss " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    gen = spec.train(args.data, args.out, overwrite=args.overwrite, resume=args.resume,
                     labels_csv=args.labels_csv, command=command, evaluate=not args.no_eval, **options)
    out = run_to_end(gen, print_progress)
    print(file=sys.stderr)
    print(out)
    return 0
