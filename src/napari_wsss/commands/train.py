"""``napari-wsss train``: train a method on a LUAD-HistoSeg style folder and write a model version.

Every field of the trainers' config dataclasses (``training.config.trainer_configs``) is an option: a flag
``--field-name`` and ``--set field_name=VALUE``. The flags written out below only give some of them a better
name, help or type; the rest are made from the dataclasses when ``train`` is parsed (not at start-up: the
trainers import torch, and ``napari-wsss --help`` must stay instant).
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import types
import typing
from pathlib import Path
from typing import Any


class _TrainParser(argparse.ArgumentParser):
    """The ``train`` parser: adds the trainers' option flags the first time it parses."""

    _option_flags_added = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        if not self._option_flags_added:
            from ..training.config import trainer_configs

            self._option_flags_added = True
            add_option_flags(self, trainer_configs())
        return super().parse_known_args(args, namespace)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a segmentation method from image-level labels")
    p.__class__ = _TrainParser  # argparse's add_parser cannot be told which class to make
    p.add_argument("--method", default="sshr", help="registered method (see `napari-wsss info`); default sshr")
    p.add_argument("--data", type=Path, help="dataset root (training/, val/, test/) or tile folder")
    p.add_argument("--out", type=Path, help="new model version folder, e.g. models/my-sshr (with --project: the "
                   "version's name in the project's models/, default <method>-tags<n>)")
    p.add_argument("--project", type=Path, help="train from the image-level tags of an annotation project "
                   "(<data>.wsss, made with the Tag widget) instead of --data; the version goes into its models/")
    p.add_argument("--with-corrections", action="store_true",
                   help="with --project: then fine-tune on the project's corrected tiles (pixel supervision, IFKD)")
    p.add_argument("--labels-csv", type=Path, help="image-level labels as filename,<class names> instead of names")
    p.add_argument("--schema", help="class schema: luad, bcss, glas or a .json/.toml schema file (default: the "
                   "classes the --data folder names in manifest.json, split.json, schema.json or labels.csv, else "
                   "luad; docs/class-schemas.md)")
    p.add_argument("--backbone", help="small_cnn, resnet18, resnet34, resnet50")
    p.add_argument("--input-size", type=int, help="side tiles are resized to for training (inference rescales)")
    p.add_argument("--device", help="cpu, cuda, mps or auto")
    p.add_argument("--threads", type=int, dest="num_threads", help="CPU threads for torch")
    p.add_argument("--segmix", action="store_true", default=None, help="SegMix patch shuffling (CAM methods)")
    p.add_argument("--segmix-patch", type=int, help="SegMix: first cell side in input pixels (default input/2)")
    p.add_argument("--segmix-ratio", type=float, help="SegMix: first shuffle ratio (default 0.25)")
    p.add_argument("--segmix-patience", type=int,
                   help="SegMix: feedback windows without improvement before patch shrinks / ratio grows (3)")
    p.add_argument("--segmix-window", type=int, help="SegMix: batches per feedback window under --segmix-pacing batches (default 20)")
    p.add_argument("--segmix-signal", choices=["loss", "accuracy"], help="SegMix: monitored signal (default loss)")
    p.add_argument("--pcm", action="store_true", default=None,
                   help="pixel correlation module: SEAM's learned PCM with ER/ECR losses over a rescaled "
                        "view (--pcm-kind parameter_free: the earlier consistency loss); refined CAMs at inference")
    p.add_argument("--pretrained", action="store_const", const=True, dest="pretrained",
                   help="resnet backbones: start from torchvision's ImageNet weights, downloaded into torch's cache "
                        "($TORCH_HOME/hub/checkpoints) if missing (default: use them only if already there)")
    p.add_argument("--no-pretrained", action="store_const", const="none", dest="pretrained",
                   help="start from scratch even if ImageNet weights are cached")
    p.add_argument("--sam-checkpoint", type=Path,
                   help="cam_sam: your SAM checkpoint file (else $NAPARI_WSSS_SAM_CHECKPOINT)")
    p.add_argument("--sam-model-type", choices=["auto", "vit_b", "vit_l", "vit_h"],
                   help="cam_sam: SAM encoder the checkpoint must hold (default auto: read from the file)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other method option, e.g. --set threshold=0.3 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from <out>.ckpt.pt if it exists")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model version folder")
    p.add_argument("--no-eval", action="store_true", help="skip evaluation on val/ and test/")
    p.set_defaults(func=run)


def _json_value(text: str) -> Any:
    """A JSON value where the text parses as one, else the text (``--set``'s rule)."""
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _flag_kwargs(tp: Any) -> dict[str, Any]:
    """argparse settings for a config field of type ``tp`` (None: types differ between trainers)."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else None  # "X | None": an X; "str | bool": JSON or text
    if tp is bool:
        return {"action": argparse.BooleanOptionalAction}
    if tp in (int, float, str):
        return {"type": tp}
    item = typing.get_args(tp)
    if typing.get_origin(tp) is tuple and len(item) == 2 and item[1] is Ellipsis and item[0] in (int, float, str):
        return {"type": item[0], "nargs": "+"}
    return {"type": _json_value, "metavar": "JSON"}


def add_option_flags(parser: argparse.ArgumentParser, configs: dict[str, type]) -> None:
    """Add ``--field-name`` (dest ``field_name``) for every config field no flag of ``parser`` sets yet.

    The help names the methods that take the option and their defaults.
    """
    uses: dict[str, list[tuple[str, Any, Any]]] = {}
    for method, cls in configs.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default
            if default is dataclasses.MISSING:
                default = f.default_factory() if f.default_factory is not dataclasses.MISSING else "none: required"
            uses.setdefault(f.name, []).append((method, hints[f.name], default))
    taken = {a.dest for a in parser._actions}
    group = parser.add_argument_group("method options", "every option of the trainers' configs "
                                      "(also --set KEY=VALUE); the flags above are some of them")
    for name, where in uses.items():
        if name in taken:
            continue
        kinds = {tp for _, tp, _ in where}
        by_default: dict[str, list[str]] = {}
        for method, _, default in where:
            by_default.setdefault(repr(default), []).append(method)
        text = "; ".join(f"{', '.join(ms)} (default {d})" for d, ms in by_default.items())
        group.add_argument("--" + name.replace("_", "-"), dest=name, default=None, help=text.replace("%", "%%"),
                           **_flag_kwargs(kinds.pop() if len(kinds) == 1 else None))


def option_names(configs: dict[str, type]) -> list[str]:
    """Every option a trainer takes (the union of the config fields), in declaration order."""
    return list(dict.fromkeys(f.name for cls in configs.values() for f in dataclasses.fields(cls)))


def parse_set(items: list[str]) -> dict:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` (JSON values where they parse)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. --set threshold=0.3.")
        out[key.replace("-", "_")] = _json_value(value)
    return out


def run(args: argparse.Namespace) -> int:
    from .. import methods  # noqa: F401  (fills the registry)
    from ..events import run_to_end
    from ..models._registry import METHODS
    from ..training.config import trainer_configs
    from . import print_progress

    spec = METHODS.get(args.method)
    if spec.train is None:
        raise ValueError(f"Method {args.method!r} cannot be trained from the command line.")
    options = {k: getattr(args, k) for k in option_names(trainer_configs()) if getattr(args, k, None) is not None}
    if "sam_checkpoint" in options:
        options["sam_checkpoint"] = str(options["sam_checkpoint"])
    if options.get("pretrained") == "none":
        options["pretrained"] = False
    options.update(parse_set(args.set))
    command = "napari-wsss " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.project is not None or args.data is None or args.out is None:
        return _run_from_project(args, options, command, print_progress, run_to_end)
    if "schema" not in options and args.labels_csv is None:  # an exported / patch / tag set names its classes
        from ..data.folder_schema import schema_of_training_folder

        found = schema_of_training_folder(args.data) if Path(args.data).is_dir() else None
        if found is not None:
            options["schema"] = found[0]
            print(f"napari-wsss train: classes {found[0]}, as {found[1]} says (--schema to choose others)",
                  file=sys.stderr)
    gen = spec.train(args.data, args.out, overwrite=args.overwrite, resume=args.resume,
                     labels_csv=args.labels_csv, command=command, evaluate=not args.no_eval, **options)
    out = run_to_end(gen, print_progress)
    print(file=sys.stderr)
    print(out)
    return 0


def _run_from_project(args: argparse.Namespace, options: dict, command: str, progress: Any, run_to_end: Any) -> int:
    """``train --project``: the project's tags are the training set (``tagging.train.train_from_tags``)."""
    if args.project is None:
        raise ValueError("train needs --data and --out (a labelled tile folder), or --project (an annotation "
                         "project's tags).")
    if args.data is not None:
        raise ValueError("--data and --project exclude each other: --project trains on the project's tags.")
    if args.labels_csv is not None or args.resume:
        raise ValueError("--labels-csv and --resume do not apply to --project (the tags are the labels).")
    if "schema" in options:
        raise ValueError("--schema does not apply to --project: the project's own classes are used.")
    from ..tagging.train import train_from_tags
    from .finetune import resolve_project

    project = resolve_project(args.project)
    name = str(args.out) if args.out is not None else None
    if name is not None and (Path(name).parent != Path(".") or Path(name).is_absolute()):
        raise ValueError(f"--out {name!r}: with --project give the new version's name (it goes into "
                         f"{project.models_dir}), not a path.")
    out = run_to_end(train_from_tags(project, args.method, name, with_corrections=args.with_corrections,
                                     command=command, **options), progress)
    print(file=sys.stderr)
    print(out)
    return 0
