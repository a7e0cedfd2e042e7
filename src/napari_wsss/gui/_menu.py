"""Where napari puts the plugin's widgets, for messages that send the user to one (one place, checked by a test)."""

from __future__ import annotations

# napari names the plugin's submenu of Plugins after the manifest's display_name (napari.yaml), not the package
MENU = "Plugins > WSSS tissue segmentation"


def menu_path(widget: str) -> str:
    """``"Plugins > WSSS tissue segmentation > Segment"`` for ``widget`` (a widget's display_name)."""
    return f"{MENU} > {widget}"
