"""The compute core must not import Qt, napari or magicgui (architecture rule); only gui/ may."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "src" / "napari_wsss"
FORBIDDEN = {"qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "superqt"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


CORE_FILES = [p for p in PKG.rglob("*.py") if "gui" not in p.relative_to(PKG).parts]


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_core_module_imports_no_qt(path: Path) -> None:
    bad = _imports(path) & FORBIDDEN
    assert not bad, f"{path.relative_to(PKG)} imports {bad}; move GUI code to napari_wsss/gui/"


def test_there_are_core_files() -> None:
    # guards the parametrisation above against silently testing nothing
    assert len(CORE_FILES) > 10


def test_package_import_is_light() -> None:
    code = "import sys, napari_wsss; print(sorted(m for m in ('torch','qtpy','napari') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
