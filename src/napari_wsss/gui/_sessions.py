"""The open project sessions of each viewer: the Review widget opens them, the other widgets look them up.

One session per image layer, kept while the viewer lives; ``SESSION_LISTENERS`` let widgets refresh their
project and model-version lists when one opens or closes.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..classes import ClassSchema
from ..store import Project
from ._layers import image_source, is_segmentation_of, layer_meta
from ._project_restore import restore_layer
from ._project_session import ProjectSession
from ._project_units import slide_units

_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
SESSION_LISTENERS: list[Callable[[Any], Any]] = []  # called with the viewer when a session opens or closes


def open_session(viewer: Any, image_layer: Any, schema: ClassSchema | None = None) -> ProjectSession:
    """The project session of an image layer, opened (and its stored masks restored) on first use.

    Raises:
        ValueError: the layer holds an in-memory array (no file to keep a project beside), or the project on
            disk uses other classes than ``schema``.
    """
    sessions = _SESSIONS.setdefault(viewer, {})
    sess = sessions.get(id(image_layer))
    if sess is not None:
        return sess
    src = image_source(image_layer)
    if src is None:
        raise ValueError(f"Layer {image_layer.name!r} was not opened from a file, so there is nowhere to keep its "
                         "corrections. Open the tile folder, slide or image with File > Open (napari-wsss reader).")
    kind, path = src
    project = Project.open(path, schema)
    sess = ProjectSession(viewer, image_layer, project, kind)
    sessions[id(image_layer)] = sess
    existing = [ly for ly in viewer.layers if is_segmentation_of(ly, image_layer.name)]
    if existing:
        layer = existing[-1]
        units = None
        if kind == "slide":
            units = slide_units(layer_meta(layer)["placement"], layer.data.shape)
        sess.attach(layer, units)
    else:
        restore_layer(sess)
    for cb in list(SESSION_LISTENERS):
        cb(viewer)
    return sess


def session_for(viewer: Any, image_layer: Any) -> ProjectSession | None:
    """The open session of an image layer, or None (no project is kept until the Review widget opens one)."""
    return _SESSIONS.get(viewer, {}).get(id(image_layer))


def sessions(viewer: Any) -> list[ProjectSession]:
    return list(_SESSIONS.get(viewer, {}).values())


def close_sessions(viewer: Any, *_: Any) -> None:
    """Save and close every session of a viewer (widget/viewer close)."""
    for sess in _SESSIONS.pop(viewer, {}).values():
        try:
            sess.close()
        except Exception as e:  # closing must not raise out of a Qt destroy signal; the last autosave stands
            import warnings

            warnings.warn(f"napari-wsss: could not save the last corrections of {sess.project.root}: {e}",
                          stacklevel=1)
    for cb in list(SESSION_LISTENERS):
        cb(viewer)


def project_model_versions(viewer: Any) -> list[tuple[str, Path, str]]:
    """(label, folder, method) of the model versions stored in the viewer's open projects."""
    from ..models.card import load_card

    out = []
    for sess in sessions(viewer):
        for d in sess.project.model_versions():
            try:
                out.append((f"{d.name} (project)", d, load_card(d).method))
            except (ValueError, FileNotFoundError):
                continue
    return out
