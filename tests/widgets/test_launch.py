"""`lgg-unet view` in a fresh process, the way a user meets the plugin: napari first, our code (and torch) after."""

import subprocess
import sys

SCRIPT = """
import napari
viewer = napari.Viewer(show=False)
from napari_lgg_unet.launch import open_viewer
viewer.close()
viewer = open_viewer()
names = sorted(layer.name for layer in viewer.layers)
docks = sorted(viewer.window._dock_widgets)
from napari_lgg_unet.engine.model import ModelConfig, build_network
import torch
build_network(ModelConfig())(torch.zeros(1, 3, 64, 64))
print(names, docks)
viewer.close()
"""


def test_view_opens_the_sample_with_both_widgets_docked_and_torch_loads_after_qt():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "TCGA_CS_6665_20010817 mask" in out.stdout and "Segment tumour" in out.stdout and "Train U-Net" in out.stdout
