"""Messages that send the user to a widget name napari's real menu path.

Walk-through: messages said "Segment (Plugins > napari-wsss > Segment)"; napari names the submenu after the
manifest's display_name, "Plugins > WSSS tissue segmentation > Segment".
"""

from __future__ import annotations

from pathlib import Path

import napari_wsss
from napari_wsss.gui._menu import MENU, menu_path


def _menu_paths(viewer) -> set[str]:  # noqa: ANN001
    """Every leaf of napari's menu bar as "Menu > Submenu > Item"."""
    found: set[str] = set()

    def plain(text: str) -> str:  # Qt's "&" marks a shortcut key; "&&" is a literal "&"
        return text.replace("&&", "\0").replace("&", "").replace("\0", "&")

    def walk(menu, path: list[str]) -> None:  # noqa: ANN001
        for action in menu.actions():
            text = plain(action.text())
            if action.menu() is not None:
                walk(action.menu(), [*path, text])
            elif text:
                found.add(" > ".join([*path, text]))

    for action in viewer.window._qt_window.menuBar().actions():
        if action.menu() is not None:
            walk(action.menu(), [plain(action.text())])
    return found


def test_menu_path_is_where_napari_puts_the_widgets(make_napari_viewer) -> None:  # noqa: ANN001
    paths = _menu_paths(make_napari_viewer())
    for widget in ("Segment", "Review & correct", "Tag", "Fine-tune"):
        assert menu_path(widget) in paths, sorted(p for p in paths if p.startswith("Plugins"))


def test_no_message_names_another_menu_path() -> None:
    """Every "Plugins > ..." in the package comes from ``menu_path``: a hand-written one went stale."""
    src = Path(napari_wsss.__file__).parent
    stale = [f"{p.relative_to(src)}:{i}" for p in src.rglob("*.py") if p.name != "_menu.py"
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if "Plugins >" in line]
    assert not stale, stale
    assert MENU.startswith("Plugins > ")
