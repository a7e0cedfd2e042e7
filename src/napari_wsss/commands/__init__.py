"""CLI subcommands, one module each (see ``napari_wsss.cli``)."""

from __future__ import annotations

import sys

from ..events import Progress


def print_progress(p: Progress) -> None:
    """One-line progress for terminals (carriage return) and logs (newline every 10 %)."""
    frac = p.fraction
    metrics = " ".join(f"{k}={v:.4g}" for k, v in p.metrics.items())
    pct = f"{100 * frac:5.1f}%" if frac is not None else "  ... "
    line = f"[{pct}] {p.desc} {metrics}".rstrip()
    if sys.stderr.isatty():
        print("\r" + line[:150].ljust(150), end="", file=sys.stderr, flush=True)
    else:
        print(line, file=sys.stderr, flush=True)


def print_notes(args: object) -> None:
    """Print the notes a command kept for when its work starts (which model it chose and why), once: said
    before a refusal they would only add a line to its one-line error."""
    for line in getattr(args, "notes", ()):
        print(line, file=sys.stderr, flush=True)
    setattr(args, "notes", [])
