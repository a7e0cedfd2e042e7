"""``napari-wsss info``: versions, devices, registered methods and backbones, shipped models."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show versions, devices, methods and shipped model versions")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from .. import __version__, methods  # noqa: F401  (fills the method registry)
    from ..models import backbones  # noqa: F401  (fills the backbone registry)
    from ..device import available_devices
    from ..models._registry import BACKBONES, METHODS
    from ..models.card import load_card, model_summary
    from ..resources import shipped_models_dir

    print(f"napari-wsss {__version__}, torch {torch.__version__}")
    print(f"devices: {', '.join(available_devices())}")
    print(f"methods: {', '.join(METHODS.names())}")
    print(f"backbones: {', '.join(BACKBONES.names())}")
    root = shipped_models_dir()
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if (d / "card.json").is_file():
            card = load_card(d)
            miou = card.metrics.get("test", {}).get("mIoU")
            print(f"model {d.name}: method={card.method} backbone={card.backbone} classes={card.class_schema.names}"
                  + (f" test mIoU={miou:.3f}" if miou is not None else ""))
            print("  " + model_summary(card).splitlines()[-1])
    print(default_models_line())
    return 0


def default_models_line() -> str:
    """How commands find a model: by shipped name or folder, and which one predict takes when none is named (the
    Segment widget's rule, ``model_choice``), so the choice is no surprise."""
    from ..model_choice import SHIPPED, preferred_version, shipped_versions

    rows = shipped_versions()
    versions = [(label, card) for label, _, card in rows]
    picks = []
    for origin, what in (("plain", "real images (file names without class labels)"),
                         ("sample", "the generated sample data")):
        found = preferred_version(versions, origin, None)
        if found is not None:
            picks.append(f"{rows[found[0]][0].removesuffix(SHIPPED)} for {what}")
    return ("--model/--base take a shipped model's name or a model version folder; predict without --model uses "
            + (", ".join(picks) if picks else "the default model") + " (it says which).")
