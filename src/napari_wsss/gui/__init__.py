"""The napari layer: widgets, reader, writer, sample data. The only package that imports Qt.

Importing it keeps ``triton`` out of the viewer's process (docs/design.md, "No crash whatever the GL stack"):
triton bundles its own LLVM, which segfaults a process where Mesa's llvmpipe (the OpenGL of most VMs, remote
desktops and AMD/Mesa machines) is already loaded, and napari has always loaded it by the time a plugin is
imported. torch imports triton lazily (first optimizer step, ``torch.compile``); with ``sys.modules["triton"]``
set to None torch treats it as absent and runs everything this plugin needs (nothing here uses
``torch.compile``). Where triton is already imported (another plugin, a script that did it before the viewer)
it is left alone.
"""

from __future__ import annotations

import sys


def block_triton() -> bool:
    """Make ``import triton`` fail in this process unless it already happened; True when it is now blocked."""
    if sys.modules.get("triton", False) is not False:
        return sys.modules["triton"] is None
    sys.modules["triton"] = None  # type: ignore[assignment]
    return True


block_triton()
