"""Figures that follow the layers they are computed from: a brush stroke, a fill, napari's undo, new data or a new
placement of a watched layer calls back once, shortly after the last such change.

The Segment widget's readouts were computed on a slider step, a new segmentation or a new ground truth only: a user
who painted a correction on the tumour layer or on the ground truth, or gave the ground truth the image's placement
as a refusal advised, kept seeing the old Dice (or the refusal) until the next slider step. A stroke is many paint
events and a new placement several; the timer makes them one computation, after the stroke.
"""

from __future__ import annotations

from typing import Callable, Iterable

from napari.layers import Layer
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QWidget

# napari's Labels emit `paint` for a stroke or fill, `data` for new data, and `set_data` when they are redrawn: after an
# undo / redo, new data or a new scale or affine, and when shown again. A hidden layer is not redrawn, so new data
# given to it was heard of only when it was shown again; its undo / redo is not heard of at all (napari 0.9.2 emits
# nothing): the Segment widget checks hidden layers' masks before it shows or saves figures (`segment._Scored`).
CHANGES = ("paint", "data", "set_data", "scale", "translate", "affine", "rotate", "shear")
DELAY_MS = 100


class LayerWatch:
    """Calls `on_change` DELAY_MS after the last change of a watched layer, while `widget` is docked (a closed dock's
    widget catches up when docked again: `undock.when_docked`)."""

    def __init__(self, widget: QWidget, on_change: Callable[[], None]) -> None:
        self._widget, self._on_change = widget, on_change
        self._timer = QTimer(widget)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DELAY_MS)
        self._timer.timeout.connect(self._fire)
        self._layers: list[Layer] = []
        widget.destroyed.connect(self._release)

    def watch(self, layers: Iterable[Layer | None]) -> None:
        """Watch these layers (None: none) instead of those watched so far."""
        layers = list(dict.fromkeys(layer for layer in layers if layer is not None))
        if len(layers) == len(self._layers) and all(a is b for a, b in zip(layers, self._layers)):
            return
        self._release()
        for layer in layers:
            for name in CHANGES:
                getattr(layer.events, name).connect(self._changed)
        self._layers = layers

    def settled(self) -> None:
        """The caller computes from the layers as they are now: a call still pending for earlier changes is spent (the
        widget's own setting of a layer's data would otherwise compute the same figures twice)."""
        self._timer.stop()

    def again(self) -> None:
        """Call back as after a change the layers' events do not tell of (napari's undo on a hidden layer)."""
        self._timer.start()

    def _changed(self, *_: object) -> None:
        self._timer.start()

    def _fire(self) -> None:
        if self._widget.parent() is not None:
            self._on_change()

    def _release(self, *_: object) -> None:
        for layer in self._layers:
            for name in CHANGES:
                getattr(layer.events, name).disconnect(self._changed)
        self._layers = []
