"""The open project sessions: the Review widget opens them, the other widgets look them up.

Sessions are keyed on the annotation project's folder, the one thing every widget agrees on: napari gives each
docked widget its own ``PublicOnlyProxy`` of the viewer (and a new proxy per layer read), so the viewer object or
``id(layer)`` differ between the Segment and the Review widget of one viewer. The project folder also makes the
session the single writer of its project in this process. ``SESSION_LISTENERS`` let widgets refresh their
project and model-version lists when one opens or closes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..classes import ClassSchema
from ..store import Project
from ._layers import image_source, is_segmentation_of, layer_meta, project_root_of, same, unwrap
from ._project_restore import restore_layer
from ._project_session import ProjectSession
from ._project_units import slide_units

_SESSIONS: dict[str, ProjectSession] = {}  # resolved project folder -> its session
SESSION_LISTENERS: list[Callable[[Any], Any]] = []  # called with the viewer when a session opens or closes


def _key(image_layer: Any) -> str | None:
    root = project_root_of(image_layer)
    return None if root is None else str(root)


def open_session(viewer: Any, image_layer: Any, schema: ClassSchema | None = None) -> ProjectSession:
    """The project session of an image layer, opened (and its stored masks restored) on first use.

    Raises:
        ValueError: the layer holds an in-memory array (no file to keep a project beside), the project is open
            in another viewer of this process, or the project on disk uses other classes than ``schema``.
    """
    key = _key(image_layer)
    if key is None:
        raise ValueError(f"Layer {image_layer.name!r} was not opened from a file, so there is nowhere to keep its "
                         "corrections. Open the tile folder, slide or image with File > Open (napari-wsss reader).")
    sess = _SESSIONS.get(key)
    if sess is not None and same(sess.viewer, viewer):
        sess.image_layer = unwrap(image_layer)  # the same data reopened as a new layer
        return sess
    if sess is not None:  # another window had it (often one already closed): save its work, then take over
        _close(key)
    kind, path = image_source(image_layer)  # type: ignore[misc]
    project = Project.open(path, schema, root=key)
    sess = ProjectSession(viewer, image_layer, project, kind)
    _SESSIONS[key] = sess
    existing = [ly for ly in viewer.layers if is_segmentation_of(ly, image_layer.name)]
    full = [ly for ly in existing if layer_meta(ly).get("placement", {}).get("kind") == "slide_full"
            and layer_meta(ly).get("complete")]
    if kind == "slide" and not full:  # reopened: the saved whole-slide result comes back as a multiscale layer
        from ._slide_job import reopen_slide_result

        layer = reopen_slide_result(viewer, image_layer, project.root)
        full = [layer] if layer is not None else []
    if kind == "slide" and full:  # a whole-slide result: corrected region by region at level 0
        from ._slide_regions import start_region_editor

        start_region_editor(sess, full[-1])
    elif [ly for ly in existing if not ly.multiscale]:
        layer = [ly for ly in existing if not ly.multiscale][-1]
        units = None
        if kind == "slide":
            units = slide_units(layer_meta(layer)["placement"], layer.data.shape)
        keep_unsaved_prediction(sess, layer, units)
        sess.attach(layer, units)
    else:
        restore_layer(sess)
    for cb in list(SESSION_LISTENERS):
        cb(viewer)
    return sess


def keep_unsaved_prediction(sess: ProjectSession, layer: Any, units: list | None = None) -> list[str]:
    """A segmentation made while no project was open (Segment docked alone, Review docked after it) becomes the
    project's prediction; returns the keys stored.

    Without this, Review docked second found a project of the default classes and nothing predicted: it switched
    the project to the model's classes and retired the layer on screen as "old classes" (hidden, read-only), and
    a class button said "segment the image first" (walk-through at napari's default window on real GlaS tiles).
    The project takes the layer's classes when it holds no user work; the regions the layer covers whole (no
    unlabelled pixel) are stored as predicted, the user's corrected or accepted ones kept (and shown) as they are.
    """
    import numpy as np

    from ._layers import layer_schema

    schema, model = layer_schema(layer), layer_meta(layer).get("model")
    if schema is None or not model:
        return []
    if schema.names != sess.schema.names:
        if sess.project.schema_refusal(schema) is not None:
            return []  # the project's classes hold user work: Segment refuses such a model too; leave it be
        from types import SimpleNamespace

        sess.use_model(SimpleNamespace(class_schema=schema, name=model))
    labels = np.array(layer.data)
    covered = [u for u in (units or sess.units) if labels[u.index].size and labels[u.index].min() > 0]
    if not covered:
        return []
    before = labels.copy()
    saved, skipped = sess.store_prediction(covered, labels, str(model))
    if skipped and not np.array_equal(before, labels):
        layer.data = labels  # the user's own masks, not this model's labels, where they corrected or accepted
    return saved


def location_note(sess: ProjectSession) -> str | None:
    """One line when a project is not beside its images (sample data, a read-only folder): where it is kept."""
    from ..store import beside_project_root
    from ._layers import PROJECT_ROOT

    src = image_source(sess.image_layer)
    root = sess.project.root
    if src is None or layer_meta(sess.image_layer).get(PROJECT_ROOT) or root == beside_project_root(src[1]):
        return None
    return (f"{src[1]} is read-only or ships with napari-wsss, so its project (your corrections) is kept in "
            f"{root}.")


def session_for(viewer: Any, image_layer: Any) -> ProjectSession | None:
    """The open session of an image layer, or None (no project is kept until the Review widget opens one)."""
    key = _key(image_layer)
    sess = _SESSIONS.get(key) if key is not None else None
    return sess if sess is not None and same(sess.viewer, viewer) else None


def sessions(viewer: Any) -> list[ProjectSession]:
    """The sessions open in ``viewer`` (any proxy of it), each project once."""
    return [s for s in _SESSIONS.values() if same(s.viewer, viewer)]


def close_sessions(viewer: Any, *_: Any) -> None:
    """Save and close every session of a viewer (widget/viewer close)."""
    for key in [k for k, s in _SESSIONS.items() if same(s.viewer, viewer)]:
        _close(key)
    for cb in list(SESSION_LISTENERS):
        cb(viewer)


def close_session_of(viewer: Any, image_layer: Any) -> None:
    """Save and close the session of one image layer (before it moves to another project folder)."""
    key = _key(image_layer)
    if key in _SESSIONS and same(_SESSIONS[key].viewer, viewer):
        _close(key)


def move_project(viewer: Any, image_layer: Any, folder: str | Path) -> tuple[Path, Path]:
    """Keep an image layer's project in ``folder`` from now on; returns (old, new) project folders.

    A folder holding a project (``project.json``) is used as it is; an empty or new one becomes the project; in
    any other folder a ``<data>.wsss`` project is made inside. The old project is saved and closed and stays on
    disk; the image's segmentation layers leave the viewer (they belong to it, and its classes may differ). The
    next ``open_session`` opens the new folder.
    """
    from ..store import INDEX_FILE
    from ._layers import META_KEY, PROJECT_ROOT

    old = project_root_of(image_layer)
    if old is None:
        raise ValueError(f"Layer {image_layer.name!r} was not opened from a file, so it has no project; open it "
                         "with File > Open (napari-wsss reader).")
    new = Path(folder).expanduser().resolve()
    if new.is_file():
        raise ValueError(f"{new} is a file; choose a folder for the project.")
    if new.is_dir() and any(new.iterdir()) and not (new / INDEX_FILE).is_file():
        new = new / old.name
    if new == old:
        return old, new
    for ly in [ly for ly in viewer.layers if is_segmentation_of(ly, image_layer.name)]:
        viewer.layers.remove(ly)  # its session saves it into the old project, which keeps it
    close_session_of(viewer, image_layer)
    unwrap(image_layer).metadata.setdefault(META_KEY, {})[PROJECT_ROOT] = str(new)
    return old, new


def _close(key: str) -> None:
    sess = _SESSIONS.pop(key)
    try:
        sess.close()
    except Exception as e:  # closing must not raise out of a Qt destroy signal; the last autosave stands
        import warnings

        warnings.warn(f"napari-wsss: could not save the last corrections of {sess.project.root}: {e}", stacklevel=1)


def project_model_versions(viewer: Any) -> list[tuple[str, Path, str]]:
    """(label, folder, method) of the model versions stored in the viewer's open projects.

    A fine-tuned version whose network changed kind (an IFKD student of an SSHR base is an ``ifkd`` version) is
    listed under its own method and under its base's, where the pathologist who fine-tuned that base looks.
    """
    from ..models.card import load_card
    from ._model_choice import also_listed_under

    out = []
    for sess in sessions(viewer):
        for d in sess.project.model_versions():
            try:
                card = load_card(d)
            except (ValueError, FileNotFoundError):
                continue
            out.append((f"{d.name} (project)", d, card.method))
            if also := also_listed_under(card):
                out.append((f"{d.name} (project, {card.method})", d, also))  # short: the combo cut it off
    return out
