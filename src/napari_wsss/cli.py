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
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
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
    except (*EXPECTED, *UNEXPECTED) as e:
        if args.debug:
            raise
        print(f"napari-wsss {args.command}: error: {error_message(e)}", file=sys.stderr)
        return ERROR_EXIT


ERROR_EXIT = 2  # every failure the boundary answers: a bad input, option, file or system state
EXPECTED = (ValueError, KeyError, OSError, MemoryError)  # what our code raises with a message for the user
# what malformed input can still provoke deep inside (a file of the wrong shape, an odd option): one line too,
# with the way to the traceback, since the message was not written for the user
UNEXPECTED = (TypeError, AttributeError, ArithmeticError, IndexError, LookupError)


def error_message(e: BaseException) -> str:
    """One line for an expected failure: the message our code wrote, or what the system said and about which
    file (a read-only project, a folder where a file was expected, a full disk, too little memory)."""
    if isinstance(e, KeyError) and e.args:
        what = str(e.args[0])
        if " " in what:  # a message of ours
            return what
        return (f"missing entry {what!r}: an input file lacks a field it needs, or a name is unknown; check the "
                "input, or rerun with --debug for the traceback.")
    if isinstance(e, MemoryError):
        return ("not enough memory for this input; use a smaller batch or region, or a slide (read lazily) "
                "instead of one huge image.")
    if isinstance(e, OSError) and e.strerror:  # raised by the system (ours carry a sentence, no strerror)
        name = getattr(e, "filename2", None) or e.filename  # a rename's target, not its temporary source
        where = f": {name}" if name else ""
        hint = {PermissionError: " (check the folder's permissions or choose another output)",
                IsADirectoryError: " (a file was expected there, not a folder)",
                NotADirectoryError: " (a folder was expected there, not a file)",
                FileExistsError: " (something already stands there, e.g. a file where a folder is needed; choose "
                                 "another output path)",
                FileNotFoundError: " (check the path)"}.get(type(e), "")
        return f"{e.strerror}{where}{hint}"
    if isinstance(e, UNEXPECTED) and not isinstance(e, KeyError):
        return (f"{type(e).__name__}: {e}. An input (a file of the wrong shape, an option out of range) is probably "
                "malformed; check it, or rerun with --debug for the traceback and report it.")
    return str(e)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
