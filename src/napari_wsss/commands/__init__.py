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
