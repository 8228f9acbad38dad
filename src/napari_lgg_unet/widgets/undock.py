"""Noticing that napari's dock close button took a widget out: what a widget must end then (its jobs, correction
mode) it registers here, for a widget docked directly and one shown inside the loading placeholder alike."""

from __future__ import annotations

from typing import Callable

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QWidget


def when_undocked(widget: QWidget, on_undock: Callable[[], None]) -> None:
    """Call `on_undock` each time `widget` loses its parent: napari's dock close button (`remove_dock_widget`) takes
    the dock's own widget out that way, and `lazy.Loading` passes that on to the widget it shows. The widget itself
    lives on (the viewer's events still hold it), so whatever it does by itself must end here."""
    _UndockWatch(widget, on_undock)


class _UndockWatch(QObject):
    """An event filter on `widget`, owned by it (Qt keeps it as long as the widget)."""

    def __init__(self, widget: QWidget, on_undock: Callable[[], None]) -> None:
        super().__init__(widget)
        self._on_undock = on_undock
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.ParentChange and watched.parent() is None:
            self._on_undock()
        return False
