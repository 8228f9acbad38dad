"""`lgg-unet view` in a fresh process, the way a user meets the plugin: napari first, our code (and torch) after."""

import subprocess
import sys

SCRIPT = """
import napari
viewer = napari.Viewer(show=False)
from napari_lgg_unet.launch import open_viewer
viewer.close()
viewer = open_viewer(segment=True)  # what `lgg-unet view --segment`, the README's first command, runs
from qtpy.QtCore import QEventLoop, QTimer
widget = next(w for name, w in viewer.window.dock_widgets.items() if name.startswith("Segment tumour"))
loop, timer = QEventLoop(), QTimer()
timer.timeout.connect(lambda: widget.running or widget.cleanup_job.running or loop.quit())
timer.start(50)
QTimer.singleShot(240_000, loop.quit)
loop.exec()
names = sorted(layer.name for layer in viewer.layers)
docks = sorted(viewer.window.dock_widgets)
from napari_lgg_unet.engine.model import ModelConfig, build_network
import torch
build_network(ModelConfig())(torch.zeros(1, 3, 64, 64))
print(names, docks, widget.readouts.scores["volume"]["dice"])
viewer.close()
"""


def test_view_segments_the_sample_with_both_widgets_docked_and_torch_loads_after_qt():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "TCGA_CS_6665_20010817 mask" in out.stdout and "Segment tumour" in out.stdout and "Train U-Net" in out.stdout
    assert "TCGA_CS_6665_20010817 tumour" in out.stdout  # segmented by the default model
    dice = float(out.stdout.split()[-1])
    assert 0.5 < dice <= 1.0  # read against the patient's manual mask (the default scores 0.635 on it)


SECOND_DOCK = """
import time
import napari
from qtpy.QtWidgets import QApplication
viewer = napari.Viewer(show=False)
_, first = viewer.window.add_plugin_dock_widget("napari-lgg-unet", "Segment tumour")
time.sleep(0.5)  # PyTorch is half-imported in the placeholder's thread
started = time.monotonic()
_, second = viewer.window.add_plugin_dock_widget("napari-lgg-unet", "Train U-Net")
print(f"second dock: {type(second).__name__} in {time.monotonic() - started:.2f} s", flush=True)
widgets = lambda: [getattr(docked, "widget", docked) for docked in (first, second)]
end = time.monotonic() + 180
while None in widgets() and time.monotonic() < end:
    QApplication.processEvents()
    time.sleep(0.01)
segment, train = widgets()
print("ready:", segment.segment_button.text, train.train_button.text, flush=True)
viewer.close()
"""


def test_a_second_dock_while_the_first_loads_pytorch_is_a_placeholder_too():
    """PyTorch is in sys.modules while the placeholder's thread imports it: the second dock imported the rest on
    napari's thread, and the viewer froze for the seconds the import had left."""
    out = subprocess.run([sys.executable, "-c", SECOND_DOCK], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    docked = out.stdout.split("second dock: ")[1].split()
    assert docked[0] == "Loading" and float(docked[2]) < 1.0, out.stdout  # the freeze was 5 s on 2 EPYC cores
    assert "ready: Segment Train" in out.stdout, out.stdout
