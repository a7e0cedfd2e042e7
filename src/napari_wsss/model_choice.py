"""Which model version suits some images when nobody named one, and why: one rule for the Segment widget
(``gui/_model_choice`` preselects with it) and the CLI (``predict`` without ``--model``).

The shipped demo (``sshr-default``) was trained on generated LUAD-like tiles; on real tissue it is worse than
trivial, yet the CLI used it silently for every input. The rule, in order:

* the version that made the latest predictions the images' annotation project still holds unreviewed;
* an annotation project whose classes someone chose: a version of those classes;
* file names carrying image-level labels (``-[1 0 0 1]`` LUAD-HistoSeg, ``-[0101]`` BCSS-WSSS), the sample
  tiles among them, and the generated sample slide: a version of that many classes (the demo for LUAD);
* images without class names (a folder of real H&E, one real image, a real slide): the shipped version
  trained on real images (``sshr-glas``).

Versions are ``(label, card)`` pairs; shipped ones are labelled ``"<name> (shipped)"``. Reasons are phrases
("the file names carry ..."): the widget prefixes "preselected: ", the CLI says "using".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .data.tiles import _LABEL_RE as _LABELS  # what parse_labels_from_name reads

SHIPPED = " (shipped)"  # label suffix of a shipped version


def files_origin(files: Sequence[str | Path]) -> tuple[str, int | None]:
    """("named", n classes) for files with labels in their names, ("sample", None) for the shipped samples,
    ("plain", None) for files without class names, ("unknown", None) for no files."""
    from .resources import sample_data_dir

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


def saved_project_classes(root: Path | None) -> list[str] | None:
    """The class names of the annotation project at ``root`` when someone chose them (a person, or a model that
    wrote into it); None without a project or with its untouched default. Read without opening a session."""
    from .store import Project
    from .store_records import INDEX_FILE

    try:
        if root is None or not (Path(root) / INDEX_FILE).is_file():
            return None
        project = Project.load(root)
    except (ValueError, OSError):  # a damaged project is Review's to report, not a reason to fail here
        return None
    return None if project.schema_default else project.schema.names


def latest_used_version(root: Path | None, versions: list[tuple[str, Any]]) -> tuple[int, str] | None:
    """(index into ``versions``, why) of the version that made the latest predictions the project at ``root``
    still holds unreviewed (a fine-tuned version chosen with "Use this version"); None without one listed.

    Reopening a project chose the shipped model again, so the next Segment undid the switch to the project's own
    fine-tuned version (walk-through on GlaS, session 24).
    """
    from .store import Project
    from .store_records import INDEX_FILE

    try:
        if root is None or not (Path(root) / INDEX_FILE).is_file():
            return None
        items = [it for it in Project.load(root).items() if it.status == "unreviewed" and it.model]
    except (ValueError, OSError):
        return None
    if not items:
        return None
    name = max(items, key=lambda it: it.updated or "").model
    for i, (_, card) in enumerate(versions):
        if card is not None and (card.name or "") == name:
            return i, f"this project's latest predictions came from {name}"
    return None


def preferred_version(versions: list[tuple[str, Any]], origin: str, n: int | None,
                      classes: list[str] | None = None) -> tuple[int, str] | None:
    """(index into ``versions`` [(label, card or None)], why) of the version that suits images of ``origin``
    (``files_origin``) whose project holds ``classes`` (``saved_project_classes``); None: no rule applies."""
    if classes:
        origin = "project"
    for i, (label, card) in enumerate(versions):
        if card is None:
            continue
        if origin == "project" and card.class_schema.names == classes:
            return i, "the classes of this image's annotation project"
        if origin == "named" and card.class_schema.n_foreground == n:
            return i, f"the file names carry {n} class labels, as this model's classes"
        if origin == "sample" and is_demo(card):
            return i, "the demo model for the generated sample data"
        if origin == "plain" and label.endswith(SHIPPED) and not is_demo(card):
            return i, ("the file names carry no class labels, so the shipped model trained on real H&E (the demo "
                       "model was trained on generated tiles only)")
        if origin == "unknown" and label.endswith(SHIPPED) and not is_demo(card):
            return i, ("no file names to read the classes from, so the shipped model trained on real H&E (the demo "
                       "model was trained on generated tiles only)")
    return None


def shipped_versions() -> list[tuple[str, Path, Any]]:
    """(label "<name> (shipped)", folder, card) of every readable shipped version, by name."""
    from .models.card import load_card
    from .resources import shipped_model_dirs

    out = []
    for d in shipped_model_dirs():
        try:
            out.append((d.name + SHIPPED, d, load_card(d)))
        except (ValueError, FileNotFoundError):
            continue
    return out


def input_files(inputs: Sequence[str | Path]) -> list[Path]:
    """The files whose names ``files_origin`` judges: a folder's images (the folder itself when it holds none,
    e.g. a folder of slides), or the given files."""
    from .data.tiles import IMAGE_SUFFIXES

    files: list[Path] = []
    for p in map(Path, inputs):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES) or [p]
        else:
            files.append(p)
    return files


def choose_for_input(inputs: Sequence[str | Path], method: str | None = None) -> tuple[Path, Any, str]:
    """(version folder, card, why) for segmenting ``inputs`` (an image, a folder of tiles, a slide or several
    slides) when no model was named: the rule above over the shipped versions and those kept in the inputs'
    annotation project (only ``method``'s, when given); the shipped default (the demo) when no rule applies,
    saying so."""
    from .models.card import load_card
    from .resources import default_model_dir
    from .store import default_project_root

    files = input_files(inputs)
    root = default_project_root(inputs[0]) if len(inputs) == 1 and Path(inputs[0]).exists() else None
    rows = shipped_versions()
    if root is not None and (root / "models").is_dir():
        for d in sorted((root / "models").iterdir()):
            try:
                rows.append((f"{d.name} (project)", d, load_card(d)))
            except (ValueError, FileNotFoundError, NotADirectoryError):
                continue
    if method:
        rows = [r for r in rows if r[2].method == method]
    versions = [(label, card) for label, _, card in rows]
    origin, n = files_origin(files)
    found = latest_used_version(root, versions) or preferred_version(versions, origin, n,
                                                                     saved_project_classes(root))
    if found is not None:
        return rows[found[0]][1], rows[found[0]][2], found[1]
    d = default_model_dir()
    why = (f"the file names carry {n} class labels and no shipped model has {n} classes, so the default model"
           if origin == "named" else "the default model")
    return d, load_card(d), why


def describe_choice(name: str, card: Any, why: str) -> str:
    """The one line a command prints when it chose the model itself: which, why, and a demo said plainly."""
    demo = (f"; {name} is a DEMO trained on generated (synthetic) tiles, not on real tissue (give --model to use "
            "another)" if is_demo(card) else "")
    return f"model {name} (no --model given): {why}{demo}"
