"""The npe2 manifest: valid, and napari can dock both widgets, open the sample and find reader and writer."""

from __future__ import annotations

import numpy as np
from npe2 import PluginManifest

PLUGIN = "napari-lgg-unet"


def test_manifest_is_valid_and_names_every_contribution():
    manifest = PluginManifest.from_distribution(PLUGIN)
    assert manifest.display_name == "LGG U-Net"
    assert {w.display_name for w in manifest.contributions.widgets} == {"Segment tumour", "Train U-Net"}
    assert manifest.contributions.readers and manifest.contributions.writers and manifest.contributions.sample_data
    assert all(command.python_name.startswith("napari_lgg_unet.") for command in manifest.contributions.commands)


def test_both_widgets_dock_and_the_sample_opens_in_a_viewer(make_napari_viewer):
    import napari_lgg_unet.engine.model  # noqa: F401  (see tests/widgets/conftest.py: triton before OpenGL)
    import napari_lgg_unet.widgets.segment  # noqa: F401  (imported, the docks are the widgets themselves, not the
    import napari_lgg_unet.widgets.train  # noqa: F401  placeholder a session's first dock shows: tested below)

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "lgg_patient")
    assert [type(layer).__name__ for layer in viewer.layers] == ["Image", "Labels"]
    assert viewer.layers[1].data.shape == (24, 256, 256) and np.any(viewer.layers[1].data)
    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment tumour")
    _, train = viewer.window.add_plugin_dock_widget(PLUGIN, "Train U-Net")
    assert "Segment" in segment.segment_button.text and "Train" in train.train_button.text
    assert segment.image.value is viewer.layers[0]


FIRST_DOCK = """
import sys, time
import napari
from qtpy.QtWidgets import QApplication
viewer = napari.Viewer(show=False)
viewer.open_sample("napari-lgg-unet", "lgg_patient")
started = time.monotonic()
_, docked = viewer.window.add_plugin_dock_widget("napari-lgg-unet", "Segment tumour")
print("docked:", type(docked).__name__, f"in {time.monotonic() - started:.2f} s", flush=True)
end = time.monotonic() + 180
while docked.widget is None and time.monotonic() < end:
    QApplication.processEvents()
    time.sleep(0.01)
print("ready:", docked.widget.segment_button.text, docked.widget.image.value is viewer.layers[0], flush=True)
viewer.close()
"""


def test_the_first_dock_of_a_session_loads_pytorch_in_the_background_then_shows_the_widget():
    """napari builds a docked widget on its own thread; importing PyTorch there froze the viewer for seconds."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", FIRST_DOCK], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "docked: Loading" in run.stdout, run.stdout  # a placeholder, at once: PyTorch loads in a thread
    assert "ready: Segment True" in run.stdout, run.stdout
