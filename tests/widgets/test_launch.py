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
