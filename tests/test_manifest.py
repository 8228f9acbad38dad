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

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "lgg_patient")
    assert [type(layer).__name__ for layer in viewer.layers] == ["Image", "Labels"]
    assert viewer.layers[1].data.shape == (24, 256, 256) and np.any(viewer.layers[1].data)
    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment tumour")
    _, train = viewer.window.add_plugin_dock_widget(PLUGIN, "Train U-Net")
    assert "Segment" in segment.segment_button.text and "Train" in train.train_button.text
    assert segment.image.value is viewer.layers[0]
