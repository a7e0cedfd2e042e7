"""Tag's "classes" choice: a new project starts with the LUAD default classes, which are wrong for, say, a folder
of colon images; the person picks the classes before the first tag. Once the project holds their work (tags,
corrections, model versions) the classes are fixed and the choice is greyed out, saying why."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QComboBox

from ..classes import PRESETS, load_schema

_TIP = ("The classes the keys 1-9 tag. Choose them before the first tag: a preset (luad: lung adenocarcinoma, "
        "bcss: breast cancer, glas: colon gland / non-gland), or type a schema file's path (docs/class-schemas.md).")


def make_classes_combo() -> QComboBox:
    combo = QComboBox()
    combo.setEditable(True)  # a schema file's path may be typed, as in Train
    combo.addItems(list(PRESETS))
    combo.setToolTip(_TIP)
    return combo


def sync_classes_combo(combo: QComboBox, project: Any) -> None:
    """Show the project's classes; allow a change only while the project holds no user work."""
    names = [short for short, s in PRESETS.items() if s.names == project.schema.names]
    combo.blockSignals(True)
    combo.setCurrentText(names[0] if names else project.schema.name)
    combo.blockSignals(False)
    work = project.user_work()
    combo.setEnabled(not any(work.values()))
    combo.setToolTip(_TIP if combo.isEnabled() else
                     f"Fixed: the project holds your work on these classes ({work['tagged']} tagged, "
                     f"{work['reviewed']} reviewed, {work['models']} model versions).")


def choose_classes(session: Any, text: str) -> bool:
    """The project takes the classes ``text`` names (a preset or a schema file); returns whether they changed.

    Raises:
        KeyError / ValueError: an unknown preset or bad schema file, or a project holding user work.
    """
    return session.choose_classes(load_schema(text.strip()))
