"""Room for each stacked dock's main button: docking a second or third widget must not hide the first one's.

napari stacks a newly docked widget under the others in its area and pushes the earlier ones up to their minimum
height. The forms scroll (``scrolling_layout``), so that minimum is small: docking Review & correct and Fine-tune
from the Plugins menu after Segment left Segment 120 px high with its Segment button scrolled out of sight
(walk-through on real GlaS tiles). When a plugin dock first shows, the docks stacked in its column are resized so
that each of ours shows everything down to its ``primary_row`` widget where the column has the room (the dock just
shown first, then the others from the top); the rest of the height goes to the dock just shown, as napari intends.
Where the column is too short for that (napari's default window, about 1089 x 630, with three docks), our docks are
tabbed together instead, the one just shown in front. Other plugins' docks keep their height. Pure Qt: the dock
widgets and their main window, no napari internals.
"""

from __future__ import annotations

from typing import Any

MARGIN = 8  # px below the primary row


def _ours(dock: Any) -> bool:
    from qtpy.QtWidgets import QWidget

    return any(getattr(w, "primary_row", None) is not None for w in dock.findChildren(QWidget))


def _need(dock: Any) -> int:
    """The height ``dock`` needs to show its content down to its ``primary_row`` (its own height if not ours)."""
    from qtpy.QtCore import QPoint
    from qtpy.QtWidgets import QWidget

    owners = [w for w in dock.findChildren(QWidget) if getattr(w, "primary_row", None) is not None]
    if not owners:
        return dock.height()
    keep = owners[0].primary_row
    return max(dock.minimumSizeHint().height(), keep.mapTo(dock, QPoint(0, keep.height())).y() + MARGIN)


def make_room(widget: Any) -> bool:
    """Resize the docks stacked with ``widget``'s dock so each shows its primary row; returns whether it did."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QDockWidget, QMainWindow

    dock = widget.parentWidget()
    while dock is not None and not isinstance(dock, QDockWidget):
        dock = dock.parentWidget()
    win = dock.parentWidget() if dock is not None else None
    if not isinstance(win, QMainWindow) or dock.isFloating():
        return False
    column = sorted((d for d in win.findChildren(QDockWidget) if d.isVisible() and not d.isFloating()
                     and win.dockWidgetArea(d) == win.dockWidgetArea(dock) and d.x() == dock.x()),
                    key=lambda d: d.y())
    if len(column) < 2:
        return False
    if any(win.tabifiedDockWidgets(d) for d in column):  # tabbed docks each get the whole column already
        return _join_our_tabs(win, dock, column)
    heights = [d.height() for d in column]
    need = [_need(d) for d in column]
    if all(h >= n for h, n in zip(heights, need)):
        return False  # nothing hidden
    # each dock at its minimum (other plugins' at their height), then, the dock just shown first and the others
    # from the top, each that still fits is given its primary row; what is left goes to the dock just shown
    floor = [n if n == h and not _ours(d) else d.minimumSizeHint().height()
             for d, h, n in zip(column, heights, need)]
    budget = sum(heights) - sum(floor)
    ours = [d for d in column if _ours(d)]
    if budget < 0:
        return _tab_together(win, dock, ours) if len(ours) > 1 else False
    sizes = list(floor)
    i = column.index(dock)
    for j in [i, *(j for j in range(len(column)) if j != i)]:
        if need[j] - floor[j] <= budget:
            budget -= max(0, need[j] - floor[j])
            sizes[j] = max(floor[j], need[j])
    sizes[i] += budget
    if len(ours) > 1 and any(sizes[j] < need[j] for j, d in enumerate(column) if _ours(d)):
        return _tab_together(win, dock, ours)  # too short a column to show each of ours: one tab each
    win.resizeDocks(column, sizes, Qt.Orientation.Vertical)
    return True


def _tab_together(win: Any, dock: Any, ours: list[Any]) -> bool:
    """Tab our docks of a column together, ``dock`` (the one just shown) in front: each tab has the whole column.

    At napari's default window (about 1089 x 630) three stacked docks could not all show their main button however
    the height was shared: Segment's button and Review's Accept were scrolled out of sight, and Fine-tune's
    "Use this version" sat at y = 460 in a 285-px view (walk-through). Other plugins' docks stay where they are;
    the user can drag a tab out again.
    """
    first = ours[0] if ours[0] is not dock else ours[1]
    for d in ours:
        if d is not first:
            win.tabifyDockWidget(first, d)
    dock.raise_()
    return True


def _join_our_tabs(win: Any, dock: Any, column: list[Any]) -> bool:
    """Our docks are already tabbed (``_tab_together``): a dock of ours shown under them joins their tabs."""
    if not _ours(dock) or win.tabifiedDockWidgets(dock):
        return False
    tabbed = [d for d in column if d is not dock and _ours(d) and win.tabifiedDockWidgets(d)]
    if not tabbed:
        return False
    win.tabifyDockWidget(tabbed[0], dock)
    dock.raise_()
    return True


def make_room_when_shown(widget: Any) -> None:
    """From a dock widget's first ``showEvent``: make room once napari has laid the docks out."""
    from qtpy.QtCore import QTimer

    if getattr(widget, "_room_made", False):
        return
    widget._room_made = True

    def later() -> None:
        try:
            make_room(widget)
        except RuntimeError:  # the widget was closed before the timer fired
            pass

    QTimer.singleShot(100, later)


def follow_tab(widget: Any, on_visible: Any) -> bool:
    """Call ``on_visible(bool)`` when ``widget``'s dock is shown or hidden, its tab chosen or left included.

    Qt leaves a dock whose tab is not in front visible (moved off-screen, no ``hideEvent``), so a widget that
    changes the layers while it is on screen (Tag hides the segmentation) must follow its dock's
    ``visibilityChanged`` once the docks are tabbed (``_tab_together``): clicking Review's tab left the
    segmentation hidden and unpaintable (walk-through). Connected once; returns whether a dock was found."""
    from qtpy.QtWidgets import QDockWidget

    if getattr(widget, "_follows_tab", False):
        return True
    dock = widget.parentWidget()
    while dock is not None and not isinstance(dock, QDockWidget):
        dock = dock.parentWidget()
    if dock is None:
        return False
    dock.visibilityChanged.connect(on_visible)
    widget._follows_tab = True
    return True

