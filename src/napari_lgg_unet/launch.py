"""`lgg-unet view`: open napari with the plugin docked on a scan (the packaged sample by default)."""

from __future__ import annotations

from pathlib import Path

PLUGIN = "napari-lgg-unet"


def open_viewer(path: Path | None = None, segment: bool = False):
    """Open a viewer on `path` (or the sample patient), dock both widgets, optionally start segmenting."""
    import napari

    from .widgets import segment, train  # noqa: F401  (loaded before the viewer: docked at once, ready to segment)

    viewer = napari.Viewer(title="napari-lgg-unet")
    if path is None:
        viewer.open_sample(PLUGIN, "lgg_patient")
    else:
        viewer.open(str(path), plugin=PLUGIN)
    _, segment_widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment tumour")
    viewer.window.add_plugin_dock_widget(PLUGIN, "Train U-Net", tabify=True)
    truth = [layer for layer in viewer.layers if isinstance(layer, napari.layers.Labels)]
    if truth:
        segment_widget.truth.value = truth[0]
    if segment:
        segment_widget.segment()
    return viewer


def run(path: Path | None = None, segment: bool = False) -> int:
    import napari

    open_viewer(path, segment)
    napari.run()
    return 0
