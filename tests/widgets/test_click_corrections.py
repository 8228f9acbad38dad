"""Correction mode of the Segment widget on the packaged patient: clicks become points of our own layer, re-segment
in a worker, can be undone one by one and survive a threshold change; the user's layers are never touched."""

from __future__ import annotations

import threading
import warnings
from dataclasses import replace

import numpy as np
import pytest
from napari.utils.colormaps.standardize_color import transform_color
from qtpy.QtCore import QEvent, QPoint, QPointF, Qt
from qtpy.QtGui import QKeyEvent, QMouseEvent
from qtpy.QtWidgets import QApplication

from napari_lgg_unet.engine.click_training import next_click
from napari_lgg_unet.engine.metrics import volume_scores
from napari_lgg_unet.engine.model import load_model, save_model, with_inputs
from napari_lgg_unet.engine.model_input import InputConfig
from napari_lgg_unet.engine.pieces import label_pieces, list_pieces
from napari_lgg_unet.widgets.corrections import CLEANUP, NEGATIVE_COLOUR, POSITIVE_COLOUR
from napari_lgg_unet.widgets.layers import owned_layer
from napari_lgg_unet.widgets.workers import LayerResult

from widget_helpers import assert_unchanged, dock, settle, snapshot


@pytest.fixture(scope="module")
def click_model(tmp_path_factory) -> str:
    """The default model grown to take clicks; its new inputs start at zero weight, so it segments as the default."""
    model = load_model("default")
    network, config = with_inputs(model.network, model.config, InputConfig(context_slices=2, clicks=True))
    return str(save_model(network, config, tmp_path_factory.mktemp("clicks") / "model"))


def _segmented(viewer, qtbot, notes, model: str, correct: bool = True):
    viewer.open_sample("napari-lgg-unet", "lgg_patient")
    widget = dock(viewer, "Segment tumour")
    if model == "default":
        widget.model.value = "default"
    else:
        widget.model.value = "folder"
        widget.model_folder.value = model
    widget.segment_button.clicked()
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    assert notes["error"] == []
    widget.correct.value = correct
    return widget


def _click(widget, qtbot, point, positive=True) -> None:
    widget.corrections.add_click(np.asarray(point, dtype=float), positive)
    qtbot.waitUntil(lambda: not widget.corrections.job.running and not widget.corrections._queue, timeout=120_000)


def test_clicks_are_points_that_re_segment_and_undo_one_by_one(viewer, qtbot, notes, click_model):
    widget = _segmented(viewer, qtbot, notes, click_model)
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=60_000)  # built before the first click
    truth = viewer.layers["TCGA_CS_6665_20010817 mask"]
    user_layers = snapshot(viewer)[:2]  # the scan and its manual mask
    tumour = widget.prediction_layer()
    before = tumour.data.copy()
    inside = tuple(np.argwhere(before)[len(np.argwhere(before)) // 2])
    _click(widget, qtbot, inside, positive=True)
    _click(widget, qtbot, (3, 20, 20), positive=False)
    points = owned_layer(viewer, widget._source, "clicks")
    assert points is not None and len(points.data) == 2
    assert len(widget.corrections.session.clicks) == 2
    assert not np.array_equal(points.face_color[0], points.face_color[1])  # positive and negative look different
    assert tumour.data[inside] == 1
    widget.truth.value = truth  # the volume's scores follow a click (they are not recomputed on a slider step)
    _click(widget, qtbot, (3, 24, 24), positive=False)
    assert widget.readouts.scores["volume"] == volume_scores(tumour.data, truth.data).to_dict()
    widget.corrections.undo()
    qtbot.waitUntil(lambda: not widget.corrections.job.running, timeout=60_000)
    assert widget.readouts.scores["volume"] == volume_scores(tumour.data, truth.data).to_dict()
    model_threshold = widget.cleanup.threshold.value
    for threshold in (0.5, 0.55, 0.6):  # the clicks stay through a new threshold, applied off the viewer's thread
        widget.cleanup.threshold.value = threshold
    assert widget.corrections._queue == [CLEANUP]  # one clean-up runs, one more waits: the latest is applied
    settle(qtbot, widget)
    assert widget.corrections.session.postprocess.threshold == 0.6
    assert len(widget.corrections.session.clicks) == 2
    widget.corrections.undo()
    qtbot.waitUntil(lambda: not widget.corrections.job.running, timeout=60_000)
    widget.corrections.undo()
    qtbot.waitUntil(lambda: not widget.corrections.job.running, timeout=60_000)
    assert len(points.data) == 0 and widget.corrections.session.clicks == []
    widget.cleanup.threshold.value = model_threshold
    settle(qtbot, widget)
    np.testing.assert_array_equal(tumour.data, before)
    assert notes["error"] == []
    for (name, kind, data, meta), layer in zip(user_layers, list(viewer.layers)[:2]):
        assert layer.name == name
        np.testing.assert_array_equal(layer.data, data)
    assert truth.data.any()


def test_three_clicks_from_the_manual_mask_raise_the_dice(viewer, qtbot, notes):
    if not load_model("default").config.inputs.clicks:
        pytest.skip("the shipped default model does not take clicks yet (runs/r2-context-clicks is training)")
    widget = _segmented(viewer, qtbot, notes, "default")
    truth = np.asarray(viewer.layers["TCGA_CS_6665_20010817 mask"].data) > 0
    tumour = widget.prediction_layer()
    # The default draws one true piece on the sample at its own threshold; a low threshold and no minimum size show
    # a false speck (5 voxels at 0.05 with r6) to review and remove, as a user lowering the slider would see
    widget.cleanup.threshold.value = 0.05
    widget.cleanup.min_size.value = 0
    settle(qtbot, widget)
    rows = widget.review_list.rows
    assert len(rows) > 1 and rows[0].confidence <= rows[-1].confidence
    false_piece = widget._review.piece_voxels(rows[0].index)
    assert (false_piece & truth).sum() < 0.1 * false_piece.sum()  # the least sure piece is a false one
    before_removal = volume_scores(tumour.data > 0, truth).dice
    widget.review_list.keep_box(0).setCheckState(Qt.Unchecked)  # remove it
    assert not np.asarray(tumour.data)[false_piece].any()
    start = volume_scores(tumour.data > 0, truth).dice
    assert start >= before_removal
    for _ in range(3):
        click = next_click(np.asarray(tumour.data) > 0, truth)
        _click(widget, qtbot, (click.z, click.y, click.x), click.positive)
    assert volume_scores(tumour.data > 0, truth).dice > start


def test_clicks_with_a_model_that_takes_none_give_one_clear_error_and_are_dropped(viewer, qtbot, notes, tiny_model_dir):
    widget = _segmented(viewer, qtbot, notes, str(tiny_model_dir))
    before = widget.prediction_layer().data.copy()
    widget.corrections.add_click(np.asarray((12.0, 100.0, 100.0)), True)
    widget.corrections.add_click(np.asarray((12.0, 110.0, 100.0)), False)
    qtbot.waitUntil(lambda: not widget.corrections.job.running and not widget.corrections._queue, timeout=60_000)
    assert len(notes["error"]) == 1 and "does not take clicks" in notes["error"][0], notes["error"]
    np.testing.assert_array_equal(widget.prediction_layer().data, before)


def test_a_tumour_click_inside_a_removed_piece_brings_it_back(viewer, qtbot, notes, click_model):
    widget = _segmented(viewer, qtbot, notes, click_model)
    tumour = widget.prediction_layer()
    piece = widget.review_list.rows[-1]  # the surest piece
    voxels = widget._review.piece_voxels(piece.index)
    widget.review_list.keep_box(len(widget.review_list.rows) - 1).setCheckState(Qt.Unchecked)
    assert not np.asarray(tumour.data)[voxels].any()
    inside = tuple(np.argwhere(voxels)[voxels.sum() // 2])
    _click(widget, qtbot, inside, positive=True)
    assert np.asarray(tumour.data)[inside] == 1 and np.asarray(tumour.data)[voxels].mean() > 0.9
    row = next(r for r, p in enumerate(widget.review_list.rows) if widget._review.labels[inside] == p.index)
    widget.review_list.keep_box(row).setCheckState(Qt.Unchecked)  # removed again after the click: it stays removed
    _click(widget, qtbot, (0, 0, 0), positive=False)
    assert not np.asarray(tumour.data)[inside]
    assert notes["error"] == []


def test_a_click_result_for_a_segmentation_replaced_meanwhile_is_dropped(viewer, qtbot, notes, click_model):
    """A new segmentation can arrive while a click is computed; the click's result belongs to the old one and must
    not overwrite the new mask."""
    widget = _segmented(viewer, qtbot, notes, click_model)
    qtbot.waitUntil(lambda: widget.corrections.session is not None and not widget.corrections.job.running,
                    timeout=60_000)
    old = widget.corrections.session
    shown = np.asarray(widget.prediction_layer().data).copy()
    everything = np.ones_like(shown, dtype=np.uint8)
    stale = LayerResult(widget._probability, everything, list_pieces(widget._probability, everything),
                        old.postprocess)
    widget.corrections.reset(replace(widget.corrections.target))  # what a new segmentation's result does
    widget.corrections._mask_ready(old, stale)
    np.testing.assert_array_equal(widget.prediction_layer().data, shown)
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=60_000)  # rebuilt for the new one
    assert widget.corrections.session is not old
    assert notes["error"] == []


def test_voxels_painted_on_the_tumour_layer_survive_clicks_and_a_new_threshold(viewer, qtbot, notes):
    widget = _segmented(viewer, qtbot, notes, "default")
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=60_000)
    tumour = widget.prediction_layer()
    data = tumour.data  # napari's paint brush writes into the layer's array, then refreshes
    assert not data[2, 5:10, 5:10].any()
    erased = tuple(np.argwhere(data)[0])
    data[2, 5:10, 5:10] = 1  # painted "tumour" far from the automatic mask
    data[erased] = 0  # and one voxel of the automatic mask erased
    tumour.refresh()
    _click(widget, qtbot, (3, 20, 20), positive=False)
    widget.cleanup.threshold.value = 0.6
    settle(qtbot, widget)
    assert tumour.data[2, 5:10, 5:10].all() and tumour.data[erased] == 0
    assert notes["error"] == []


def test_undoing_a_tumour_click_that_brought_back_a_removed_piece_removes_it_again(viewer, qtbot, notes, click_model):
    widget = _segmented(viewer, qtbot, notes, click_model)
    tumour = widget.prediction_layer()
    voxels = widget._review.piece_voxels(widget.review_list.rows[-1].index)
    widget.review_list.keep_box(len(widget.review_list.rows) - 1).setCheckState(Qt.Unchecked)
    removed = np.asarray(tumour.data).copy()
    _click(widget, qtbot, tuple(np.argwhere(voxels)[voxels.sum() // 2]), positive=True)
    assert np.asarray(tumour.data)[voxels].mean() > 0.9
    widget.corrections.undo()
    qtbot.waitUntil(lambda: not widget.corrections.job.running, timeout=60_000)
    np.testing.assert_array_equal(tumour.data, removed)
    assert notes["error"] == []


def test_a_threshold_changed_while_the_session_is_built_reaches_the_session_before_any_click(viewer, qtbot, notes,
                                                                                          click_model):
    viewer.open_sample("napari-lgg-unet", "lgg_patient")
    widget = dock(viewer, "Segment tumour")
    widget.model.value = "folder"
    widget.model_folder.value = click_model
    widget.segment_button.clicked()
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    widget.correct.value = True  # the session is built in the background
    widget.cleanup.threshold.value = 0.7  # before it is ready
    assert widget.corrections.session is None
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=60_000)
    settle(qtbot, widget)
    session = widget.corrections.session
    assert session.postprocess.threshold == 0.7
    np.testing.assert_array_equal(np.asarray(widget.prediction_layer().data) > 0, session.mask.reshape(
        widget.prediction_layer().data.shape) > 0)
    assert notes["error"] == []


def test_segmenting_again_keeps_a_corrected_layer_and_not_one_whose_clicks_were_all_undone(viewer, qtbot, notes,
                                                                                             click_model):
    widget = _segmented(viewer, qtbot, notes, click_model)
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=60_000)
    tumour = widget.prediction_layer()

    def segment_again():
        widget.segment_button.clicked()
        qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
        qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=60_000)

    _click(widget, qtbot, (12, 100, 100), positive=False)
    widget.corrections.undo()
    qtbot.waitUntil(lambda: not widget.corrections.job.running and not widget.corrections._queue, timeout=60_000)
    count = len(viewer.layers)
    segment_again()  # every click undone: nothing of the user's to keep, the same layer is updated
    assert widget.prediction_layer() is tumour and not tumour.name.endswith("(edited)")
    assert len(viewer.layers) == count
    _click(widget, qtbot, (12, 100, 100), positive=False)
    corrected = np.array(tumour.data, copy=True)
    segment_again()
    np.testing.assert_array_equal(tumour.data, corrected)  # the click's result stays, as the user's own layer
    assert tumour.name.endswith("tumour (edited)") and widget.prediction_layer() is not tumour
    assert notes["error"] == []


def _click_canvas(viewer, qtbot) -> None:
    """A real mouse click in the middle of the canvas (on the scan), as a user makes it."""
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.mouseClick(canvas, Qt.LeftButton, pos=QPoint(canvas.width() // 2, canvas.height() // 2))


def _mouse(canvas, kind: QEvent.Type, pos: QPoint, buttons) -> None:
    button = Qt.NoButton if kind == QEvent.MouseMove else Qt.LeftButton
    QApplication.sendEvent(canvas, QMouseEvent(kind, QPointF(pos), QPointF(canvas.mapToGlobal(pos)), button, buttons,
                                               Qt.NoModifier))


def _drag(canvas, qtbot, by: QPoint, *, at_once: bool) -> None:
    """The mouse moved onto the middle of the canvas, pressed there, moved `by` in 8 steps and released: `at_once`,
    as queued input comes in a busy moment, with no event loop between the events (napari's throttle of move events
    then holds the moves back until after the release), else with 20 ms between the moves."""
    centre = QPoint(canvas.width() // 2, canvas.height() // 2)
    _mouse(canvas, QEvent.MouseMove, centre - QPoint(3, 0), Qt.NoButton)
    _mouse(canvas, QEvent.MouseMove, centre, Qt.NoButton)
    _mouse(canvas, QEvent.MouseButtonPress, centre, Qt.LeftButton)
    for step in range(1, 9):
        _mouse(canvas, QEvent.MouseMove, centre + by * step / 8, Qt.LeftButton)
        if not at_once:
            qtbot.wait(20)
    _mouse(canvas, QEvent.MouseButtonRelease, centre + by, Qt.NoButton)
    qtbot.wait(50)


def test_a_pan_with_space_held_places_no_click_and_a_click_that_jitters_still_does(viewer, qtbot, notes,
                                                                                  tiny_click_model):
    """Holding Space pans with any tool: a short drag that way over the brush placed a "tumour" click where it
    began, napari's move events held back by its throttle until after the release. A click whose mouse moved a
    pixel or two is still a click (any move event ended it, a click lost to a shaky hand)."""
    widget = _segmented(viewer, qtbot, notes, tiny_click_model)
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=60_000)
    tumour = widget.prediction_layer()
    viewer.layers.selection.active = tumour
    tumour.mode = "paint"
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    for at_once in (True, False):
        QApplication.sendEvent(canvas, QKeyEvent(QEvent.KeyPress, Qt.Key_Space, Qt.NoModifier, " "))
        assert tumour.mode == "pan_zoom"  # napari's hold-Space pan
        _drag(canvas, qtbot, QPoint(40, 0), at_once=at_once)
        QApplication.sendEvent(canvas, QKeyEvent(QEvent.KeyRelease, Qt.Key_Space, Qt.NoModifier, " "))
        settle(qtbot, widget)
        assert tumour.mode == "paint" and widget.corrections.session.clicks == [], at_once
    tumour.mode = "pan_zoom"
    _drag(canvas, qtbot, QPoint(2, 1), at_once=False)
    settle(qtbot, widget)
    assert len(widget.corrections.session.clicks) == 1
    assert notes["error"] == []


def test_a_click_beside_the_scan_says_so_and_places_no_click(viewer, qtbot, notes, tiny_click_model):
    """A click on the canvas beside the scan (panned away, or after a roll of the axes) did nothing without a word."""
    widget = _segmented(viewer, qtbot, notes, tiny_click_model)
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=60_000)
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera  # moved in napari 0.9
    camera.center = (-5000.0, -5000.0)  # the middle of the canvas, where the click falls, is far beside the scan
    _click_canvas(viewer, qtbot)
    settle(qtbot, widget)
    assert widget.corrections.session.clicks == []
    assert notes["info"][-1] == ("the click fell outside 'TCGA_CS_6665_20010817': click on the scan to correct its "
                                 "mask"), notes["info"]
    assert notes["error"] == []


def test_a_click_on_another_scan_shown_over_the_segmented_one_is_not_a_correction(viewer, qtbot, notes, click_model):
    """A second patient opened while the first is corrected lies over it: a click on it corrected the first, unseen."""
    widget = _segmented(viewer, qtbot, notes, click_model)
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=60_000)
    second = viewer.add_image(np.zeros((23, 256, 256, 3), np.uint8), rgb=True, name="second patient")
    viewer.layers.selection.active = second
    _click_canvas(viewer, qtbot)
    settle(qtbot, widget)
    assert widget.corrections.session.clicks == []
    assert any("'second patient'" in message for message in notes["info"]), notes["info"]
    second.visible = False  # the segmented scan is on screen again: the click is its correction
    _click_canvas(viewer, qtbot)
    settle(qtbot, widget)
    assert len(widget.corrections.session.clicks) == 1


def test_a_click_on_an_image_whose_data_was_replaced_since_it_was_segmented_is_refused(viewer, qtbot, notes,
                                                                                     click_model):
    """The click is placed on the new data; the session holds the old scan, so it corrected another place."""
    widget = _segmented(viewer, qtbot, notes, click_model)
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=60_000)
    scan = viewer.layers["TCGA_CS_6665_20010817"]
    scan.data = np.ascontiguousarray(scan.data[:, 64:192, 64:192])  # e.g. cropped to the tumour from the console
    before = snapshot(viewer)
    _click(widget, qtbot, (12, 60, 60))
    assert widget.corrections.session.clicks == []
    assert notes["warning"][-1] == ("the data of 'TCGA_CS_6665_20010817' was replaced since it was segmented: "
                                    "segment it again")
    assert_unchanged(before, snapshot(viewer))


def test_closing_the_dock_ends_correction_mode(viewer, qtbot, notes, click_model):
    """The closed widget lives on (the viewer's events hold it): its clicks changed the tumour layer unseen."""
    widget = _segmented(viewer, qtbot, notes, click_model)
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=60_000)
    before = snapshot(viewer)
    viewer.window.remove_dock_widget(widget.native)  # what the dock's close button does
    _click_canvas(viewer, qtbot)
    settle(qtbot, widget)
    assert widget.corrections.session is None  # correction mode ended with the dock, and its session with it
    assert_unchanged(before, snapshot(viewer))  # no click point, the tumour layer as it was


def test_closing_the_dock_while_the_session_first_times_auto_precision_ends_that_timing_quietly(
        viewer, qtbot, notes, tiny_click_model, monkeypatch, tmp_path):
    """Correction mode builds its session in a worker, which may first time the 'auto' precision (seconds: where the
    process has not chosen one for its current CPU threads). That worker ignored the stop that closing the dock asks:
    the timing ran whole. Now it ends at the next timed pass, with no error shown, and no choice is remembered of a
    timing cut short."""
    from napari_lgg_unet.engine import precision

    widget = _segmented(viewer, qtbot, notes, tiny_click_model, correct=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(precision.REMEASURE_ENV, raising=False)
    monkeypatch.setattr(precision, "_CHOSEN", {})  # as for threads this process has not timed yet
    timed, timing = [], precision.autocast
    monkeypatch.setattr(precision, "autocast", lambda candidate: timed.append(candidate) or timing(candidate))
    widget.correct.value = True
    qtbot.waitUntil(lambda: bool(timed), timeout=60_000)
    viewer.window.remove_dock_widget(widget.native)  # what the dock's close button does
    qtbot.waitUntil(lambda: not widget.corrections.job.running, timeout=60_000)
    assert precision._CHOSEN == {} and widget.corrections.session is None and notes["error"] == []


def test_a_click_with_a_paint_tool_or_in_the_3d_view_is_not_a_correction(viewer, qtbot, notes, click_model):
    widget = _segmented(viewer, qtbot, notes, click_model)
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=60_000)
    tumour = widget.prediction_layer()
    viewer.layers.selection.active = tumour
    for mode in ("paint", "erase", "fill"):  # the tool's dab, not a "tumour" click on top of it
        tumour.mode = mode
        _click_canvas(viewer, qtbot)
        settle(qtbot, widget)
        assert widget.corrections.session.clicks == [], mode
    tumour.mode = "pan_zoom"
    viewer.dims.ndisplay = 3  # a click has no depth there
    _click_canvas(viewer, qtbot)
    settle(qtbot, widget)
    assert widget.corrections.session.clicks == []
    assert any("2D view" in message for message in notes["info"]), notes["info"]
    viewer.dims.ndisplay = 2
    _click_canvas(viewer, qtbot)  # the same click in pan/zoom mode in 2D corrects
    settle(qtbot, widget)
    assert len(widget.corrections.session.clicks) == 1
    assert notes["error"] == []


def test_a_click_in_correction_mode_before_segmenting_says_to_segment_first(viewer, qtbot, notes):
    viewer.open_sample("napari-lgg-unet", "lgg_patient")
    widget = dock(viewer, "Segment tumour")
    widget.correct.value = True
    _click_canvas(viewer, qtbot)  # on the scan, with nothing segmented yet: not a silent no-op
    assert notes["warning"] == ["segment an image with this Segment widget first, then correct it with clicks"]
    assert widget.prediction_layer() is None and notes["error"] == []


def test_a_click_after_the_segmented_image_was_deleted_says_to_segment_first(viewer, qtbot, notes, click_model):
    """The check for nothing segmented covered only a viewer that never segmented: with the segmented image deleted,
    a click was computed on the gone image's session and its point added, and nothing said why the mask stayed."""
    widget = _segmented(viewer, qtbot, notes, click_model)
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=60_000)
    viewer.layers.remove(widget._source)
    _click_canvas(viewer, qtbot)
    settle(qtbot, widget)
    assert notes["warning"] == ["segment an image with this Segment widget first, then correct it with clicks"]
    assert widget.corrections.session is None or widget.corrections.session.clicks == []
    assert all(len(layer.data) == 0 for layer in viewer.layers if type(layer).__name__ == "Points")
    assert notes["error"] == []


def test_each_click_point_keeps_its_kind_colour_through_clicks_and_undo(viewer, qtbot, notes, click_model):
    """napari's Points.add selects the point it adds, and a new current colour recolours the selected points: the
    previous click took the next one's colour, and after an undo the next click failed on the point taken away."""
    widget = _segmented(viewer, qtbot, notes, click_model)
    kinds = [False, True, True]
    for row, positive in zip((100, 110, 120), kinds):
        _click(widget, qtbot, (12, row, 100), positive)
    widget.corrections.undo()
    settle(qtbot, widget)
    kinds.pop()
    _click(widget, qtbot, (12, 130, 100), False)
    kinds.append(False)
    points = owned_layer(viewer, widget._source, "clicks")
    expected = [transform_color(POSITIVE_COLOUR if positive else NEGATIVE_COLOUR)[0] for positive in kinds]
    np.testing.assert_allclose(points.face_color, expected)
    assert [click.positive for click in widget.corrections.session.clicks] == kinds
    assert notes["error"] == []


def test_undo_pressed_right_after_a_click_that_waits_for_the_session_takes_it_back(viewer, qtbot, notes, click_model):
    widget = _segmented(viewer, qtbot, notes, click_model)
    assert widget.corrections.session is None  # still being built in the background
    before = np.array(widget.prediction_layer().data, copy=True)
    widget.corrections.add_click(np.asarray((12.0, 100.0, 100.0)), False)
    widget.corrections.undo()
    settle(qtbot, widget)
    assert widget.corrections.session.clicks == []
    points = owned_layer(viewer, widget._source, "clicks")  # none: the click was dropped before it ran
    assert points is None or len(points.data) == 0
    np.testing.assert_array_equal(widget.prediction_layer().data, before)
    assert notes["info"] == [] and notes["error"] == []


def test_a_click_that_fails_is_notified_and_leaves_neither_its_point_nor_a_click_to_undo(viewer, qtbot, notes,
                                                                                          click_model, monkeypatch):
    from napari_lgg_unet.engine import corrections
    from napari_lgg_unet.engine.errors import DeviceError

    widget = _segmented(viewer, qtbot, notes, click_model)
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=60_000)
    before = widget.prediction_layer().data.copy()

    def out_of_memory(*args, **kwargs):
        raise DeviceError("out of memory (simulated)")

    monkeypatch.setattr(corrections, "_recompute_near", out_of_memory)
    _click(widget, qtbot, (3, 20, 20), positive=False)
    assert len(notes["error"]) == 1 and "out of memory" in notes["error"][0]
    points = owned_layer(viewer, widget._source, "clicks")
    assert widget.corrections.session.clicks == [] and (points is None or len(points.data) == 0)
    np.testing.assert_array_equal(widget.prediction_layer().data, before)
    monkeypatch.undo()
    _click(widget, qtbot, (3, 20, 20), positive=False)  # the next click works, with one point for it
    assert len(widget.corrections.session.clicks) == 1 and len(owned_layer(viewer, widget._source, "clicks").data) == 1


def _brush_stroke(layer, point, label: int) -> np.ndarray:
    """A dab of napari's brush (one undo step, as a stroke is); returns the voxels it changed."""
    before = np.array(layer.data, copy=True)
    layer.brush_size = 5
    with layer.block_history():
        layer.paint(point, label)
    return np.asarray(layer.data) != before


def test_napari_undo_after_a_click_leaves_the_click_s_mask_whole(viewer, qtbot, notes):
    """napari keeps a Labels layer's undo history when its data is replaced, so Ctrl-Z after a click wrote a stroke
    made before it back as the voxels were before the click: a hole of the old mask in the tumour the click grew,
    taken for the user's painting, which no later click or threshold filled."""
    widget = _segmented(viewer, qtbot, notes, "default")
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=60_000)
    tumour = widget.prediction_layer()
    mask = np.asarray(tumour.data) > 0
    z, rows, cols = 15, *np.nonzero(mask[15])
    beside = (z, int(rows.mean()), int(cols[rows == int(rows.mean())].max()) + 4)  # just outside the tumour
    stroke = _brush_stroke(tumour, beside, 1)  # painted "tumour" there
    assert stroke.any() and not mask[stroke].any()
    _click(widget, qtbot, beside, positive=True)  # and a click: the network grows the tumour over the stroke
    session_mask = widget.corrections.session.mask.reshape(mask.shape) > 0
    assert session_mask[stroke].all()
    shown = np.array(tumour.data, copy=True)
    tumour.undo()  # napari's Ctrl-Z on the tumour layer
    np.testing.assert_array_equal(tumour.data, shown)  # nothing of before the click is written back
    _click(widget, qtbot, (3, 20, 20), positive=False)
    widget.cleanup.threshold.value = 0.4
    settle(qtbot, widget)
    session_mask = widget.corrections.session.mask.reshape(mask.shape) > 0
    assert (np.asarray(tumour.data)[stroke] > 0).all() and session_mask[stroke].all()
    after = _brush_stroke(tumour, (3, 40, 40), 1)  # a stroke made after the click is napari's to undo
    tumour.undo()
    assert not np.asarray(tumour.data)[after].any()
    assert notes["error"] == []


def _stroke_listed(widget, qtbot, tumour) -> np.ndarray:
    """A brush stroke in the corner, where the network sees no tumour, once the review list has its row."""
    stroke = _brush_stroke(tumour, (2, 12, 12), 1)
    qtbot.wait(300)  # the stroke's listing starts once it is over (`LayerWatch`)
    settle(qtbot, widget)
    assert stroke.any() and any(piece.voxels == stroke.sum() for piece in widget.review_list.rows)
    return stroke


def _rows_match_layer(widget, tumour) -> None:
    _labels, count = label_pieces(np.asarray(tumour.data) > 0)
    assert len(widget.review_list.rows) == count


def test_a_stroke_undone_with_napari_s_undo_does_not_come_back(viewer, qtbot, notes):
    """The widget added up the user's strokes as they were noted: one taken back with Ctrl-Z stayed "painted", and
    the next click or threshold laid it over the new mask again, with a row in the review list meanwhile (and a piece
    removed or ticked back in the list brought it back at once)."""
    widget = _segmented(viewer, qtbot, notes, "default")
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=60_000)
    tumour = widget.prediction_layer()
    stroke = _stroke_listed(widget, qtbot, tumour)
    tumour.undo()  # napari's Ctrl-Z on the tumour layer
    assert not np.asarray(tumour.data)[stroke].any()
    qtbot.wait(300)
    settle(qtbot, widget)
    _rows_match_layer(widget, tumour)
    widget.review_list.keep_box(0).setCheckState(Qt.Unchecked)
    widget.review_list.keep_box(0).setCheckState(Qt.Checked)
    assert not np.asarray(tumour.data)[stroke].any()
    _click(widget, qtbot, (12, 100, 100), positive=False)
    assert not np.asarray(tumour.data)[stroke].any()
    widget.cleanup.threshold.value = 0.4
    settle(qtbot, widget)
    assert not np.asarray(tumour.data)[stroke].any()
    _rows_match_layer(widget, tumour)
    assert notes["error"] == []


def test_a_stroke_undone_on_a_hidden_layer_is_not_put_back_by_a_keep_box(viewer, qtbot, notes):
    """Napari tells of no undo on a hidden layer, so the review list kept the undone stroke's rows, and a piece
    removed or ticked back in the list set the layer from them: the undone stroke came back until the next click."""
    widget = _segmented(viewer, qtbot, notes, "default")
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=60_000)
    tumour = widget.prediction_layer()
    stroke = _stroke_listed(widget, qtbot, tumour)
    tumour.visible = False
    tumour.undo()
    widget.review_list.keep_box(0).setCheckState(Qt.Unchecked)
    assert not np.asarray(tumour.data)[stroke].any()
    widget.review_list.keep_box(0).setCheckState(Qt.Checked)
    assert not np.asarray(tumour.data)[stroke].any()
    qtbot.wait(300)  # the listing starts shortly after the box (`LayerWatch.again`)
    settle(qtbot, widget)
    assert not np.asarray(tumour.data)[stroke].any()
    _rows_match_layer(widget, tumour)  # listed again without the undone stroke
    assert notes["error"] == []


def test_a_stroke_undone_while_a_click_is_computed_does_not_show_with_its_result(viewer, qtbot, notes):
    """The click's worker laid the painting of the click's start over its mask: a stroke undone meanwhile showed with
    the click's result until the pieces were listed again (0.2 s on the sample)."""
    widget = _segmented(viewer, qtbot, notes, "default")
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=60_000)
    tumour = widget.prediction_layer()
    stroke = _stroke_listed(widget, qtbot, tumour)
    shown, show_mask = [], widget._show_mask

    def spy(*args, **kwargs):
        show_mask(*args, **kwargs)
        shown.append(bool(np.asarray(tumour.data)[stroke].any()))

    widget._show_mask = spy
    widget.corrections.add_click(np.asarray((12, 100, 100), dtype=float), False)
    tumour.undo()  # before the click's result can come: it comes through the event loop
    qtbot.waitUntil(lambda: not widget.corrections.job.running and not widget.corrections._queue, timeout=120_000)
    settle(qtbot, widget)
    assert shown == [False]
    _rows_match_layer(widget, tumour)
    assert notes["error"] == []


def test_a_stroke_redone_with_napari_s_redo_stays_through_clicks_and_thresholds(viewer, qtbot, notes):
    """Ctrl-Shift-Z puts an undone stroke back: it is the user's painting again, kept over the next click's and
    threshold's masks."""
    widget = _segmented(viewer, qtbot, notes, "default")
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=60_000)
    tumour = widget.prediction_layer()
    stroke = _stroke_listed(widget, qtbot, tumour)
    tumour.undo()
    qtbot.wait(300)
    settle(qtbot, widget)
    tumour.redo()  # napari's Ctrl-Shift-Z
    assert np.asarray(tumour.data)[stroke].all()
    qtbot.wait(300)
    settle(qtbot, widget)
    _rows_match_layer(widget, tumour)
    _click(widget, qtbot, (12, 100, 100), positive=False)
    widget.cleanup.threshold.value = 0.4
    settle(qtbot, widget)
    assert (np.asarray(tumour.data)[stroke] > 0).all()
    assert any(piece.voxels == stroke.sum() for piece in widget.review_list.rows)
    assert notes["error"] == []


def test_emptying_the_clicks_layer_raises_no_napari_warning(viewer, qtbot, notes):
    """Undoing the last click, or segmenting again, drew the clicks layer with no colours, and napari warned 'Given
    color input is empty. Converting input to a white color array.', which its viewer shows as a warning
    notification: a message about nothing the user did, in words they cannot act on."""
    widget = _segmented(viewer, qtbot, notes, "default")
    _click(widget, qtbot, (12, 100, 100), positive=False)
    points = owned_layer(viewer, widget._source, "clicks")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        widget.corrections.undo()
        settle(qtbot, widget)
        assert len(points.data) == 0
        _click(widget, qtbot, (12, 100, 100), positive=False)
        widget.segment_button.clicked()  # a fresh segmentation keeps the old clicks with the edited tumour layer
        qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
        settle(qtbot, widget)
    assert points.name.endswith("clicks (edited)") and len(points.data) == 1
    assert owned_layer(viewer, widget._source, "clicks") is None  # drawn afresh at the next click
    assert [str(warning.message) for warning in caught] == []
    assert notes["error"] == []


def test_a_piece_removed_while_a_tumour_click_inside_it_is_computed_stays_removed(viewer, qtbot, notes):
    """A "tumour" click brings back a piece removed before it; one the user removed after clicking, while the click
    was computed or waited its turn, came back when the click landed: the user's later word was undone unseen."""
    widget = _segmented(viewer, qtbot, notes, "default")
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=60_000)
    tumour = widget.prediction_layer()
    row = len(widget.review_list.rows) - 1  # the surest piece: the tumour
    voxels = widget._review.piece_voxels(widget.review_list.rows[row].index)
    inside = tuple(np.argwhere(voxels)[voxels.sum() // 2])
    widget.corrections.add_click(np.asarray(inside, dtype=float), True)
    assert widget.corrections.job.running  # computed in the worker while the user reviews
    widget.review_list.keep_box(row).setCheckState(Qt.Unchecked)
    settle(qtbot, widget)
    assert len(widget.corrections.session.clicks) == 1
    assert not np.asarray(tumour.data)[voxels].any()
    row = next(r for r, piece in enumerate(widget.review_list.rows) if widget._review.labels[inside] == piece.index)
    assert widget.review_list.keep_box(row).checkState() == Qt.Unchecked
    widget.corrections.undo()  # the click undone: the piece stays removed
    settle(qtbot, widget)
    assert not np.asarray(tumour.data)[voxels].any()
    _click(widget, qtbot, inside, positive=True)  # a "tumour" click made after the removal brings it back
    assert np.asarray(tumour.data)[voxels].mean() > 0.9
    assert notes["error"] == []


def test_a_click_on_another_scan_seen_because_the_segmented_one_is_hidden_is_not_a_correction(viewer, qtbot, notes):
    """With the segmented scan hidden, the user sees the scan below it (a second patient opened before it): a click
    there corrected the hidden one's mask, unseen, as a click on a scan shown over it did."""
    widget = _segmented(viewer, qtbot, notes, "default")
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=60_000)
    other = viewer.add_image(np.zeros((24, 256, 256, 3), np.uint8), rgb=True, name="other patient")
    viewer.layers.move(viewer.layers.index(other), 0)  # below the segmented scan
    widget._source.visible = False  # to look at the other patient
    _click_canvas(viewer, qtbot)
    settle(qtbot, widget)
    assert widget.corrections.session.clicks == []
    assert notes["info"][-1] == ("the click fell on 'other patient' while the segmented 'TCGA_CS_6665_20010817' is "
                                 "hidden: it is not taken as a correction of 'TCGA_CS_6665_20010817'; show "
                                 "'TCGA_CS_6665_20010817' to correct it")
    other.visible = False  # only the tumour layer is seen now: the click corrects it
    _click_canvas(viewer, qtbot)
    settle(qtbot, widget)
    assert len(widget.corrections.session.clicks) == 1 and notes["error"] == []


def test_a_click_on_voxels_the_user_painted_says_they_stay_as_painted(viewer, qtbot, notes):
    """Painting wins over clicks, so a "tumour" click inside a spot the user erased (or a "not tumour" click on one
    painted in) changed nothing there, and nothing said why: the user clicked on, to no effect."""
    widget = _segmented(viewer, qtbot, notes, "default")
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=60_000)
    tumour = widget.prediction_layer()
    mask = np.asarray(tumour.data) > 0
    z, rows, cols = 15, *np.nonzero(mask[15])
    inside, outside = (z, int(rows.mean()), int(cols.mean())), (z, 30, 30)
    erased, painted = _brush_stroke(tumour, inside, 0), _brush_stroke(tumour, outside, 1)
    _click(widget, qtbot, inside, positive=True)
    assert not np.asarray(tumour.data)[erased].any()  # the erasure stays
    assert notes["info"] == [f"the click fell on a voxel you erased on '{tumour.name}', which stays as you left it, "
                             "as all your painting does: paint it with the brush to change it"]
    _click(widget, qtbot, outside, positive=False)
    assert np.asarray(tumour.data)[painted].all()
    assert notes["info"][-1] == (f"the click fell on a voxel you painted on '{tumour.name}', which stays as you left "
                                 "it, as all your painting does: erase it with the eraser to change it")
    _click(widget, qtbot, (z, 30, 60), positive=False)  # elsewhere: nothing to say
    assert len(notes["info"]) == 2 and notes["error"] == []


def test_after_a_click_the_rows_are_those_of_the_painted_layer_without_waiting_for_a_listing(viewer, qtbot, notes,
                                                                                             monkeypatch):
    """The click's worker listed the network's mask, so the rows showed its pieces (a blob the user painted without
    a row) until a listing of the painted mask came a moment later: rows of a mask the tumour layer did not have."""
    widget = _segmented(viewer, qtbot, notes, "default")
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=60_000)
    tumour = widget.prediction_layer()
    blob = _brush_stroke(tumour, (2, 12, 12), 1)  # in the corner, where the network sees no tumour
    monkeypatch.setattr(widget.listing_job, "start", lambda *args, **kwargs: None)  # no listing comes after
    mask = np.asarray(tumour.data) > 0
    z, rows, cols = 15, *np.nonzero(mask[15])
    _click(widget, qtbot, (z, int(rows.mean()), int(cols.mean())))
    assert np.asarray(tumour.data)[blob].all()
    labels, count = label_pieces(tumour.data)
    assert len(widget.review_list.rows) == count
    assert any(piece.voxels == blob.sum() for piece in widget.review_list.rows)
    assert notes["error"] == []


def _held_replay(monkeypatch) -> tuple[list[int], threading.Event, threading.Event]:
    """The engine's labelling patched: a new clean-up's replay waits at its first labelling (the automatic mask)
    until released; returns the replayed clicks' labellings (the calls that judge a click), `started` and
    `release`."""
    from napari_lgg_unet.engine import corrections

    judged, started, release, real = [], threading.Event(), threading.Event(), corrections.kept_labels

    def kept_labels(probability, config, **click_rules):
        if click_rules:
            judged.append(1)
        elif config.threshold == 0.7 and not started.is_set():
            started.set()
            release.wait(60)
        return real(probability, config, **click_rules)

    monkeypatch.setattr(corrections, "kept_labels", kept_labels)
    return judged, started, release


def _close_dock(viewer, widget, qtbot) -> None:
    viewer.window.remove_dock_widget(widget.native)  # what the dock's close button does


def _segment_again(viewer, widget, qtbot) -> None:
    widget.segment_button.clicked()
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)


@pytest.mark.parametrize("interrupt", [_close_dock, _segment_again])
def test_closing_the_dock_or_segmenting_again_during_a_clean_up_s_replay_of_the_clicks_ends_it_at_the_next_click(
        viewer, qtbot, notes, tiny_click_model, monkeypatch, interrupt):
    """A new clean-up replays every click (minutes for many clicks on a 155-slice scan), and closing the dock or a new
    segmentation waited for all of it: the new session was built only then. Now the replay ends before its next click
    and shows nothing of itself."""
    widget = _segmented(viewer, qtbot, notes, tiny_click_model)
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=60_000)
    _click(widget, qtbot, (1, 60, 60), positive=True)
    _click(widget, qtbot, (2, 100, 100), positive=False)
    tumour = widget.prediction_layer()
    corrected = np.array(tumour.data, copy=True)
    judged, started, release = _held_replay(monkeypatch)
    widget.cleanup.threshold.value = 0.7
    qtbot.waitUntil(started.is_set, timeout=60_000)
    interrupt(viewer, widget, qtbot)
    release.set()
    qtbot.waitUntil(lambda: not widget.corrections.job.running, timeout=60_000)
    settle(qtbot, widget)
    assert judged == []  # no click was replayed after the stop
    np.testing.assert_array_equal(tumour.data, corrected)  # the corrected mask, now the user's or the dock's last
    assert notes["error"] == []

_USERS = np.zeros((24, 128, 128), np.uint8)  # a user's mask of another shape than the segmented scan's
_USERS[5, 10:20, 10:20] = 1


def _replace_tumour_data(widget, qtbot, action: str) -> None:
    """The tumour layer given data of another shape (a script, another plugin's crop), then `action`."""
    if action == "undo":
        _click(widget, qtbot, (12, 100, 100), positive=False)
    widget.prediction_layer().data = _USERS
    if action == "click":
        _click(widget, qtbot, (12, 100, 100), positive=False)
    elif action == "undo":
        widget.corrections.undo()
    elif action == "threshold":
        widget.cleanup.threshold.value = 0.6
    else:
        widget.review_list.keep_box(0).setCheckState(Qt.Unchecked)
    settle(qtbot, widget)



@pytest.mark.parametrize("action", ["click", "undo", "threshold", "remove a piece"])
def test_tumour_data_of_another_shape_is_the_user_s_and_a_click_undo_threshold_or_removal_leaves_it(
        viewer, qtbot, notes, action):
    """A tumour layer given data of another shape has no painting the widget can lay over a mask (only data of the
    segmented shape has), and the next click, undo, threshold or piece removed set the layer to the mask: the user's
    data was thrown away without a word. It is the user's now, and the mask goes to a new layer."""
    widget = _segmented(viewer, qtbot, notes, "default")
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=60_000)
    tumour = widget.prediction_layer()
    _replace_tumour_data(widget, qtbot, action)
    np.testing.assert_array_equal(tumour.data, _USERS)
    assert tumour.name == "TCGA_CS_6665_20010817 tumour (edited)" and owned_layer(viewer, widget._source,
                                                                                   "tumour") is not tumour
    assert widget.prediction_layer().data.shape == (24, 256, 256)
    assert notes["info"][-1] == ("'TCGA_CS_6665_20010817 tumour (edited)' was given data of another shape, which "
                                 "stays as it is and is yours now; the mask is in a new layer")
    assert notes["error"] == []


@pytest.mark.parametrize("action", ["click", "threshold"])
def test_a_script_s_wider_labels_of_the_segmented_shape_stay_as_they_are_at_the_next_click_or_threshold(
        viewer, qtbot, notes, action):
    """Data of the segmented shape but another type holds painting the widget keeps: a script's int32 labels 256
    and 300 were cast to the mask's uint8 and came back as 0 (erased) and 44."""
    widget = _segmented(viewer, qtbot, notes, "default")
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=60_000)
    settle(qtbot, widget)
    tumour = widget.prediction_layer()
    users = tumour.data.astype(np.int32)
    users[2, 5:9, 5:9], users[2, 20:24, 20:24] = 300, 256  # far from the tumour
    tumour.data = users
    if action == "click":
        _click(widget, qtbot, (12, 100, 100), positive=False)
    else:
        widget.cleanup.threshold.value = 0.6
    settle(qtbot, widget)
    assert widget.prediction_layer() is tumour
    assert (tumour.data[2, 5:9, 5:9] == 300).all() and (tumour.data[2, 20:24, 20:24] == 256).all()
    assert notes["info"] == [] and notes["error"] == []


def test_an_unchanged_tumour_layer_takes_a_new_segmentation_of_another_shape(viewer, qtbot, notes):
    """Only the user's data of another shape is kept apart: a tumour layer nobody changed takes the segmentation of
    its image given data of another shape, as it takes any new segmentation."""
    widget = _segmented(viewer, qtbot, notes, "default")
    tumour = widget.prediction_layer()
    widget._source.data = np.ascontiguousarray(widget._source.data[:, ::2, ::2])
    widget.segment_button.clicked()
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    settle(qtbot, widget)
    assert widget.prediction_layer() is tumour and tumour.data.shape == (24, 128, 128)
    assert notes["info"] == [] and notes["error"] == []
