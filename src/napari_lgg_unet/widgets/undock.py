"""Noticing that napari's dock close button took a widget out: what a widget must end then (its jobs, correction
mode, its connections to the viewer) it registers here, for a widget docked directly and one shown inside the loading
placeholder alike."""

from __future__ import annotations

from typing import Any, Callable, Iterable

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QWidget


def when_undocked(widget: QWidget, on_undock: Callable[[], None]) -> None:
    """Call `on_undock` each time `widget` loses its parent: napari's dock close button (`remove_dock_widget`) takes
    the dock's own widget out that way, and `lazy.Loading` passes that on to the widget it shows. The widget itself
    lives on as long as anything holds it (a running job does), so whatever it does by itself must end here."""
    _ParentWatch(widget, on_undock)


def when_docked(widget: QWidget, on_dock: Callable[[], None]) -> None:
    """Call `on_dock` each time `widget` gets a parent: docked by the Plugins menu, or docked again by a script
    (`viewer.window.add_dock_widget`) after its dock was closed, when it must catch up with what its connections,
    off while it was closed (`connect_while_docked`), did not hear."""
    _ParentWatch(widget, None, on_dock)


def connect_while_docked(widget: QWidget, connections: Iterable[tuple[Any, Callable]]) -> None:
    """Connect each (signal, slot) now, and keep them only while `widget` is docked (has a parent).

    A closed dock's widget lives on, and its slots went on running on every slider step or layer change of the
    viewer: after closing segmented Segment docks a slider step of a BraTS case cost twice what it did with none, for
    readouts no one could see, and the viewer's references kept every closed widget in memory. So the slots are
    disconnected when the widget leaves its dock, connected again if it is docked again, and disconnected for good
    when it is destroyed (a session-wide signal outlives the viewer). A signal is anything with `connect` and
    `disconnect(slot)`: napari's events, psygnal's signals."""
    docked = _Connections(list(connections))
    _ParentWatch(widget, docked.disconnect, on_dock=docked.connect)
    widget.destroyed.connect(docked.disconnect)  # a bound method: see `_Connections`


def choices_follow_layers(viewer: Any, widget: Any) -> list[tuple[Any, Callable]]:
    """(event, `widget.reset_choices`) for the layer events napari connects to a docked widget's `reset_choices`
    (`Window.add_dock_widget`), for `connect_while_docked`. napari leaves them connected when the dock is closed; its
    events keep one entry per slot, so disconnecting these ends napari's connections as well."""
    events = viewer.layers.events
    return [(event, widget.reset_choices) for event in (events.inserted, events.removed, events.reordered,
                                                        events.renamed)]


class _Connections:
    """(signal, slot) pairs connected or not, all together.

    Connected to a widget's `destroyed`, its `disconnect` must stay a bound method (so must the other handlers of
    `destroyed`: `JobRunner`, `ClickCorrections`): PyQt holds a bound method's object weakly and skips the call once
    the garbage collector takes it. A closed widget is garbage, which the collector may clear in any order before Qt
    deletes the widget; a lambda there was called on the cleared objects: an AttributeError in `JobRunner`, then a
    segmentation fault (seen once in 8 runs of closing three Segment docks in a row)."""

    def __init__(self, pairs: list[tuple[Any, Callable]]) -> None:
        self._pairs, self._connected = pairs, False
        self.connect()

    def connect(self, *_: object) -> None:
        if not self._connected:
            for signal, slot in self._pairs:
                signal.connect(slot)
            self._connected = True

    def disconnect(self, *_: object) -> None:
        if self._connected:
            for signal, slot in self._pairs:
                signal.disconnect(slot)
            self._connected = False


class _ParentWatch(QObject):
    """An event filter on `widget`, owned by it (Qt keeps it as long as the widget): `on_undock` (if any) when the
    widget loses its parent, `on_dock` (if any) when it gets one."""

    def __init__(self, widget: QWidget, on_undock: Callable[[], None] | None,
                 on_dock: Callable[[], None] | None = None) -> None:
        super().__init__(widget)
        self._on_undock, self._on_dock = on_undock, on_dock
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.ParentChange:
            call = self._on_undock if watched.parent() is None else self._on_dock
            if call is not None:
                call()
        return False
