"""What napari docks from the Plugins menu: the widget itself, or a placeholder that loads it in the background.

The widgets need PyTorch and segmentation-models-pytorch, and napari builds a dock widget on its own thread: the
first dock of a session held the viewer for 3.5-4.4 s (2 cores of an AMD EPYC) while they were imported. When the
widget's module is not imported yet, the placeholder imports it in a thread and builds the widget on napari's thread
once it is there; when it is (a second dock, a script or test that imported the widget's module), the widget is built
at once, as before.

Closing the placeholder's dock closes the widget in it the same way (its jobs stop, correction mode ends), and a
placeholder closed while it loads (its dock or the viewer) builds no widget.

The import runs with Python's cyclic garbage collector paused (`_import_without_collections`): a thread that imports
still holds up napari's thread whenever it holds Python's lock for long, and full collections were the long holds.
PyTorch's import is followed by the one full collection it would otherwise have set off later, during a segmentation
or a training run.
"""

from __future__ import annotations

import gc
import importlib
import sys
import threading
from types import ModuleType
from typing import Any

import napari
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from . import notify
from .undock import when_undocked


class _Dock:
    """napari's entry for a widget: napari calls the class with the viewer (it reads the viewer parameter off
    `__init__`) and docks what the call returns: the widget itself, or a `Loading` placeholder."""

    module = widget = ""

    def __new__(cls, viewer: napari.viewer.Viewer) -> Any:
        return _when_loaded(viewer, cls.module, cls.widget)

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        """Never runs (`__new__` returns another object); napari reads this signature to pass the viewer."""


class SegmentDock(_Dock):
    module, widget = "napari_lgg_unet.widgets.segment", "SegmentWidget"


class TrainDock(_Dock):
    module, widget = "napari_lgg_unet.widgets.train", "TrainWidget"


_importing: set[str] = set()  # the modules placeholders are importing now (read and written on napari's thread)


def _when_loaded(viewer: napari.viewer.Viewer, module: str, name: str) -> Any:
    """The widget at once when its module is imported, else a placeholder. PyTorch loaded is not enough: the Train
    widget's module imports matplotlib's Qt canvas, and Train docked after Segment (PyTorch loaded then) held the
    viewer for 0.3-0.7 s on napari's thread (benchmarks/workflow_stalls.py); Segment docked in a session where
    another plugin had loaded PyTorch imported segmentation-models-pytorch and the engine there (4.1 s).

    While a placeholder imports, PyTorch is in `sys.modules` half-imported: a dock then (Train docked while Segment
    loads) waited for the rest on napari's thread, and the viewer froze 5 s. So it gets a placeholder as well."""
    if not _importing and module in sys.modules:  # nothing left to import
        return getattr(importlib.import_module(module), name)(viewer)
    return Loading(viewer, module, name)


def _import_without_collections(module: str) -> ModuleType:
    """Import `module` with the cyclic garbage collector paused, then file what the import made with the old objects;
    after an import as large as PyTorch's, by walking them all once.

    A full collection holds Python's lock from start to end, napari's thread included: once napari and PyTorch are
    loaded it walks half a million objects (0.4-0.9 s on 2 busy EPYC cores), and importing PyTorch set off four to
    seven of them, the longest stalls of the first dock (0.29-0.66 s). What an import makes (modules, classes,
    functions) lives as long as the session, so nothing is lost by not collecting meanwhile.

    Python runs a full collection once the objects filed as old since the last one exceed a quarter of those it kept.
    PyTorch's import keeps some 350 000 objects, more than a viewer held before it (about 200 000), so left
    uncollected it set one off at a later, random moment: in every run of benchmarks/workflow_stalls.py, during
    training (0.44-0.62 s without a reaction). Collected here, while the dock says it loads, the walk comes when the
    user waits anyway, and it files napari's and PyTorch's objects as the ones kept, which puts the next full
    collection off until a quarter of those are new. An import smaller than that (the Train widget's module after
    Segment's) would not have set one off: its objects are filed with the old ones uncounted instead (`freeze` then
    `unfreeze`; counted as new they would have brought the next full collection nearer), so the dock pays no walk.
    Nothing stays frozen, so nothing leaks (freezing the session's objects for good would keep a layer open now from
    ever being freed once deleted). Objects someone else froze stay frozen: the import's are then left to the
    collector's usual course. A collector paused by the host stays as the host left it: no walk is forced on it."""
    enabled = gc.isenabled()
    long_lived = len(gc.get_objects(generation=2))  # 10 ms for 200 000 objects
    gc.disable()
    made = gc.get_count()[0]  # tracked objects made less those freed, counted on while the collector is paused
    try:
        return importlib.import_module(module)
    finally:
        if enabled:  # a host that paused the collector chose when it walks: nothing is forced on it
            if gc.get_count()[0] - made > long_lived / 4:
                gc.collect()
            elif gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()


class _Imported(QObject):
    """Carries the import's outcome from the loading thread to napari's thread (a queued signal)."""

    done = Signal(object)


class Loading(QWidget):
    """Says the widget is loading, imports its module in a thread, then shows the widget itself (`widget`)."""

    def __init__(self, viewer: napari.viewer.Viewer, module: str, name: str) -> None:
        super().__init__()
        self.viewer, self.widget, self._closed = viewer, None, False
        self._note = QLabel("Loading PyTorch and the model code (once per session, a few seconds)...")
        self._note.setWordWrap(True)
        QVBoxLayout(self).addWidget(self._note)
        self._imported = _Imported()
        self._imported.done.connect(lambda outcome: self._show(outcome, module, name))
        when_undocked(self, self._close)
        # the viewer closed (its widgets go with it): a widget still loading is not built, building it in the deleted
        # placeholder raised
        self.destroyed.connect(lambda *_: setattr(self, "_closed", True))
        _importing.add(module)
        threading.Thread(target=self._load, args=(module,), daemon=True, name=f"load {name}").start()

    def _close(self) -> None:
        """napari's close button took this placeholder out of its dock: take the widget out of it, so that the
        widget's own undock watches (`undock.when_undocked`) see it closed, as when it is docked directly."""
        self._closed = True
        if self.widget is not None:
            self.widget.native.setParent(None)

    def _load(self, module: str) -> None:
        try:
            self._imported.done.emit(_import_without_collections(module))
        except Exception as error:  # a broken install: said in the dock and as a notification, not a traceback
            self._imported.done.emit(error)

    def _show(self, outcome: object, module: str, name: str) -> None:
        _importing.discard(module)  # imported (or failed): a dock from now on builds its widget at once
        if self._closed:
            return  # closed while loading: a widget built now would only listen to the viewer, unseen
        if isinstance(outcome, Exception):
            self._note.setText(f"could not load the widget: {outcome}")
            notify.show_error(f"napari-lgg-unet could not load its widget: {outcome}")
            return
        self.widget = getattr(outcome, name)(self.viewer)
        self._note.hide()
        self.layout().addWidget(self.widget.native)
        self.widget.reset_choices()

    def reset_choices(self, *args: Any) -> None:
        """napari calls this on layer changes (as for any dock widget that has it); the widget's lists follow, until
        the dock is closed (napari leaves this connected then)."""
        if self.widget is not None and not self._closed:
            self.widget.reset_choices(*args)
