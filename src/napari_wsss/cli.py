"""``napari-wsss`` command line: the headless twin of every widget action.

Each subcommand lives in ``napari_wsss/commands/<name>.py`` with ``add_parser(subparsers)`` and
``run(args) -> int``; they import torch only when run, so ``napari-wsss --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

# Explicit list (no star-imports): the order is the order of `--help`.
COMMAND_MODULES = ["info", "generate", "patches", "train", "evaluate", "predict", "export", "import_set", "finetune",
                   "remap"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-wsss",
        description="Weakly supervised tissue segmentation of H&E images (image-level labels in, pixel masks out).",
    )
    parser.add_argument("--version", action="version", version=f"napari-wsss {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f".commands.{name}", __package__)
        except ModuleNotFoundError as e:
            if e.name == f"{__package__}.commands.{name}":
                continue  # a command not written yet
            raise
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted; nothing half-written was kept", file=sys.stderr)
        return 130
    except (ValueError, KeyError, FileNotFoundError, FileExistsError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"napari-wsss {args.command}: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
