"""The review list of the Segment widget on the packaged patient: pieces listed doubtful first, a row takes the viewer
to its piece, the Keep box removes and restores a piece in our tumour layer only, and removals outlive a threshold."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_lgg_unet.engine.metrics import volume_scores
from napari_lgg_unet.engine.pieces import label_pieces
from napari_lgg_unet.widgets import readouts as readouts_module
from napari_lgg_unet.widgets.layers import current_slice

from widget_helpers import dock, settle


@pytest.fixture
def reviewed(qtbot, viewer, notes):
    """The sample patient segmented by the default model, every piece kept (no minimum size) at a low threshold so
    doubtful ones show: at its own threshold the default draws one piece there."""
    viewer.open_sample("napari-lgg-unet", "lgg_patient")
    widget = dock(viewer, "Segment tumour")
    widget.model.value = "default"
    widget.cleanup.threshold.value = 0.05
    widget.cleanup.min_size.value = 0
    widget.segment_button.clicked()
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    assert notes["error"] == []
    return widget


def _keep(widget, row: int, keep: bool) -> None:
    widget.review_list.keep_box(row).setCheckState(Qt.Checked if keep else Qt.Unchecked)


def test_the_list_shows_every_piece_least_sure_first_and_a_row_click_goes_to_it(viewer, reviewed):
    widget = reviewed
    tumour = widget.prediction_layer()
    labels, count = label_pieces(tumour.data)
    rows = widget.review_list.rows
    assert count >= 2 and len(rows) == count == widget.review_list.table.native.rowCount()
    assert [p.confidence for p in rows] == sorted(p.confidence for p in rows)
    assert sorted(p.voxels for p in rows) == sorted(np.bincount(labels.ravel())[1:])
    table = widget.review_list.table.native
    first, last = rows[0].slices
    assert table.item(0, 2).text() == f"{rows[0].voxels} voxels"  # the sample has no voxel size
    assert table.item(0, 3).text() in (f"{first}-{last}", str(first))
    assert all(table.item(row, 0).checkState() == Qt.Checked for row in range(count))
    # A click on a row moves the slice slider and the camera to that piece.
    for row, piece in enumerate(rows[:3]):
        widget.review_list.table.native.cellClicked.emit(row, 1)
        assert current_slice(viewer, tumour) == (0, round(piece.centre[0]))
        camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
        np.testing.assert_allclose(camera.center[-2:], tumour.data_to_world(piece.centre)[-2:], atol=1e-6)


def test_the_slices_column_gives_the_span_across_the_axis_on_the_slider(qtbot, viewer, reviewed):
    """With another axis on the slider, the column gave the slices each piece spans across the first axis: positions
    on screen then, not on the slider."""
    widget = reviewed
    table = widget.review_list.table.native

    def column() -> tuple[str, list[str]]:
        return table.horizontalHeaderItem(3).text(), [table.item(row, 3).text() for row in range(table.rowCount())]

    def spans(axis: int) -> list[str]:
        labels, _ = label_pieces(widget.prediction_layer().data)
        along = [np.nonzero(labels == piece.index)[axis] for piece in widget.review_list.rows]
        return [f"{a.min()}-{a.max()}" if a.max() > a.min() else str(a.min()) for a in along]

    assert column() == ("Slices", spans(0))
    viewer.dims.order = (2, 0, 1)  # columns on the slider
    assert column() == ("Slices along axis 2", spans(2)) and spans(2) != spans(0)
    widget.cleanup.threshold.value = round(widget.cleanup.threshold.value - 0.02, 2)  # a new piece at 0.03
    settle(qtbot, widget)
    assert column() == ("Slices along axis 2", spans(2))
    viewer.dims.ndisplay = 3  # no slider for the scan's axes: its slices, as the scan has them
    assert column() == ("Slices", spans(0))


def test_a_row_click_is_one_slice_change_scoring_one_slice_and_removing_a_piece_scores_the_volume(viewer, reviewed,
                                                                                                 monkeypatch):
    widget = reviewed
    truth = viewer.layers["TCGA_CS_6665_20010817 mask"]
    widget.truth.value = truth
    tumour = widget.prediction_layer()
    scored = []  # the number of axes of every pair of masks scored
    score = readouts_module.volume_scores
    monkeypatch.setattr(readouts_module, "volume_scores", lambda p, t: (scored.append(p.ndim), score(p, t))[1])
    steps = []
    viewer.dims.events.current_step.connect(lambda event: steps.append(event.value))
    widget.review_list.table.native.cellClicked.emit(0, 1)
    assert len(steps) == 1 and scored == [2]  # one step (not one per axis), and the shown slice only is scored
    _, z = current_slice(viewer, tumour)
    assert widget.readouts.scores[f"slice {z}"] == volume_scores(tumour.data[z], truth.data[z]).to_dict()
    _keep(widget, 0, False)  # a piece removed changes the volume's scores
    assert 3 in scored
    assert widget.readouts.scores["volume"] == volume_scores(tumour.data, truth.data).to_dict()


def test_unticking_removes_the_piece_a_new_threshold_keeps_it_removed_and_ticking_restores_it(qtbot, viewer, reviewed):
    widget = reviewed
    truth = viewer.layers["TCGA_CS_6665_20010817 mask"]
    truth_before = truth.data.copy()
    tumour = widget.prediction_layer()
    before = tumour.data.copy()
    doubtful = widget.review_list.rows[0]
    piece = label_pieces(before)[0] == doubtful.index
    _keep(widget, 0, False)
    assert not tumour.data[piece].any()
    np.testing.assert_array_equal(tumour.data[~piece], before[~piece])
    assert doubtful.index in widget._review.removed

    # the piece grows a little, stays removed
    widget.cleanup.threshold.value = round(widget.cleanup.threshold.value - 0.01, 2)
    settle(qtbot, widget)
    assert not tumour.data[piece].any()
    row = next(r for r, p in enumerate(widget.review_list.rows) if p.index in widget._review.removed)
    assert widget.review_list.keep_box(row).checkState() == Qt.Unchecked
    _keep(widget, row, True)
    assert tumour.data[piece].all()
    np.testing.assert_array_equal(truth.data, truth_before)  # the user's layer is never touched


def test_a_reviewed_mask_is_kept_when_the_image_is_segmented_again(qtbot, viewer, reviewed, notes):
    widget = reviewed
    tumour = widget.prediction_layer()
    _keep(widget, 0, False)
    reviewed_mask = np.array(tumour.data, copy=True)
    widget.segment_button.clicked()
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    np.testing.assert_array_equal(tumour.data, reviewed_mask)
    assert tumour.name.endswith("(edited)") and widget.prediction_layer() is not tumour
    assert widget.prediction_layer().data.sum() > reviewed_mask.sum()  # the new one has the piece again


def test_a_piece_removed_and_restored_leaves_nothing_to_keep_when_segmenting_again(qtbot, viewer, reviewed):
    widget = reviewed
    tumour = widget.prediction_layer()
    _keep(widget, 0, False)
    _keep(widget, 0, True)
    widget.segment_button.clicked()
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    assert widget.prediction_layer() is tumour and not tumour.name.endswith("(edited)")


def test_a_widget_docked_again_lists_no_pieces_and_no_figures_of_a_tumour_layer_deleted_while_it_was_closed(
        viewer, reviewed, notes):
    """Deleting the tumour layer clears the list (test_clicks_layer.py), but a closed dock hears no layer events: the
    widget docked again from a script listed the deleted mask's pieces and showed its size until the next Segment."""
    widget = reviewed
    assert widget.review_list.rows and widget.readout.value.startswith("Tumour: ")
    viewer.window.remove_dock_widget(widget.native)
    viewer.layers.remove(widget.prediction_layer())
    viewer.window.add_dock_widget(widget, name="Segment tumour (again)")
    assert widget.review_list.rows == [] and widget.review_list.table.native.rowCount() == 0
    assert widget.review_list.caption.value == "Segment an image to review its tumour pieces."
    assert widget.readouts is None and widget.readout.value == "Segment an image to see the tumour size and scores."
    assert notes["error"] == []


def test_a_widget_docked_again_shows_the_readouts_of_its_tumour_layer_as_it_is_now(viewer, reviewed):
    """Painted on while the dock was closed: the figures shown after docking it again are those of the layer now, not
    of the moment it was closed."""
    widget = reviewed
    tumour = widget.prediction_layer()
    viewer.window.remove_dock_widget(widget.native)
    data = np.asarray(tumour.data)
    data[:] = 0
    data[0, :3, :3] = 1  # the user's eraser and brush
    tumour.refresh()
    viewer.window.add_dock_widget(widget, name="Segment tumour (again)")
    assert widget.readouts.voxels == 9 and widget.readout.value.startswith("Tumour: 9 voxels")


def test_ticking_a_piece_back_keeps_what_the_user_erased_and_painted_in_it(viewer, reviewed):
    widget = reviewed
    tumour = widget.prediction_layer()
    doubtful = widget.review_list.rows[0]
    piece = label_pieces(tumour.data)[0] == doubtful.index
    erased, painted = (tuple(v) for v in np.argwhere(piece)[[0, -1]])
    tumour.data[erased], tumour.data[painted] = 0, 3  # napari's eraser and brush write into the layer's array
    tumour.refresh()
    user = np.array(tumour.data, copy=True)
    _keep(widget, 0, False)
    assert not tumour.data[piece].any()  # the voxel painted in it goes with the piece, as the user asked
    _keep(widget, 0, True)
    np.testing.assert_array_equal(tumour.data, user)  # the erased voxel is not tumour again; the painted one is 3


def _painted(qtbot, widget, layer, indices, label: int) -> np.ndarray:
    """Paint `label` on `indices` of `layer` as napari's brush, eraser and fill do (one stroke, one `paint` event);
    returns the voxels changed, once the list has caught up with the stroke."""
    before = np.array(layer.data, copy=True)
    layer.data_setitem(indices, label)
    qtbot.waitUntil(lambda: not widget._paint_watch._timer.isActive(), timeout=5_000)
    settle(qtbot, widget)
    return np.asarray(layer.data) != before


def _row_of(widget, voxels: np.ndarray) -> int:
    """The row of the piece made of exactly `voxels`."""
    labels = widget._review.labels
    index = int(labels[voxels].max())
    assert index and np.array_equal(labels == index, voxels)
    return next(row for row, piece in enumerate(widget.review_list.rows) if piece.index == index)


def _away_from_tumour(tumour) -> tuple[np.ndarray, ...]:
    """A 6 x 6 square on slice 2 in the corner of the scan, where the network sees no tumour."""
    square = np.zeros(tumour.data.shape, dtype=bool)
    square[2, 10:16, 10:16] = True
    assert not np.asarray(tumour.data)[square].any()
    return np.nonzero(square)


def test_a_blob_painted_away_from_the_tumour_gets_a_row_of_low_confidence_through_a_threshold(qtbot, viewer, reviewed,
                                                                                            notes):
    """docs/napari.md: the list shows every 3D piece of the tumour layer. A painted blob got no row, ever."""
    widget = reviewed
    tumour = widget.prediction_layer()
    count = len(widget.review_list.rows)
    stroke = _painted(qtbot, widget, tumour, _away_from_tumour(tumour), 1)
    assert len(widget.review_list.rows) == count + 1
    piece = widget.review_list.rows[_row_of(widget, stroke)]
    assert piece.voxels == 36 and piece.confidence < 0.05  # the network saw no tumour there
    widget.cleanup.threshold.value = round(widget.cleanup.threshold.value + 0.1, 2)
    settle(qtbot, widget)
    assert np.asarray(tumour.data)[stroke].all()
    assert widget.review_list.rows[_row_of(widget, stroke)].voxels == 36
    assert notes["error"] == []


def test_a_piece_erased_whole_by_hand_loses_its_row(qtbot, viewer, reviewed, notes):
    widget = reviewed
    tumour = widget.prediction_layer()
    rows = widget.review_list.rows
    doubtful = rows[0]
    _painted(qtbot, widget, tumour, np.nonzero(widget._review.labels == doubtful.index), 0)
    assert len(widget.review_list.rows) == len(rows) - 1
    assert sorted(p.voxels for p in widget.review_list.rows) == sorted(p.voxels for p in rows[1:])
    labels, count = label_pieces(tumour.data)
    assert count == len(widget.review_list.rows)
    _keep(widget, 0, False)  # the Keep box of the next piece removes that piece
    assert count - 1 == label_pieces(tumour.data)[1]
    assert notes["error"] == []


def test_a_painted_piece_removed_in_the_list_comes_back_exactly_as_painted(qtbot, viewer, reviewed, notes):
    widget = reviewed
    tumour = widget.prediction_layer()
    stroke = _painted(qtbot, widget, tumour, _away_from_tumour(tumour), 2)  # the brush's label 2
    user = np.array(tumour.data, copy=True)
    _keep(widget, _row_of(widget, stroke), False)
    assert not np.asarray(tumour.data)[stroke].any()
    np.testing.assert_array_equal(np.asarray(tumour.data)[~stroke], user[~stroke])
    widget.cleanup.threshold.value = round(widget.cleanup.threshold.value + 0.01, 2)  # it stays removed
    settle(qtbot, widget)
    assert not np.asarray(tumour.data)[stroke].any()
    row = _row_of(widget, stroke)
    assert widget.review_list.keep_box(row).checkState() == Qt.Unchecked
    _keep(widget, row, True)
    assert (np.asarray(tumour.data)[stroke] == 2).all()
    assert notes["error"] == []


def test_painting_on_a_removed_piece_brings_it_back_with_the_painting(qtbot, viewer, reviewed, notes):
    """The painted voxels joined the removed piece and were hidden with it: the user's painting, silently undone."""
    widget = reviewed
    tumour = widget.prediction_layer()
    doubtful = widget.review_list.rows[0]
    piece = widget._review.labels == doubtful.index
    _keep(widget, 0, False)
    z, y, x = np.argwhere(piece)[0]
    _painted(qtbot, widget, tumour, tuple(np.array([v]) for v in (z, y, x)), 3)  # a dab of the brush inside it
    assert tumour.data[z, y, x] == 3 and np.asarray(tumour.data)[piece].all()
    row = next(r for r, p in enumerate(widget.review_list.rows) if p.voxels == doubtful.voxels)
    assert widget.review_list.keep_box(row).checkState() == Qt.Checked
    assert notes["error"] == []


def test_a_removed_painted_piece_stays_hidden_while_a_new_threshold_s_pieces_are_listed(qtbot, viewer, reviewed,
                                                                                         monkeypatch):
    """The new threshold's mask comes without the painting, whose pieces are listed a moment later: meanwhile the
    painted piece the user removed showed again."""
    widget = reviewed
    tumour = widget.prediction_layer()
    stroke = _painted(qtbot, widget, tumour, _away_from_tumour(tumour), 2)
    _keep(widget, _row_of(widget, stroke), False)
    monkeypatch.setattr(widget.listing_job, "start", lambda *args, **kwargs: None)  # the pieces are not listed yet
    widget.cleanup.threshold.value = round(widget.cleanup.threshold.value + 0.01, 2)
    settle(qtbot, widget)
    assert not np.asarray(tumour.data)[stroke].any()


def test_after_a_new_threshold_the_rows_are_those_of_the_painted_layer_without_waiting_for_a_listing(
        qtbot, viewer, reviewed, monkeypatch, notes):
    """The clean-up's worker listed the network's mask, so the rows showed its pieces (the painted blob without a
    row) until a listing of the painted mask came 0.2 s later: rows of a mask the tumour layer did not have."""
    widget = reviewed
    tumour = widget.prediction_layer()
    stroke = _painted(qtbot, widget, tumour, _away_from_tumour(tumour), 1)
    monkeypatch.setattr(widget.listing_job, "start", lambda *args, **kwargs: None)  # no listing comes after
    widget.cleanup.threshold.value = round(widget.cleanup.threshold.value + 0.05, 2)
    settle(qtbot, widget)
    assert np.asarray(tumour.data)[stroke].all()
    assert widget.review_list.rows[_row_of(widget, stroke)].voxels == 36
    assert len(widget.review_list.rows) == label_pieces(tumour.data)[1]
    assert notes["error"] == []
