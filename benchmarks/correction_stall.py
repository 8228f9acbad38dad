"""Does the viewer stall while segmenting and correcting? The longest gap of napari's event loop at each step.

Issue 15 asks that the viewer never stall longer than 0.5 s while correcting. The network runs in a worker thread,
but showing its result (the tumour layer, the review list, the probability layer, the Dice readout) runs on the GUI
thread. A 10 ms Qt timer ticks throughout; the longest gap between two ticks while a click is computed and shown is
the longest time the viewer could not react. The Segment widget's own handler of a finished click
(`SegmentWidget._corrected`) is timed on its own as well. The same gap is measured while the scan is segmented,
and while the threshold slider is dragged after the clicks (a step every 30 ms, then until the mask is shown), and
when the probability map's box is ticked and unticked (twice each, 0.3 s apart).

The scan is a real patient opened through the plugin's reader (default: the packaged sample; --patient a Kaggle
patient folder, e.g. a long one, or a case folder such as a BraTS case: 1 mm, 155 slices of 240 x 240), segmented
with the default model; the clicks are the simulated user's of benchmarks/corrections.py (deepest point of the
largest 3D error against the manual mask). With --paint a square of tumour is painted away from the tumour before
the clicks, so that each click's result carries the user's painting (the worker lists the painted mask). Run under a
display:

    PYTHONPATH=src:benchmarks xvfb-run -a python benchmarks/correction_stall.py --clicks 5 \\
        --patient ../shared/data/lgg/kaggle_3m/TCGA_DU_6400_19830518
    PYTHONPATH=src:benchmarks xvfb-run -a python benchmarks/correction_stall.py --clicks 4 \\
        --patient ../shared/data/brats-sample/Brats18_TCIA10_628_1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import napari
import numpy as np

from qt_stall import Heartbeat, run_until
from timing import cpu_model
from napari_lgg_unet.engine.click_training import next_click
import napari_lgg_unet.widgets.segment  # noqa: F401 (imported, it docks as itself, not a placeholder: widgets/lazy.py)
from napari_lgg_unet.engine.device import set_threads
from napari_lgg_unet.sample_data import SAMPLE_PATIENT, sample_folder

def timed(handler, spent: list[float]):
    """`handler` that appends how long each call took to `spent`."""
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return handler(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - started)
    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patient", type=Path, default=sample_folder(),
                        help="a Kaggle patient folder or a case folder (BraTS / nnU-Net layout)")
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--slider", default="0.45,0.4,0.35,0.3,0.25",
                        help="thresholds the slider is dragged through after the clicks")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--paint", action="store_true",
                        help="paint a 20 x 20 square of tumour away from it before the clicks: each click's worker "
                             "then lists the painted mask, and the GUI thread reads the painting as the click starts")
    args = parser.parse_args()
    threads = set_threads(args.threads)
    viewer = napari.Viewer(show=False)
    if args.patient == sample_folder():
        viewer.open_sample("napari-lgg-unet", "lgg_patient")
        name = SAMPLE_PATIENT
    else:
        viewer.open(str(args.patient), plugin="napari-lgg-unet")
        name = args.patient.name
    _, widget = viewer.window.add_plugin_dock_widget("napari-lgg-unet", "Segment tumour")
    widget.model.value = "default"
    beat = Heartbeat()
    started = time.perf_counter()
    widget.segment_button.clicked()
    run_until(lambda: not widget.running)
    print(f"segmenting: {time.perf_counter() - started:.2f} s, longest event-loop stall {beat.longest * 1000:.0f} ms")
    widget.correct.value = True  # builds the correction session in the background; a user's first click comes later
    run_until(lambda: not widget.corrections.job.running)
    handler_seconds: list[float] = []
    widget.corrections._on_change = timed(widget.corrections._on_change, handler_seconds)
    truth = np.asarray(viewer.layers[f"{name} mask"].data) > 0
    tumour = widget.prediction_layer()
    print(f"{name}: {truth.shape[0]} slices of {truth.shape[1]}x{truth.shape[2]}, {threads} threads, {cpu_model()}")
    start_seconds: list[float] = []
    if args.paint:
        square = np.zeros(truth.shape, dtype=bool)
        square[2, 10:30, 10:30] = True
        tumour.data_setitem(np.nonzero(square), 1)
        run_until(lambda: not widget._paint_watch._timer.isActive() and not widget.listing_job.running)
        widget.corrections._painting = timed(widget.corrections._painting, start_seconds)
    stalls = []
    for number in range(1, args.clicks + 1):
        click = next_click(np.asarray(tumour.data) > 0, truth)
        if click is None:
            break
        beat.reset()
        shown_before = len(handler_seconds)
        started = time.perf_counter()
        widget.corrections.add_click(np.asarray((click.z, click.y, click.x)), click.positive)
        run_until(lambda: not widget.corrections.job.running and not widget.corrections._queue)
        seconds = time.perf_counter() - started
        stalls.append(beat.longest)
        shown = f"result shown in {handler_seconds[-1] * 1000:.0f} ms" if len(handler_seconds) > shown_before else \
            "no result shown (see the notifications)"
        print(f"click {number} ({'tumour' if click.positive else 'not tumour'}): {seconds:.2f} s to the new mask, "
              f"longest event-loop stall {beat.longest * 1000:.0f} ms, {shown} on the GUI thread", flush=True)
    print(f"longest stall over {len(stalls)} clicks: {max(stalls) * 1000:.0f} ms; longest GUI-thread handler: "
          f"{max(handler_seconds, default=0) * 1000:.0f} ms")
    if start_seconds:
        print(f"painting read for each click's worker in at most {max(start_seconds) * 1000:.0f} ms")
    beat.reset()
    started = time.perf_counter()
    for threshold in (float(value) for value in args.slider.split(",")):
        widget.cleanup.threshold.value = threshold
        pause = time.perf_counter()
        run_until(lambda: time.perf_counter() - pause >= 0.03)
    run_until(lambda: not widget.corrections.job.running and not widget.corrections._queue
              and not widget.cleanup_job.running)
    print(f"threshold slider through {args.slider}: {time.perf_counter() - started:.2f} s to the last mask, longest "
          f"event-loop stall {beat.longest * 1000:.0f} ms")
    for shown in (True, False, True, False):
        beat.reset()
        widget.show_probability.value = shown
        pause = time.perf_counter()
        run_until(lambda: time.perf_counter() - pause >= 0.3)  # napari draws the change meanwhile
        print(f"probability map box {'ticked' if shown else 'unticked'}: longest event-loop stall "
              f"{beat.longest * 1000:.0f} ms")
    viewer.close()


if __name__ == "__main__":
    main()
