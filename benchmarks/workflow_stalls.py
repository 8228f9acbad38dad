"""Does the viewer stall outside correction mode? The longest event-loop gap at each step of three workflows.

The bar (issue 15): the viewer never stalls longer than 0.5 s. benchmarks/correction_stall.py measures the clicks;
this measures the rest, in one fresh process, in a shown viewer, driven by code:

1. open: a BraTS-style case folder opened with our reader (four sequence layers and the mask), then the first dock of
   Segment tumour and of Train U-Net (each until the widget itself is there, see widgets/lazy.py);
2. segment: the case segmented with the default model (FLAIR, T1, T1c picked by name; its mask as ground truth), rows
   of the review list clicked, a piece removed and restored, a brush stroke painted away from the tumour until the
   list has its row, that piece removed, restored and erased (`paint_workflow`), the threshold moved, test-time
   augmentation ticked and the case segmented again;
3. train: a pair from layers (the packaged sample) plus a Kaggle folder of --patients patients, a short run stopped
   after its first step, and one let finish (--epochs epochs of --steps steps, the loss plot drawn at each epoch);
   then Train pressed on the case's three sequences and its mask (the largest layers a user would pair), stopped at
   once: what the viewer's thread reads from the layers before the worker starts.

Each step prints the longest gap of a 10 ms Qt timer (qt_stall.Heartbeat) and, for a gap over 0.3 s, what the
viewer's thread was running then (sampled by a watchdog thread). Run under a virtual display:

    PYTHONPATH=src:benchmarks xvfb-run -a python benchmarks/workflow_stalls.py
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import napari
import numpy as np
from qtpy.QtCore import Qt

from qt_stall import Heartbeat, run_until

PLUGIN = "napari-lgg-unet"
CASE = Path(__file__).resolve().parents[1] / "../shared/data/brats-sample/Brats18_TCIA10_628_1"
KAGGLE = Path(__file__).resolve().parents[1] / "../shared/data/lgg/kaggle_3m"
SAMPLED_OVER_S = 0.3


class Culprit:
    """What every thread runs during the longest stall over SAMPLED_OVER_S since `reset` (the innermost frames of
    each), sampled every 50 ms by a daemon thread: the viewer's thread may be busy itself, or wait for Python's lock
    that another thread holds."""

    def __init__(self, beat: Heartbeat) -> None:
        self.beat, self.gui, self.longest, self.stack = beat, threading.get_ident(), 0.0, ""
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while True:
            time.sleep(0.05)
            stalled = time.perf_counter() - self.beat.last
            if stalled > SAMPLED_OVER_S and stalled > self.longest:
                self.longest = stalled
                self.stack = "".join(
                    f"\n    {'GUI' if ident == self.gui else 'thread'}: " + " < ".join(
                        f"{Path(f.filename).name}:{f.lineno} {f.name}"
                        for f in reversed(traceback.extract_stack(frame)[-5:]))
                    for ident, frame in sys._current_frames().items() if ident != threading.get_ident())

    def reset(self) -> None:
        self.longest, self.stack = 0.0, ""


class Steps:
    """Measures one step at a time (`run`): the longest event-loop gap, how long the step's own call and the longest
    handler of a job's items took on the viewer's thread, and the longest garbage collection, which holds Python's
    lock and so stalls every thread (a stall with no handler and no collection to show for it is napari drawing, or
    a worker that held the lock)."""

    def __init__(self) -> None:
        self.beat = Heartbeat()
        self.culprit = Culprit(self.beat)
        self.rows: list[tuple[str, float, float]] = []
        self.handled = 0.0  # the longest call of a `timed` handler in this step
        self.collection = (0.0, "")  # the longest garbage collection in this step and the thread that ran it
        self.full: list[str] = []  # each full (generation 2) collection in this step: its milliseconds and thread
        self.step = "before the first step"
        self.every_full: list[str] = []  # each full collection of the session, with the step (or what came after)
        self._collecting = 0.0
        gc.callbacks.append(self._collected)

    def _collected(self, phase: str, info: dict) -> None:
        """A garbage collection holds Python's lock from start to end, every thread's included."""
        if phase == "start":
            self._collecting = time.perf_counter()
            return
        spent = time.perf_counter() - self._collecting
        thread = "GUI" if threading.get_ident() == self.culprit.gui else threading.current_thread().name
        if info["generation"] == 2:
            self.full.append(f"{spent * 1000:.0f} ms on {thread}")
            self.every_full.append(f"{spent * 1000:.0f} ms on {thread}, {self.step}")
        if spent > self.collection[0]:
            self.collection = (spent, f"generation {info['generation']} on the {thread} thread")

    def timed(self, widget: object, name: str) -> None:
        """Time each call of `widget.<name>` (a handler a job's items reach, looked up when the job starts)."""
        handler = getattr(widget, name)

        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return handler(*args, **kwargs)
            finally:
                self.handled = max(self.handled, time.perf_counter() - started)

        setattr(widget, name, wrapper)

    def run(self, name: str, action, until=lambda: True, settle_s: float = 0.3) -> None:
        """`action()`, then the event loop until `until()` and `settle_s` more (napari draws the change meanwhile)."""
        run_until(lambda: True)
        self.beat.reset()
        self.culprit.reset()
        self.handled, self.collection, self.full, self.step = 0.0, (0.0, ""), [], name
        started = time.perf_counter()
        action()
        acted = time.perf_counter() - started
        run_until(until)
        seconds = time.perf_counter() - started
        pause = time.perf_counter()
        run_until(lambda: time.perf_counter() - pause >= settle_s)
        self.step = f"after {name}"
        self.rows.append((name, seconds, self.beat.longest))
        where = f"  [threads {self.culprit.longest:.2f} s into it: {self.culprit.stack}]" if self.culprit.stack else ""
        print(f"{name}: {seconds:.2f} s, longest stall {self.beat.longest * 1000:.0f} ms; the action took "
              f"{acted * 1000:.0f} ms, the longest handler of a job's item {self.handled * 1000:.0f} ms, the longest "
              f"garbage collection {self.collection[0] * 1000:.0f} ms ({self.collection[1]}), full collections: "
              f"{', '.join(self.full) or 'none'}{where}",
              flush=True)


def open_and_dock(viewer: napari.Viewer, steps: Steps) -> tuple[object, object]:
    """Open the case, dock both widgets (a placeholder first, when their module is still to be imported); the two
    widgets."""
    docked = {}

    def dock(name: str) -> None:
        docked[name] = viewer.window.add_plugin_dock_widget(PLUGIN, name)[1]

    def ready(name: str) -> bool:
        return getattr(docked[name], "widget", docked[name]) is not None

    steps.run("open the BraTS case (reader, on the viewer's thread)", lambda: viewer.open(str(CASE), plugin=PLUGIN))
    for name in ("Segment tumour", "Train U-Net"):
        steps.run(f"first dock of {name}, until ready", lambda: dock(name), lambda: ready(name))
    return tuple(getattr(docked[name], "widget", docked[name]) for name in ("Segment tumour", "Train U-Net"))


def segment_workflow(viewer: napari.Viewer, widget, steps: Steps) -> None:
    def idle() -> bool:
        return not widget.running and not widget.cleanup_job.running

    steps.timed(widget, "_on_item")
    steps.timed(widget, "_cleaned")
    widget.model.value = "default"
    widget.truth.value = viewer.layers[f"{CASE.name} mask"]
    steps.run("Segment (default model, 3 sequences)", widget.segment_button.clicked, idle)
    table = widget.review_list.table.native
    print(f"  {len(widget.review_list.rows)} pieces listed")
    for row in range(min(3, len(widget.review_list.rows))):
        steps.run(f"click review row {row}", lambda: table.cellClicked.emit(row, 1))
    if widget.review_list.rows:
        box = widget.review_list.keep_box(0)
        steps.run("untick Keep of row 0 (remove the piece)", lambda: box.setCheckState(Qt.Unchecked))
        steps.run("tick Keep of row 0 (restore it)", lambda: box.setCheckState(Qt.Checked))
    paint_workflow(widget, steps)
    steps.run("threshold to 0.4", lambda: setattr(widget.cleanup.threshold, "value", 0.4), idle)
    steps.run("threshold back", lambda: setattr(widget.cleanup.threshold, "value", 0.5), idle)
    steps.run("tick test-time augmentation", lambda: setattr(widget.tta, "value", True))
    steps.run("Segment with test-time augmentation", widget.segment_button.clicked, idle)


def paint_workflow(widget, steps: Steps) -> None:
    """A brush stroke of 20 dabs away from the tumour (each dab a `paint` event, as napari's brush gives), until the
    review list lists it (a worker); its Keep box unticked and ticked; then the blob erased, until its row is gone."""
    layer = widget.prediction_layer()
    z = layer.data.shape[0] // 2

    def listed() -> bool:
        return not widget._paint_watch._timer.isActive() and not widget.listing_job.running

    def stroke() -> None:
        layer.brush_size = 5
        for x in range(10, 30):
            layer.paint((z, 12, x), 1)

    steps.timed(widget, "_painting_listed")
    steps.run("brush stroke of 20 dabs away from the tumour, until listed", stroke, listed)
    row = next(r for r, piece in enumerate(widget.review_list.rows) if piece.centre[1] < 20)
    box = widget.review_list.keep_box(row)
    steps.run("untick Keep of the painted piece", lambda: box.setCheckState(Qt.Unchecked))
    steps.run("tick Keep of the painted piece", lambda: box.setCheckState(Qt.Checked))
    blob = np.nonzero(widget._review.labels == widget.review_list.rows[row].index)
    steps.run("erase the painted piece, until its row is gone", lambda: layer.data_setitem(blob, 0), listed)


def pair_sample_with_kaggle_folder(viewer: napari.Viewer, widget, patients: int, step_count: int) -> None:
    """The packaged sample as a layer pair plus a folder of `patients` Kaggle patients: a short run on the CPU."""
    viewer.open_sample(PLUGIN, "lgg_patient")
    folder = Path(tempfile.mkdtemp(prefix="stall-kaggle-"))
    for patient in sorted(KAGGLE.glob("TCGA_*"))[:patients]:
        (folder / patient.name).symlink_to(patient.resolve())
    row = widget.pairs[0]
    row.image_layer.value = next(layer for layer in viewer.layers if layer.name.startswith("TCGA_CS_6665")
                                 and layer.rgb)
    row.labels_layer.value = viewer.layers[f"{row.image_layer.value.name} mask"]
    widget.folder.value = folder
    widget.output.value = Path(tempfile.mkdtemp(prefix="stall-runs-"))
    widget.settings.image_size.value, widget.settings.batch_size.value = 128, 8
    widget.settings.val_fraction.value = 0.2
    widget.steps_per_epoch = step_count
    widget.device.value = "cpu"


def train_workflow(viewer: napari.Viewer, widget, steps: Steps, patients: int, epochs: int, step_count: int) -> None:
    pair_sample_with_kaggle_folder(viewer, widget, patients, step_count)
    steps.timed(widget, "_on_event")

    def stop_after_first_step() -> bool:
        if widget.status.value.startswith("epoch") and not widget.job.stop_asked:  # a Step reached the widget
            widget.train_button.clicked()
        return not widget.running

    widget.settings.epochs.value = 5
    steps.run(f"Train ({patients} folder patients + sample pair), Stop after the first step",
              widget.train_button.clicked, stop_after_first_step)
    widget.settings.epochs.value = epochs
    steps.run(f"Train {epochs} epochs x {step_count} steps to the end", widget.train_button.clicked,
              lambda: not widget.running)
    print(f"  plot shows {len(widget.plot.history)} epochs; status: {widget.status.value}")
    row = widget.pairs[0]
    row.image_layer.value = viewer.layers["FLAIR"]
    row.pre_contrast.value, row.post_contrast.value = viewer.layers["T1"], viewer.layers["T1c"]
    row.labels_layer.value = viewer.layers[f"{CASE.name} mask"]
    widget.folder.line_edit.value = ""  # FileEdit.value = "" would be the current folder

    def press_then_stop() -> None:
        widget.train_button.clicked()
        widget.train_button.clicked()  # Stop at once: only the viewer's share of starting is of interest

    steps.run("Train on the BraTS case's layers (3 sequences + mask), stopped at once", press_then_stop,
              lambda: not widget.running)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--skip", default="", help="comma-separated workflows to skip: segment, train")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    viewer = napari.Viewer()
    run_until(lambda: True)
    steps = Steps()
    segment, train = open_and_dock(viewer, steps)
    if "segment" not in args.skip:
        segment_workflow(viewer, segment, steps)
    if "train" not in args.skip:
        train_workflow(viewer, train, steps, args.patients, args.epochs, args.steps)
    from timing import cpu_model  # imports PyTorch: only once the first docks are measured

    print(f"\nCPU: {cpu_model()}, {os.cpu_count()} cores, 1-min load average at start {load:.2f}")
    print("| step | seconds | longest stall (ms) |\n|---|---|---|")
    for name, seconds, longest in steps.rows:
        print(f"| {name} | {seconds:.2f} | {longest * 1000:.0f} |")
    print("full garbage collections of the session:", "; ".join(steps.every_full) or "none")
    viewer.close()


if __name__ == "__main__":
    main()
