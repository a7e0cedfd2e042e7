"""Which model versions the widgets list (``list_model_versions``), which one Segment preselects for an image, and
why (said on its model line).

The rule itself is the core's (``napari_wsss.model_choice``, shared with ``napari-wsss predict`` without
``--model``); this reads what it needs from a layer. A layer the plugin did not open keeps the list's order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import model_choice
from ..model_choice import is_demo  # noqa: F401  (widgets import it from here)
from ._layers import layer_meta


def image_origin(layer: Any) -> tuple[str, int | None]:
    """("named", n classes) for files with labels in their names, ("sample", None) for the shipped samples,
    ("plain", None) for files without class names, ("unknown", None) for a layer not read from files.

    A layer another reader opened (napari's builtins, chosen in napari's reader dialog) has no plugin metadata
    but napari's ``source.path``: its files are judged by name too (walk-through: real colon tiles opened with
    the builtins got the demo model preselected)."""
    meta = layer_meta(layer)
    files = meta.get("files") or ([meta["path"]] if meta.get("path") else [])
    path = getattr(getattr(layer, "source", None), "path", None)
    if not files and path:
        files = model_choice.input_files([path])
    return model_choice.files_origin(files)


def saved_project_classes(layer: Any) -> list[str] | None:
    """The class names of the image's annotation project on disk when someone chose them; None without a project
    or with its untouched default. Read without opening a session: Segment alone opens none until it runs."""
    from ._layers import project_root_of

    return model_choice.saved_project_classes(project_root_of(layer))


def latest_used_version(layer: Any, versions: list[tuple[str, Any]]) -> tuple[int, str] | None:
    """(index into ``versions``, why) of the version that made the latest predictions the image's project still
    holds unreviewed (``model_choice.latest_used_version``); None without one listed."""
    from ._layers import project_root_of

    found = model_choice.latest_used_version(project_root_of(layer), versions)
    return (found[0], f"preselected: {found[1]}") if found else None


def preferred_version(layer: Any, versions: list[tuple[str, Any]]) -> tuple[int, str] | None:
    """(index into ``versions`` [(label, card)], why) of the version to preselect for ``layer``; None: keep the
    list's order."""
    found = model_choice.preferred_version(versions, *image_origin(layer), saved_project_classes(layer))
    return (found[0], f"preselected: {found[1]}") if found else None


def shipped_preferred_card(layer: Any) -> Any:
    """The card of the version Segment would preselect for ``layer`` among the listed ones; None: none fits."""
    from ..models.card import load_card

    try:
        cards = [(label, load_card(d)) for label, d, _ in list_model_versions()]
    except (ValueError, FileNotFoundError):
        return None
    found = preferred_version(layer, cards)
    return cards[found[0]][1] if found else None


def adopt_model_classes(session: Any, card: Any) -> str | None:
    """A new, empty project (default classes, no prediction, no user work) takes ``card``'s classes, as Segment's
    first run would; returns the line that says so, None when nothing changed. Review and Tag docked before
    Segment on colon images offered LUAD's lung classes.

    Raises:
        ValueError / OSError: the project refused them.
    """
    p = session.project
    if card is None or not p.schema_default or p.counts()["predicted"] or any(p.user_work().values()):
        return None
    if card.class_schema.names == session.schema.names:
        return None
    session.use_model(card)
    return (f"New project: it takes the {card.class_schema.name} classes of {card.name or 'the model'}, the model "
            "Segment uses for these images")


def also_listed_under(card: Any) -> str | None:
    """The method whose list a version also belongs in when its network changed kind: a fine-tuned IFKD student
    under its base's method, a distilled shipped version (``sshr-glas``) under its teacher's or, distilled more
    than once (its teacher an ifkd student too), under its first stage's; None otherwise."""
    for other in ((card.config.get("finetune") or {}).get("base_method"),
                  (card.config.get("teacher_card") or {}).get("method"),  # a fine-tune of sshr-glas: its teacher's
                  card.config.get("stage1_method")):
        if other and other != card.method:
            return other
    return None


def list_model_versions() -> list[tuple[str, Path, str]]:
    """(label, folder, method) of model versions: shipped ones first.

    A shipped version distilled from another method's network (``sshr-glas``: SSHR's maps distilled into a
    segmentation network, an ``ifkd`` version) is listed under its own method and under its teacher's, where a
    user who reads its name looks (the same rule as fine-tuned versions, ``_sessions.project_model_versions``)."""
    from ..models.card import load_card
    from ..resources import shipped_models_dir

    out = []
    root = shipped_models_dir()
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if (d / "card.json").is_file():
            try:
                card = load_card(d)
            except (ValueError, FileNotFoundError):
                continue
            out.append((f"{d.name} (shipped)", d, card.method))
            if also := also_listed_under(card):
                out.append((f"{d.name} (shipped)", d, also))
    return out


def fitting_versions(project: Any, extra: list[tuple[str, Path]] = ()) -> list[tuple[str, Path, Any]]:
    """(label, folder, card) of the versions that could write into ``project``: its own versions newest first,
    then ``extra`` (a docked Segment's choice), then the shipped ones; each folder once, unreadable or
    other-class versions left out. Review's and Tag's "Order by model" offer these, so a fresh project (no
    version of its own yet) can be ordered by the shipped model of its classes."""
    from ..models.card import load_card

    found = [(d.name, d) for d in reversed(project.model_versions())] + list(extra)
    found += [(label, d) for label, d, _ in list_model_versions()]
    out, seen = [], set()
    for label, d in found:
        if str(d) in seen:
            continue
        seen.add(str(d))
        try:
            card = load_card(d)
        except (ValueError, FileNotFoundError):
            continue
        if project.schema_refusal(card.class_schema) is None:
            out.append((label, Path(d), card))
    # those of the project's classes first (a fresh gland project listed the LUAD demo first, walk-through)
    return sorted(out, key=lambda v: v[2].class_schema.names != project.schema.names)


def combo_cards(combo: Any) -> list[tuple[str, Any]]:
    """(label, card or None when unreadable) of every version in a versions combo (folder as item data)."""
    from ..models.card import load_card

    out = []
    for i in range(combo.count()):
        try:
            out.append((combo.itemText(i), load_card(combo.itemData(i)) if combo.itemData(i) else None))
        except (ValueError, FileNotFoundError):
            out.append((combo.itemText(i), None))
    return out


def project_classes_index(versions: list[tuple[str, Any]], current: int, wanted: list[str]) -> int | None:
    """Index of the first version of the project's classes ``wanted`` when the ``current`` one is of others (it
    could not write into the project); None to keep the current one (its classes fit, or it is unreadable)."""
    def names(i: int) -> list[str] | None:
        card = versions[i][1] if 0 <= i < len(versions) else None
        return card.class_schema.names if card is not None else None

    if names(current) in (None, wanted):
        return None
    return next((i for i in range(len(versions)) if names(i) == wanted), None)


def where_segment_lists(viewer: Any, folder: Path, labels: list[str]) -> str:
    """Where a new version can be used, as the status after training says it: the Segment widgets' ``labels`` for
    it (they selected it), or the open project's models/ that Segment lists when docked, or Browse… (a folder
    outside any open project). The status used to send the user to Browse… although Segment already listed it.

    A version listed under two methods (a fine-tuned IFKD student of an SSHR base: "<name> (project)" under ifkd,
    "<name> (project, ifkd)" under sshr, ``_sessions.project_model_versions``) is named as Segment
    shows it under the method it has selected (a docked Segment's, else the one it opens on), and that method
    is named: the status said "(project)" while Segment, on sshr, showed the other label.
    """
    from qtpy.QtWidgets import QApplication

    from .. import methods  # noqa: F401  (fills the registry)
    from ..models._registry import METHODS
    from . import _sessions
    from ._layers import same
    from ._menu import menu_path
    from .segment_widget import SegmentWidget

    if labels:
        return f"the Segment widget lists it as {labels[0]!r} and has it selected"
    target = Path(folder).resolve()
    listed = [(label, method) for label, path, method in _sessions.project_model_versions(viewer)
              if Path(path).resolve() == target]
    if not listed:
        return f"to use it, open Segment ({menu_path('Segment')}) and Browse… to this folder"
    segs = [w for w in QApplication.allWidgets() if isinstance(w, SegmentWidget) and same(w.viewer, viewer)]
    if segs:
        combo, method = segs[0].version_combo, segs[0].method_combo.currentText()
        shown = [combo.itemText(i) for i in range(combo.count()) if combo.itemData(i)
                 and Path(combo.itemData(i)).resolve() == target]
        if shown:  # exactly the text in its list
            return f"Segment ({menu_path('Segment')}) lists it as {shown[0]!r} under the method {method!r}"
    else:  # the method a Segment docked now opens on (SegmentWidget.__init__)
        method = "sshr" if "sshr" in METHODS.names() else next(iter(METHODS.names()), "")
    label, method = next(((lb, m) for lb, m in listed if m == method), listed[0])
    return f"Segment ({menu_path('Segment')}) lists it as {label!r} under the method {method!r}"
