"""Widgets and files the way a user's napari gives them: docked from the manifest, opened by File > Open."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PLUGIN = "napari-wsss"
SEGMENT, REVIEW, SAM, EXPORT, TRAIN, FINETUNE = ("Segment", "Review & correct", "SAM refine", "Export", "Train",
                                                 "Fine-tune")
TAG = "Tag"


def dock(viewer: Any, name: str) -> Any:
    """Dock a widget as Plugins > WSSS tissue segmentation > ``name`` does: napari builds it with a PublicOnlyProxy viewer."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    return widget


def open_path(viewer: Any, path: Path) -> list[Any]:
    """File > Open with the napari-wsss reader."""
    return viewer.open(str(path), plugin=PLUGIN)
