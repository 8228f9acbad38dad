"""A matplotlib canvas in the dock: train and validation loss (left axis) and validation Dice (right axis) per epoch.

Lines are created once and only their data changes, which keeps each redraw short on the GUI thread.
"""

from __future__ import annotations

from typing import Callable

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

from ..engine.events import EpochRecord

Series = Callable[[EpochRecord], "float | None"]
LOSS_SERIES: tuple[tuple[str, Series], ...] = (
    ("train loss", lambda r: r.train_loss),
    ("val loss", lambda r: None if r.main_validation is None else r.main_validation.loss),
)
DICE_SERIES: tuple[str, Series] = ("val Dice", lambda r: None if r.main_validation is None else r.main_validation.dice)


class LossPlot(FigureCanvasQTAgg):
    def __init__(self) -> None:
        figure = Figure(figsize=(4, 2.6))
        figure.subplots_adjust(left=0.14, right=0.86, bottom=0.18, top=0.95)
        super().__init__(figure)
        self.setMinimumHeight(200)
        loss_axis = figure.add_subplot(111)
        dice_axis = loss_axis.twinx()
        loss_axis.set_xlabel("epoch")
        loss_axis.set_ylabel("loss")
        dice_axis.set_ylabel("val Dice")
        dice_axis.set_ylim(0, 1)
        self.lines = [(loss_axis.plot([], [], marker="o", label=label, color=f"C{i}")[0], value)
                      for i, (label, value) in enumerate(LOSS_SERIES)]
        dice_label, dice_value = DICE_SERIES
        self.lines.append((dice_axis.plot([], [], marker="s", label=dice_label, color="C2")[0], dice_value))
        loss_axis.legend(handles=[line for line, _ in self.lines], fontsize="small", loc="upper right")
        self.loss_axis = loss_axis
        self.history: list[EpochRecord] = []

    def plot(self, history: list[EpochRecord]) -> None:
        """Redraw from the full history (one record per epoch, as in the engine's EpochEnd.history)."""
        self.history = list(history)
        for line, value in self.lines:
            points = [(record.epoch, value(record)) for record in self.history if value(record) is not None]
            line.set_data([p[0] for p in points], [p[1] for p in points])
        self.loss_axis.relim()
        self.loss_axis.autoscale_view()
        self.loss_axis.set_xlim(0.5, max(len(self.history), 1) + 0.5)
        self.draw_idle()
