"""``napari-wsss finetune``: fine-tune a model version on an annotation project's corrections (IFKD)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune a model version on the corrections of an annotation project")
    p.add_argument("--project", type=Path, required=True,
                   help="annotation project folder (<tiles>.wsss, with project.json) or the tile folder it annotates")
    p.add_argument("--base", required=True,
                   help="model version to start from: a folder, or a version name in the project's models/ or "
                        "among the shipped models")
    p.add_argument("--out", help="name of the new version in <project>/models/ (default <base>-ft<n>)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--held-out-fraction", type=float, help="share of corrected tiles held out (default 0.2)")
    p.add_argument("--switch-every", type=int, help="epochs between teacher/student switches (0 = never)")
    p.add_argument("--patience", type=int, help="epochs without held-out gain before stopping (0 = never)")
    p.add_argument("--student", choices=("dense", "copy"),
                   help="dense (default): a segmentation network on the base's backbone, saved as an ifkd version; "
                        "copy: the base's own network (keeps its method)")
    p.add_argument("--student-init", choices=("base", "backbone"),
                   help="base (default): start from the base's backbone; backbone: the backbone's initial weights")
    p.add_argument("--refit", action=argparse.BooleanOptionalAction, default=None,
                   help="after the held-out check, train the version again on every correction (default for the "
                        "dense student; twice the time)")
    p.add_argument("--anchor", type=float, dest="anchor_weight", metavar="WEIGHT",
                   help="L2-SP pull towards the base's weights, so few corrections do not make the model forget "
                        "(default 0 = off; 0.1 steadied 10 corrected GlaS images and capped 20, docs/design.md)")
    p.add_argument("--interpolate", type=float, metavar="SHARE",
                   help="the new version's weights: SHARE x the fine-tuned ones + the rest of the base's (WiSE-FT), "
                        "so a few corrections add to what the model knew instead of replacing it (default: 0.6 when "
                        "the project holds only reviewed tiles, 1 = the fine-tuned weights alone when unreviewed "
                        "tiles take part; docs/design.md)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="cpu, cuda, mps or auto")
    p.add_argument("--threads", type=int, dest="num_threads", help="CPU threads for torch")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other fine-tune option, e.g. --set max_teacher_tiles=32 (repeatable)")
    p.set_defaults(func=run)


def resolve_project(path: Path):
    """A project folder, or the data folder/file whose project sits beside it."""
    from ..store import INDEX_FILE, Project, default_project_root

    if (path / INDEX_FILE).is_file():
        return Project.load(path)
    root = default_project_root(path)
    if (root / INDEX_FILE).is_file():
        return Project.load(root)
    raise FileNotFoundError(f"No annotation project at {path} or {root}; give the <tiles>.wsss folder the Review "
                            "widget wrote (it holds project.json).")


def resolve_version(base: str, project) -> Path:
    """A model version folder from a path or a name (project models/ first, then the shipped models)."""
    from ..resources import shipped_models_dir

    for cand in (Path(base), project.models_dir / base, shipped_models_dir() / base):
        if (cand / "card.json").is_file():
            return cand
    names = [p.name for p in project.model_versions()]
    shipped = shipped_models_dir()
    names += [p.name for p in sorted(shipped.iterdir()) if (p / "card.json").is_file()] if shipped.is_dir() else []
    raise FileNotFoundError(f"No model version {base!r} (a folder with card.json); available: {names or 'none'}.")


def check_out_name(name: str | None, project) -> None:  # noqa: ANN001
    """Refuse an ``--out`` that is not a plain version name, or names a version the project already holds:
    fine-tuned versions are kept side by side and never replaced (a model a card or export names stays)."""
    if name is None:
        return
    if not name.strip() or name in (".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"--out {name!r} is not a version name; give a plain name such as my-model-ft1 (it is "
                         f"written to {project.models_dir}).")
    taken = project.models_dir / name
    if taken.exists():
        raise FileExistsError(f"{taken} already exists: fine-tuned versions are never replaced. Give another "
                              "--out name, or leave --out out for the next free <base>-ft<n>.")


def run(args: argparse.Namespace) -> int:
    from ..events import run_to_end
    from ..training.ifkd import finetune
    from . import print_progress
    from .train import parse_set

    project = resolve_project(args.project)
    base = resolve_version(args.base, project)
    check_out_name(args.out, project)
    options = {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "held_out_fraction", "switch_every",
                                             "patience", "seed", "device", "num_threads", "student", "student_init",
                                             "refit", "anchor_weight", "interpolate")
               if getattr(args, k) is not None}
    options.update(parse_set(args.set))
    command = "napari-wsss " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if not command.startswith("napari-wsss finetune"):  # called as a function (tests, scripts)
        command = "napari-wsss finetune --project {} --base {}".format(shlex.quote(str(args.project)),
                                                                      shlex.quote(str(args.base)))
    out = run_to_end(finetune(project, base, args.out, options=options, command=command), print_progress)
    print(file=sys.stderr)
    from ..models.card import load_card
    from ..training.ifkd import held_out_summary

    print(held_out_summary(load_card(out).metrics, base.name), file=sys.stderr)
    print(out)
    return 0
