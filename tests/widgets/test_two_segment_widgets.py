"""Two Segment widgets on one viewer (made by a script: napari's Plugins menu shows the one it has): the layers made
for an image are found by that image, so a widget that segments an image another one segmented takes its layers
over, and the other lets go of it."""

from __future__ import annotations

import numpy as np

from napari_lgg_unet.engine.postprocess import postprocess
from napari_lgg_unet.widgets.layers import edited, owned_layer
from napari_lgg_unet.widgets.segment import SegmentWidget

from widget_helpers import bright_square_scan, dock, segment_and_settle, settle


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


def test_a_widget_made_by_a_script_beside_the_docked_one_takes_the_image_over(qtbot, viewer, notes, tiny_click_model):
    """napari gives the widget it docks a proxy of the viewer: compared with the script's viewer, the two never saw
    that they shared one, and the docked widget went on cleaning up the script's mask as if it were its own."""
    image = viewer.add_image(bright_square_scan(0), name="X")
    docked = dock(viewer, "Segment tumour")
    docked.model.value, docked.model_folder.value, docked.image.value = "folder", tiny_click_model, image
    docked.cleanup.min_size.value = 0
    segment_and_settle(qtbot, docked)
    scripted = _docked(viewer, tiny_click_model, image, "Segment B")
    segment_and_settle(qtbot, scripted)
    assert docked.prediction_layer() is None and docked.review_list.rows == []
    assert any("segmented again in another Segment widget" in note for note in notes["info"])
    layer, mask = scripted.prediction_layer(), np.array(scripted.prediction_layer().data, copy=True)
    docked.cleanup.threshold.value = 0.45
    settle(qtbot, docked)
    np.testing.assert_array_equal(layer.data, mask)
    assert not edited(layer)


def test_a_closed_dock_s_widget_lets_go_without_a_word_when_the_menu_s_new_one_segments_its_image(qtbot, viewer, notes,
                                                                                                tiny_click_model):
    """It lives on until the garbage collector takes it: it told of "another Segment widget" while one was open."""
    image = viewer.add_image(bright_square_scan(0), name="X")
    closed = dock(viewer, "Segment tumour")
    closed.model.value, closed.model_folder.value, closed.image.value = "folder", tiny_click_model, image
    segment_and_settle(qtbot, closed)
    viewer.window.remove_dock_widget(closed.native)
    fresh = dock(viewer, "Segment tumour")  # what the Plugins menu does after a dock was closed
    fresh.model.value, fresh.model_folder.value, fresh.image.value = "folder", tiny_click_model, image
    segment_and_settle(qtbot, fresh)
    assert closed.prediction_layer() is None and fresh.prediction_layer() is not None
    assert notes["info"] == [] and notes["error"] == []
