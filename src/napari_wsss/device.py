"""Device choice, made once and passed down (no ``.cuda()`` elsewhere)."""

from __future__ import annotations

import os


def available_devices() -> list[str]:
    """Devices usable on this machine, best first (``cuda`` > ``mps`` > ``cpu``)."""
    import torch

    out = []
    if torch.cuda.is_available():
        out.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    out.append("cpu")
    return out


def likely_devices() -> list[str]:
    """``available_devices()`` for a widget's device box, without importing torch when it is not loaded yet.

    Docking Segment imported torch on the Qt thread only to list devices: the viewer froze 1.3-1.6 s (3.7 s on a
    busy machine; walk-through heartbeat). Before torch is loaded the machine is probed instead: an NVIDIA driver
    for CUDA, Apple silicon for MPS. ``select_device`` checks the choice for real in the worker and says clearly
    when a CUDA card is there but this torch build cannot use it.
    """
    import platform
    import shutil
    import sys
    from pathlib import Path

    if sys.modules.get("torch") is not None:
        return available_devices()
    out = []
    if Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi"):
        out.append("cuda")
    if sys.platform == "darwin" and platform.machine() == "arm64":
        out.append("mps")
    out.append("cpu")
    return out


def select_device(requested: str | None = None):
    """Return a ``torch.device``.

    ``requested`` (or the ``NAPARI_WSSS_DEVICE`` environment variable) overrides the automatic choice;
    ``None``/``"auto"`` picks the best available one.

    Raises:
        ValueError: when the requested device is not available here.
    """
    import torch

    requested = requested or os.environ.get("NAPARI_WSSS_DEVICE") or "auto"
    if requested == "auto":
        return torch.device(available_devices()[0])
    kind = requested.split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise ValueError(f"Unknown device {requested!r}; expected 'auto', 'cpu', 'cuda[:N]' or 'mps'.")
    if kind not in available_devices():
        raise ValueError(
            f"Device {requested!r} is not available on this machine (available: {available_devices()}). "
            "Choose one of those or 'auto'."
        )
    return torch.device(requested)
