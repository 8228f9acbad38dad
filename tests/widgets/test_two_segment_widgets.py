"""Two Segment widgets on one viewer (made by a script: napari's Plugins menu shows the one it has): the layers made
for an image are found by that image, so a widget that segments an image another one segmented takes its layers
over, and the other lets go of it."""

from __future__ import annotations

import numpy as np

from napari_lgg_unet.engine.postprocess import postprocess
from napari_lgg_unet.widgets.layers import edited, owned_layer
from napari_lgg_unet.widgets.segment import SegmentWidget

from widget_helpers import bright_square_scan, segment_and_settle, settle


def _docked(viewer, model: str, image, name: str) -> SegmentWidget:
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name=name)
    widget.model.value = "folder"
    widget.model_folder.value = model
    widget.image.value = image
    widget.cleanup.min_size.value = 0
    return widget


def test_a_second_widget_segmenting_the_same_image_takes_its_layers_and_the_first_lets_go(qtbot, viewer, notes,
                                                                                          tiny_click_model):
    """Both wrote the one tumour layer: the first took the second's mask for the user's painting, kept it through its
    own new threshold and marked the layer edited, and a click corrected it through both sessions."""
    image = viewer.add_image(bright_square_scan(0), name="X")
    first, second = (_docked(viewer, tiny_click_model, image, name) for name in ("Segment A", "Segment B"))
    first.correct.value = True
    segment_and_settle(qtbot, first)
    second.correct.value = True
    second.cleanup.threshold.value = 0.45
    segment_and_settle(qtbot, second)
    layer = second.prediction_layer()
    assert [one.name for one in viewer.layers] == ["X", "X tumour"]
    assert first.prediction_layer() is None and first.readouts is None and first.review_list.rows == []
    assert not first.correct.value and first.corrections.target is None
    assert first.corrections._on_mouse not in viewer.mouse_drag_callbacks
    assert viewer.mouse_drag_callbacks.count(second.corrections._on_mouse) == 1
    assert any("segmented again in another Segment widget" in note for note in notes["info"])
    mask = np.array(layer.data, copy=True)
    first.cleanup.threshold.value = 0.55  # no longer the first's to change
    settle(qtbot, first)
    np.testing.assert_array_equal(layer.data, mask)
    assert not edited(layer)
    qtbot.waitUntil(lambda: second.corrections.session is not None, timeout=30_000)
    second.corrections.add_click(np.asarray((1.0, 30.0, 30.0)), True)
    settle(qtbot, second)
    assert len(owned_layer(viewer, image, "clicks").data) == 1
    second.cleanup.threshold.value = 0.5
    settle(qtbot, second)
    shown = np.asarray(layer.data) > 0
    np.testing.assert_array_equal(shown, second.corrections.session.mask.reshape(shown.shape) > 0)
    assert notes["error"] == [] and notes["warning"] == []


def test_two_widgets_on_two_images_each_keep_their_own(qtbot, viewer, notes, tiny_click_model):
    first_image = viewer.add_image(bright_square_scan(0), name="X")
    second_image = viewer.add_image(bright_square_scan(1), name="Y")
    first = _docked(viewer, tiny_click_model, first_image, "Segment A")
    second = _docked(viewer, tiny_click_model, second_image, "Segment B")
    segment_and_settle(qtbot, first)
    segment_and_settle(qtbot, second)
    first.cleanup.threshold.value = 0.45
    settle(qtbot, first)
    assert first.prediction_layer() is owned_layer(viewer, first_image, "tumour")
    assert second.prediction_layer() is owned_layer(viewer, second_image, "tumour")
    np.testing.assert_array_equal(first.prediction_layer().data, postprocess(first._probability,
                                                                             first.cleanup.config()))
    assert notes["error"] == [] and notes["info"] == []
