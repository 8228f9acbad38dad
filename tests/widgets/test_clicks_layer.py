"""The clicks layer shows exactly the clicks that shaped the mask: napari's point tools and keys cannot change it, and
it is drawn again from the correction session, so a deleted layer comes back with every click and an undo that
fails keeps its point."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from napari.layers import Image
from napari.utils.colormaps.standardize_color import transform_color
from qtpy.QtCore import Qt

from napari_lgg_unet.widgets.corrections import NEGATIVE_COLOUR, POSITIVE_COLOUR, READ_ONLY
from napari_lgg_unet.widgets.layers import data_index, owned_layer, shown_index

from widget_helpers import bright_square_scan, dock, settle

CLICKS = [((1.0, 30.0, 30.0), True), ((1.0, 40.0, 20.0), False)]


def _clicked(qtbot, viewer, model: str):
    """The Segment widget with a 3-slice scan segmented and the two CLICKS made."""
    image = np.random.default_rng(0).random((3, 64, 64), dtype=np.float32)
    image[..., 20:40, 20:40] += 2.0
    widget = dock(viewer, "Segment tumour")
    widget.model.value = "folder"
    widget.model_folder.value = model
    widget.image.value = viewer.add_image(image, name="X")
    widget.segment_button.clicked()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    widget.correct.value = True
    for point, positive in CLICKS:
        widget.corrections.add_click(np.asarray(point), positive)
    settle(qtbot, widget)
    return widget


def _assert_shows(layer, clicks) -> None:
    np.testing.assert_allclose(layer.data, [point for point, _ in clicks])
    colours = [transform_color(POSITIVE_COLOUR if positive else NEGATIVE_COLOUR)[0] for _, positive in clicks]
    np.testing.assert_allclose(layer.face_color, colours)


def test_napari_point_tools_and_keys_cannot_change_the_clicks_layer(qtbot, viewer, notes, tiny_click_model):
    widget = _clicked(qtbot, viewer, tiny_click_model)
    layer = owned_layer(viewer, widget._source, "clicks")
    viewer.layers.selection.active = layer
    viewer.dims.set_point(0, 1)  # the clicks' slice
    for mode in ("add", "select"):
        layer.mode = mode
        assert layer.mode == "pan_zoom", mode
    viewer.dims.ndisplay = 3  # napari turns editing back on when the view changes
    viewer.dims.ndisplay = 2
    assert not layer.editable
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key_A)  # select the points on this slice
    qtbot.keyClick(canvas, Qt.Key_Delete)  # and delete them
    for key in (Qt.Key_A, Qt.Key_C, Qt.Key_V):  # select all, copy, paste
        qtbot.keyClick(canvas, key, Qt.ControlModifier)
    _assert_shows(layer, CLICKS)
    assert len(layer.selected_data) == 0 and READ_ONLY in notes["info"]
    widget.corrections.undo()
    settle(qtbot, widget)
    _assert_shows(layer, CLICKS[:1])  # Undo took off the last click's point
    assert len(widget.corrections.session.clicks) == 1 and notes["error"] == []


def test_a_deleted_clicks_layer_comes_back_with_every_click_at_the_next_click(qtbot, viewer, notes, tiny_click_model):
    widget = _clicked(qtbot, viewer, tiny_click_model)
    viewer.layers.remove(owned_layer(viewer, widget._source, "clicks"))
    widget.corrections.add_click(np.asarray((1.0, 20.0, 40.0)), True)
    settle(qtbot, widget)
    _assert_shows(owned_layer(viewer, widget._source, "clicks"), [*CLICKS, ((1.0, 20.0, 40.0), True)])
    assert notes["error"] == []


def test_an_undo_that_fails_keeps_the_click_and_its_point(qtbot, viewer, notes, tiny_click_model, monkeypatch):
    from napari_lgg_unet.engine import corrections as engine_corrections

    widget = _clicked(qtbot, viewer, tiny_click_model)
    mask = np.array(widget.prediction_layer().data, copy=True)

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(engine_corrections, "label_pieces", out_of_memory)
    widget.corrections.undo()
    settle(qtbot, widget)
    assert len(notes["error"]) == 1 and len(widget.corrections.session.clicks) == 2
    _assert_shows(owned_layer(viewer, widget._source, "clicks"), CLICKS)
    np.testing.assert_array_equal(widget.prediction_layer().data, mask)


@pytest.mark.parametrize("shape, scale", [((3, 8, 9), (1, -1, 1)), ((3, 8, 9), (-2, 1, -1)), ((8, 9), (-1, 1))])
def test_data_index_undoes_shown_index_on_flipped_and_2d_layers(shape, scale):
    layer = Image(np.zeros(shape), scale=scale)
    points = np.array([(1.0, 2.5, 7.0), (0.0, 0.0, 8.0)])[:, 3 - len(shape):]
    shown = np.array([shown_index(layer, point) for point in points])
    assert not np.allclose(shown, points)  # the flips move them
    np.testing.assert_allclose(data_index(layer, shown), points)


def test_deleting_the_tumour_layer_ends_the_session_and_clears_its_clicks_pieces_and_readouts(qtbot, viewer, notes,
                                                                                              tiny_click_model):
    """The clicks layer kept its points, and the review list and the readouts (Dice against the ground truth) the
    deleted mask's figures, until the next Segment: figures of a mask that no longer existed."""
    widget = _clicked(qtbot, viewer, tiny_click_model)
    truth = np.zeros((3, 64, 64), np.uint8)
    truth[1, 25:35, 25:35] = 1
    widget.truth.value = viewer.add_labels(truth, name="truth")
    widget.prediction_layer().data = np.asarray(widget.prediction_layer().data) | truth  # at least one piece
    widget.cleanup.threshold.value = 0.47  # lists the pieces again
    settle(qtbot, widget)
    assert widget.review_list.rows and widget.readouts.scores
    viewer.layers.remove(widget.prediction_layer())
    assert [layer.name for layer in viewer.layers] == ["X", "truth"]  # the clicks layer went with the mask
    assert widget.corrections.session is None
    assert widget.review_list.rows == [] and widget.review_list.table.native.rowCount() == 0
    assert widget.readouts is None and "Dice" not in widget.readout.value
    widget.corrections.add_click(np.asarray((1.0, 30.0, 30.0)), True)  # as if nothing had been segmented
    assert [layer.name for layer in viewer.layers] == ["X", "truth"]
    assert notes["error"] == []


def test_a_new_threshold_after_the_image_was_flipped_keeps_the_mask_where_it_was(qtbot, viewer, notes,
                                                                                  tiny_click_model):
    """The session's mask was put back on the layer's grid in the image's orientation of the moment: after the image
    was given a negative scale (or turned in napari's transform mode), a new threshold wrote the mask upside down."""
    widget = _clicked(qtbot, viewer, tiny_click_model)
    tumour = widget.prediction_layer()
    before = np.array(tumour.data, copy=True)
    widget._source.scale = (1, -1, 1)
    tumour.scale = (1, -1, 1)  # both flipped: they still lie on each other, and a click corrects the voxel clicked
    widget.cleanup.min_size.value = 1  # drops nothing: the mask must stay as it is
    settle(qtbot, widget)
    np.testing.assert_array_equal(tumour.data, before)
    widget.corrections.add_click(np.asarray((1.0, 10.0, 50.0)), True)
    settle(qtbot, widget)
    assert tumour.data[1, 10, 50] and len(widget.corrections.session.clicks) == 3
    np.testing.assert_allclose(owned_layer(viewer, widget._source, "clicks").data[-1], (1.0, 10.0, 50.0))
    assert notes["error"] == [] and notes["warning"] == []


@pytest.mark.parametrize("moved", ["image scaled", "image flipped", "tumour layer moved"])
def test_a_click_once_the_image_and_its_tumour_layer_lie_apart_is_refused(qtbot, viewer, notes, tiny_click_model,
                                                                         moved):
    """A click is placed on the image and changes the tumour layer at the same voxel: with the image given a scale
    of 2, a click changed the mask at half the distance from the origin, away from where the user clicked."""
    widget = _clicked(qtbot, viewer, tiny_click_model)
    tumour = widget.prediction_layer()
    if moved == "image scaled":
        widget._source.scale = (1, 2, 2)
    elif moved == "image flipped":
        widget._source.scale = (1, -1, 1)
    else:
        tumour.translate = (0, 10, 0)
    before = np.array(tumour.data, copy=True)
    widget.corrections.add_click(np.asarray((1.0, 10.0, 50.0)), True)
    settle(qtbot, widget)
    assert len(widget.corrections.session.clicks) == 2
    np.testing.assert_array_equal(tumour.data, before)
    assert "no longer lie on each other" in notes["warning"][-1] and notes["error"] == []


@pytest.mark.parametrize("moved", ["image scaled", "tumour layer moved"])
def test_segmenting_again_puts_the_tumour_layer_back_on_the_image_so_the_next_click_is_taken(qtbot, viewer, notes,
                                                                                            tiny_click_model, moved):
    """The refusal above says to segment the image again: that updated the unedited tumour layer's data in place and
    left it where it lay, so the probability map and the tumour layer stayed apart from the image and every click was
    refused again with the same advice. The clicks layer left of a click undone follows too: the next click's point
    was drawn where the image had lain."""
    image = bright_square_scan(0)
    widget = dock(viewer, "Segment tumour")
    widget.model.value, widget.model_folder.value = "folder", tiny_click_model
    widget.image.value = source = viewer.add_image(image, name="X")
    widget.show_probability.value = widget.correct.value = True
    _segment_again(qtbot, widget)
    widget.corrections.add_click(np.asarray((1.0, 30.0, 30.0)), True)
    widget.undo_click.clicked()
    settle(qtbot, widget)
    if moved == "image scaled":
        source.scale = (1, 2, 2)
    else:
        widget.prediction_layer().translate = (0, 10, 0)
    _segment_again(qtbot, widget)
    widget.corrections.add_click(np.asarray((1.0, 30.0, 30.0)), True)
    settle(qtbot, widget)
    assert len(widget.corrections.session.clicks) == 1
    for role in ("tumour", "probability", "clicks"):
        layer = owned_layer(viewer, source, role)
        np.testing.assert_allclose(layer.scale, source.scale)
        np.testing.assert_allclose(layer.translate, source.translate)
    assert notes["warning"] == [] and notes["error"] == []


@pytest.mark.parametrize("shapes", [((64, 64), (3, 64, 64)), ((3, 64, 64), (64, 64))])
def test_segmenting_again_an_image_given_data_of_another_dimensionality_places_its_layers_on_it(qtbot, viewer, notes,
                                                                                                tiny_click_model,
                                                                                                shapes):
    """Placed before their new data was set, a 2D tumour layer was given the 3D image's three-axis scale: an
    error, and the layers kept the old segmentation."""
    widget = dock(viewer, "Segment tumour")
    widget.model.value, widget.model_folder.value = "folder", tiny_click_model
    widget.image.value = source = viewer.add_image(np.zeros(shapes[0], np.float32), name="X")
    widget.show_probability.value = True
    _segment_again(qtbot, widget)
    source.data = bright_square_scan(0)[(0,) * (3 - len(shapes[1]))]
    source.scale = (2.0,) * len(shapes[1])
    _segment_again(qtbot, widget)
    for role in ("tumour", "probability"):
        layer = owned_layer(viewer, source, role)
        assert layer.data.shape == shapes[1]
        np.testing.assert_allclose(layer.scale, source.scale)
    assert notes["error"] == []


@pytest.mark.parametrize("shapes", [((64, 64), (3, 64, 64)), ((3, 64, 64), (64, 64))])
def test_a_click_after_segmenting_an_image_given_data_of_another_dimensionality_is_drawn_and_taken(
        qtbot, viewer, notes, tiny_click_model, shapes):
    """The clicks layer left of a click undone has the old data's number of axes, which a napari Points layer
    keeps: the new segmentation failed to draw its clicks into it (an error, the segmentation half shown)."""
    widget = dock(viewer, "Segment tumour")
    widget.model.value, widget.model_folder.value = "folder", tiny_click_model
    widget.image.value = source = viewer.add_image(bright_square_scan(0)[(0,) * (3 - len(shapes[0]))], name="X")
    widget.correct.value = True
    _segment_again(qtbot, widget)
    widget.corrections.add_click(np.asarray((1.0,) * (len(shapes[0]) - 2) + (30.0, 30.0)), True)
    widget.undo_click.clicked()
    settle(qtbot, widget)
    source.data = bright_square_scan(1)[(0,) * (3 - len(shapes[1]))]
    _segment_again(qtbot, widget)
    point = (1.0,) * (len(shapes[1]) - 2) + (30.0, 30.0)
    widget.corrections.add_click(np.asarray(point), True)
    settle(qtbot, widget)
    assert len(widget.corrections.session.clicks) == 1
    np.testing.assert_allclose(owned_layer(viewer, source, "clicks").data, [point])
    assert notes["error"] == [] and notes["warning"] == []


def _segment_again(qtbot, widget) -> None:
    widget.segment_button.clicked()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    settle(qtbot, widget)


def test_segmenting_again_keeps_the_clicks_with_the_corrected_layer_as_the_users(qtbot, viewer, notes,
                                                                                 tiny_click_model):
    """The clicks are the user's work: a new Segment kept the corrected tumour layer as '(edited)' and emptied the
    clicks layer that made it, so nothing said where the user had clicked. They stay with it, named as it is."""
    widget = _clicked(qtbot, viewer, tiny_click_model)
    clicks, tumour = owned_layer(viewer, widget._source, "clicks"), widget.prediction_layer()
    _segment_again(qtbot, widget)
    assert (tumour.name, clicks.name) == ("X tumour (edited)", "X clicks (edited)")
    assert clicks in viewer.layers and owned_layer(viewer, widget._source, "clicks") is None
    _assert_shows(clicks, CLICKS)
    assert clicks.editable  # the user's now: napari's point tools work on it
    assert "'X tumour (edited)' keeps your changes (the clicks that made them in 'X clicks (edited)')" in (
        notes["info"][-1])
    widget.corrections.add_click(np.asarray((1.0, 20.0, 40.0)), True)  # the new segmentation's clicks: a new layer
    settle(qtbot, widget)
    _assert_shows(owned_layer(viewer, widget._source, "clicks"), [((1.0, 20.0, 40.0), True)])
    _assert_shows(clicks, CLICKS)
    assert notes["error"] == []


def test_a_click_still_computed_when_the_new_segmentation_lands_is_not_kept_with_the_old_mask(
        qtbot, viewer, notes, tiny_click_model, monkeypatch):
    """A click being computed shows its point at once, but its result goes to no mask once a new segmentation has
    replaced the session: the kept clicks are those of the kept mask."""
    from napari_lgg_unet.widgets import corrections

    widget = _clicked(qtbot, viewer, tiny_click_model)
    clicks, mask = owned_layer(viewer, widget._source, "clicks"), np.array(widget.prediction_layer().data)
    release, real_click_job = threading.Event(), corrections.click_job

    def held_click_job(*args, stop):
        release.wait(60)
        yield from real_click_job(*args, stop=stop)

    monkeypatch.setattr(corrections, "click_job", held_click_job)
    widget.corrections.add_click(np.asarray((1.0, 20.0, 40.0)), True)
    assert len(clicks.data) == 3  # the click being computed shows at once
    widget.segment_button.clicked()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    release.set()
    settle(qtbot, widget)
    assert clicks.name == "X clicks (edited)"
    _assert_shows(clicks, CLICKS)
    np.testing.assert_array_equal(viewer.layers["X tumour (edited)"].data, mask)
    assert notes["error"] == []
