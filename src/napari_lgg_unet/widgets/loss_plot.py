"""A matplotlib canvas in the dock: train and validation loss (left axis) and validation Dice (right axis) per epoch.

Lines are created once and only their data changes, which keeps each redraw short on the GUI thread.
"""

from __future__ import annotations

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

LOSS_SERIES = (("train_loss", "train loss"), ("val_loss", "val loss"))
DICE_SERIES = ("val_dice", "val Dice")


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
        self.lines = {key: loss_axis.plot([], [], marker="o", label=label, color=f"C{i}")[0]
                      for i, (key, label) in enumerate(LOSS_SERIES)}
        self.lines[DICE_SERIES[0]] = dice_axis.plot([], [], marker="s", label=DICE_SERIES[1], color="C2")[0]
        loss_axis.legend(handles=list(self.lines.values()), fontsize="small", loc="upper right")
        self.loss_axis = loss_axis
        self.history: list[dict] = []

    def plot(self, history: list[dict]) -> None:
        """Redraw from the full history (one dict per epoch, as in the engine's TrainingEvent.history)."""
        self.history = list(history)
        for key, line in self.lines.items():
            points = [(record["epoch"], record[key]) for record in self.history if record.get(key) is not None]
            line.set_data([p[0] for p in points], [p[1] for p in points])
        self.loss_axis.relim()
        self.loss_axis.autoscale_view()
        self.loss_axis.set_xlim(0.5, max(len(self.history), 1) + 0.5)
        self.draw_idle()
