"""Seconds from pressing Segment in napari to the tumour Labels layer, for a 155-slice volume, click after click.

The first click pays for loading the model and the once-per-process precision choice; later clicks reuse both (and
'auto' may move the model to OpenVINO once it has run long enough). The volume is the packaged sample patient tiled
to 155 slices of 256x256 RGB. Run by hand under a display (or `xvfb-run -a`); results go in docs/benchmarks.md.

    PYTHONPATH=src xvfb-run -a python benchmarks/napari_click_to_labels.py --clicks 3
"""

from __future__ import annotations

import argparse
import time

import napari
import numpy as np
import tifffile
from qtpy.QtCore import QEventLoop, QTimer

from napari_lgg_unet.engine.device import set_threads
import napari_lgg_unet.widgets.segment  # noqa: F401 (imported, it docks as itself, not a placeholder: widgets/lazy.py)
from napari_lgg_unet.sample_data import SAMPLE_PATIENT, sample_folder

SLICES = 155


def wait_until_done(widget) -> None:
    """Run the Qt event loop until the job ends, idle between events: a processEvents() spin would take one of the
    cores the segmentation needs (on 2 cores it doubled the measured time)."""
    loop, timer = QEventLoop(), QTimer()
    timer.timeout.connect(lambda: widget.running or loop.quit())
    timer.start(20)
    loop.exec()
    timer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    threads = set_threads(args.threads)
    sample = tifffile.imread(sample_folder() / f"{SAMPLE_PATIENT}_image.tif")
    volume = np.concatenate([sample] * (SLICES // len(sample) + 1))[:SLICES]
    viewer = napari.Viewer(show=False)
    layer = viewer.add_image(volume, name="scan", rgb=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-lgg-unet", "Segment tumour")
    widget.model.value = "default"
    print(f"{SLICES} slices of {volume.shape[1]}x{volume.shape[2]} RGB, {threads} threads")
    for click in range(1, args.clicks + 1):
        started = time.perf_counter()
        widget.segment_button.clicked()
        wait_until_done(widget)
        seconds = time.perf_counter() - started
        made = f"{layer.name} tumour" in viewer.layers
        print(f"click {click}: {seconds:.2f} s to the Labels layer" if made else f"click {click}: no Labels layer")
    viewer.close()


if __name__ == "__main__":
    main()
