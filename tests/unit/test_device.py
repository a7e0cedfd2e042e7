"""Device lists: the widgets' box is filled without importing torch on the Qt thread; the worker checks for real."""

from __future__ import annotations

import subprocess
import sys

import pytest

from napari_wsss import device


def test_the_device_box_is_filled_without_importing_torch() -> None:
    """Docking Segment imported torch on the Qt thread only to list devices (a 1.3-1.6 s freeze)."""
    code = ("import sys; from napari_wsss.device import likely_devices; d = likely_devices(); "
            "print(d[-1], 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["cpu", "False"]


def test_the_probe_names_cuda_where_a_driver_is_and_torch_decides_once_loaded(monkeypatch: pytest.MonkeyPatch
                                                                              ) -> None:
    import shutil

    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/nvidia-smi" if name == "nvidia-smi" else None)
    assert device.likely_devices()[0] == "cuda"
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(sys, "platform", "linux")  # not Apple silicon
    probed = device.likely_devices()
    assert "mps" not in probed and probed[-1] == "cpu"
    monkeypatch.undo()
    import torch  # noqa: F401  (once loaded, torch's own answer)

    assert device.likely_devices() == device.available_devices()
