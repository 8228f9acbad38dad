"""Screenshots for the README from a real napari viewer (run under a virtual display: `xvfb-run -a python ...`).

    python docs/screenshots/make_screenshots.py [MODEL_FOLDER]

Opens the sample patient, trains briefly in the Train widget (train.png), then segments with the default model,
else MODEL_FOLDER, else the model just trained, and reads Dice against the sample's mask (segment.png). When that
model takes clicks, it then corrects the mask as benchmarks/corrections.py's simulated user does: the least sure
piece removed in the review list, three clicks where the mask is most wrong (correct.png).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from napari._qt.dialogs.qt_notification import NapariQtNotification
import napari_lgg_unet.widgets.segment  # noqa: F401 (both imported, they dock as themselves: widgets/lazy.py)
import napari_lgg_unet.widgets.train  # noqa: F401
from napari_lgg_unet.engine.click_training import next_click
from napari_lgg_unet.engine.model import default_model_path
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QApplication

HERE = Path(__file__).resolve().parent
PLUGIN = "napari-lgg-unet"


def wait_until(condition, timeout: float = 600.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("the widget did not finish in time")
        QApplication.processEvents()
        time.sleep(0.02)


def save(viewer: napari.Viewer, name: str, toasts: bool = False) -> None:
    """Grab the window into `name`; without `toasts`, close the notifications first (an earlier step's "model
    saved in /tmp/..." toast covered the corrected slice)."""
    if not toasts:
        for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
            toast.close()
    for _ in range(20):
        QApplication.processEvents()
    viewer.window._qt_window.grab().save(str(HERE / name))
    print(f"wrote {HERE / name}")


def main(model: str | None) -> None:
    viewer = napari.Viewer()
    viewer.window._qt_window.resize(1700, 1000)
    viewer.open_sample(PLUGIN, "lgg_patient")
    viewer.dims.set_current_step(0, 13)
    dock, train = viewer.window.add_plugin_dock_widget(PLUGIN, "Train U-Net")
    dock.setMaximumWidth(640)  # leave the canvas most of the window
    have_default = (default_model_path() / "config.json").is_file()
    if have_default:
        train.start_from.value = "default"  # fine-tune the shipped model on the painted labels
    settings = train.settings
    settings.image_size.value, settings.batch_size.value, settings.epochs.value = 128 if have_default else 64, 4, 4
    settings.val_fraction.value = 0.3
    train.output.value = Path(tempfile.mkdtemp(prefix="lgg-unet-screenshots-"))
    train.steps_per_epoch = 4
    train.train_button.clicked()
    wait_until(lambda: not train.running)
    save(viewer, "train.png", toasts=True)

    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment tumour", tabify=True)
    if have_default:
        segment.model.value = "default"
    else:
        segment.model.value = "folder"
        segment.model_folder.value = Path(model) if model else train.model_dir
    segment.segment_button.clicked()
    wait_until(lambda: not segment.running)
    segment.truth.value = viewer.layers["TCGA_CS_6665_20010817 mask"]
    viewer.layers["TCGA_CS_6665_20010817 mask"].visible = False
    save(viewer, "segment.png")
    correct(viewer, segment)
    viewer.close()


def correct(viewer: napari.Viewer, segment) -> None:
    """Remove the least sure piece (when there are two or more), then three clicks computed from the manual mask,
    shown on the last click's slice."""
    segment.correct.value = True
    if len(segment.review_list.rows) > 1:
        segment.review_list.keep_box(0).setCheckState(Qt.Unchecked)
    truth = np.asarray(viewer.layers["TCGA_CS_6665_20010817 mask"].data) > 0
    tumour = segment.prediction_layer()
    for _ in range(3):
        click = next_click(np.asarray(tumour.data) > 0, truth)
        if click is None:
            break
        segment.corrections.add_click(np.asarray((click.z, click.y, click.x)), click.positive)
        wait_until(lambda: not segment.corrections.job.running and not segment.corrections._queue)
        if segment.corrections.session is None:
            return  # the model takes no clicks (its error was notified): no correction screenshot
        viewer.dims.set_current_step(0, round(click.z))
    save(viewer, "correct.png")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
