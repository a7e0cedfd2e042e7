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
    return 0
