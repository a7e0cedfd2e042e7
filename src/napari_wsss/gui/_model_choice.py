"""Which model versions the widgets list (``list_model_versions``), which one Segment preselects for an image, and
why (said on its model line).

The shipped demo (``sshr-default``) was trained on generated LUAD-like tiles; on real tissue it is worse than
trivial, yet it was listed first and preselected for every image. The rule now:

* an image whose annotation project already has chosen classes: a model of those classes (an open session's
  project is the widget's own project-class rule; this reads one on disk that no widget opened yet);

* images whose file names carry image-level labels (``-[1 0 0 1]`` LUAD-HistoSeg, ``-[0101]`` BCSS-WSSS), the
  sample tiles among them, and the generated sample slide: a model of that many classes (the demo for LUAD);
* images without class names (a folder of real H&E, one real image, a real slide): the shipped real-tissue model
  (a shipped version trained on real images, ``sshr-glas``);
* anything else (a layer the plugin did not open): the list's order, as before.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..data.tiles import _LABEL_RE as _LABELS  # what parse_labels_from_name reads
from ._layers import layer_meta


def image_origin(layer: Any) -> tuple[str, int | None]:
    """("named", n classes) for files with labels in their names, ("sample", None) for the shipped samples,
    ("plain", None) for files without class names, ("unknown", None) for a layer not read from files."""
    from ..resources import sample_data_dir

    meta = layer_meta(layer)
    files = meta.get("files") or ([meta["path"]] if meta.get("path") else [])
    if not files:
        return "unknown", None
    named = [m for f in files if (m := _LABELS.findall(Path(f).name))]
    if named and len(named) * 2 >= len(files):  # most files carry labels: a LUAD-/BCSS-style folder
        return "named", len(re.sub(r"\s+", "", named[0][-1]))
    samples = sample_data_dir().resolve()
    if all(Path(f).resolve().is_relative_to(samples) for f in files):  # the generated sample slide
        return "sample", None
    return "plain", None


def is_demo(card: Any) -> bool:
    """Trained on the project's generated tiles (``model_summary`` calls it a demo)."""
    data = (card.training_data or "").strip()
    return data.startswith("synthetic") or "synthetic" in data.split(":")[0]


def saved_project_classes(layer: Any) -> list[str] | None:
    """The class names of the image's annotation project on disk when someone chose them (a person, or a model
    that wrote into it); None without a project or with its untouched default. Read without opening a session:
    the Segment widget alone opens none until it runs."""
    from ..store import Project
    from ..store_records import INDEX_FILE
    from ._layers import project_root_of

    try:
        root = project_root_of(layer)
        if root is None or not (root / INDEX_FILE).is_file():
            return None
        project = Project.load(root)
    except (ValueError, OSError):  # a damaged project is Review's to report, not a reason to fail here
        return None
    return None if project.schema_default else project.schema.names


def latest_used_version(layer: Any, versions: list[tuple[str, Any]]) -> tuple[int, str] | None:
    """(index into ``versions``, why) of the version that made the latest predictions the image's project still
    holds unreviewed (a fine-tuned version the user chose with "Use this version"); None without one listed.

    Reopening a project preselected the shipped model again, so the next Segment click undid the switch to the
    project's own fine-tuned version (walk-through on GlaS, session 24). Read from disk, like the classes rule.
    """
    from ..store import Project
    from ..store_records import INDEX_FILE
    from ._layers import project_root_of

    try:
        root = project_root_of(layer)
        if root is None or not (root / INDEX_FILE).is_file():
            return None
        items = [it for it in Project.load(root).items() if it.status == "unreviewed" and it.model]
    except (ValueError, OSError):
        return None
    if not items:
        return None
    name = max(items, key=lambda it: it.updated or "").model
    for i, (_, card) in enumerate(versions):
        if card is not None and (card.name or "") == name:
            return i, f"preselected: this project's latest predictions came from {name}"
    return None


def preferred_version(layer: Any, versions: list[tuple[str, Any]]) -> tuple[int, str] | None:
    """(index into ``versions`` [(label, card)], why) of the version to preselect for ``layer``; None: keep the
    list's order."""
    classes = saved_project_classes(layer)
    origin, n = ("project", None) if classes else image_origin(layer)
    if origin == "unknown":
        return None
    for i, (label, card) in enumerate(versions):
        if card is None:
            continue
        if origin == "project" and card.class_schema.names == classes:
            return i, "preselected: the classes of this image's annotation project"
        if origin == "named" and card.class_schema.n_foreground == n:
            return i, f"preselected: the file names carry {n} class labels, as this model's classes"
        if origin == "sample" and is_demo(card):
            return i, "preselected: the demo model for the generated sample data"
        if origin == "plain" and label.endswith("(shipped)") and not is_demo(card):
            return i, ("preselected: the file names carry no class labels, so the shipped model trained on real "
                       "H&E (the demo model was trained on generated tiles only)")
    return None


def also_listed_under(card: Any) -> str | None:
    """The method whose list a version also belongs in when its network changed kind: a fine-tuned IFKD student
    under its base's method, a distilled shipped version (``sshr-glas``) under its teacher's; None otherwise."""
    for other in ((card.config.get("finetune") or {}).get("base_method"),
                  (card.config.get("teacher_card") or {}).get("method")):  # a fine-tune of sshr-glas: its teacher's
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
    outside any open project). The status used to send the user to Browse… although Segment already listed it."""
    from . import _sessions

    if labels:
        return f"the Segment widget lists it as {labels[0]!r} and has it selected"
    for label, path, _ in _sessions.project_model_versions(viewer):
        if Path(path).resolve() == Path(folder).resolve():
            return f"Segment (Plugins > napari-wsss > Segment) lists it as {label!r}"
    return "to use it, open Segment (Plugins > napari-wsss > Segment) and Browse… to this folder"
