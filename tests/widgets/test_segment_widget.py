"""The Segment widget on a real patient: layer, re-run, re-threshold, readouts, and a responsive viewer."""

from __future__ import annotations

import datetime
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_lgg_unet.engine.errors import InputError
from napari_lgg_unet.engine.metrics import volume_scores
from napari_lgg_unet.engine.model import PostprocessConfig
from napari_lgg_unet.engine.pieces import label_pieces
from napari_lgg_unet.engine.predict import SegmentProgress, postprocess
from napari_lgg_unet.sample_data import sample_patient
from napari_lgg_unet.widgets import readouts as readouts_module
from napari_lgg_unet.widgets import segment as segment_module
from napari_lgg_unet.widgets.layers import OWNER_KEY, voxel_volume
from napari_lgg_unet.widgets.readouts import Readouts, write_readouts_csv
from napari_lgg_unet.widgets.review import size_text
from napari_lgg_unet.widgets.workers import cleanup_job

from widget_helpers import (
    MAX_EVENT_LOOP_GAP, EventLoopProbe, assert_unchanged, bright_square_scan, dock, follow_placement_fix, settle,
    snapshot,
)

PATIENT = "TCGA_CS_6665_20010817"
SLICES = slice(8, 14)  # six slices, tumour on all of them: quick and meaningful


@pytest.fixture(scope="module")
def patient():
    """Six slices of the patient that ships with the package (runs without ../shared)."""
    (image, _, _), (mask, _, _) = sample_patient()
    return image[SLICES], mask[SLICES]


@pytest.fixture
def segment_widget(viewer, patient, tiny_model_dir):
    image, mask = patient
    viewer.add_image(image, name=PATIENT, rgb=True, scale=(3.0, 0.5, 0.5))
    viewer.add_labels(mask, name=f"{PATIENT} mask", scale=(3.0, 0.5, 0.5))
    widget = dock(viewer, "Segment tumour")
    widget.model.value = "folder"
    widget.model_folder.value = tiny_model_dir
    return widget


def run_segment(qtbot, widget) -> None:
    widget.segment_button.clicked()
    assert widget.running or not widget.job.in_thread
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)


def segmented_with_its_truth(qtbot, viewer, widget):
    """The sample segmented at a low threshold (the test model is unsure: a non-empty mask), its manual mask chosen
    as the ground truth; returns that mask's layer."""
    widget.cleanup.threshold.value = 0.05
    run_segment(qtbot, widget)
    truth = viewer.layers[f"{PATIENT} mask"]
    widget.truth.value = truth
    return truth


def test_segmenting_a_real_patient_makes_a_tumour_labels_layer_like_the_image(qtbot, viewer, segment_widget, notes):
    widget = segment_widget
    widget.cleanup.threshold.value = 0.05  # an untrained model is unsure; a low threshold makes a non-empty mask
    with EventLoopProbe() as probe:
        run_segment(qtbot, widget)
    print(f"\nwhile segmenting: {probe.report()}")
    assert probe.max_gap < MAX_EVENT_LOOP_GAP, probe.report()
    assert notes["error"] == []
    layer = viewer.layers[f"{PATIENT} tumour"]
    image = viewer.layers[PATIENT]
    assert layer.data.shape == image.data.shape[:3]
    assert np.issubdtype(layer.data.dtype, np.integer)
    assert set(np.unique(layer.data)) <= {0, 1}
    assert layer.data.any()
    np.testing.assert_array_equal(layer.scale, image.scale)
    np.testing.assert_array_equal(layer.translate, image.translate)
    assert widget.progress.value == widget.progress.max == 6


@pytest.mark.usefixtures("inline_jobs")
def test_the_chosen_precision_runs_and_the_widget_says_what_ran(qtbot, viewer, segment_widget, notes):
    widget = segment_widget
    widget.precision.value = "fp32"
    run_segment(qtbot, widget)
    assert notes["error"] == []
    assert widget.device_note.value.startswith("runs on cpu, fp32")


@pytest.mark.usefixtures("inline_jobs")
def test_auto_precision_in_the_widget_is_the_choice_a_command_line_run_remembered(qtbot, segment_widget, notes,
                                                                                   monkeypatch, tmp_path):
    """`lgg-unet predict` measured on this machine; the viewer, a later process, runs what it chose and says why."""
    from napari_lgg_unet.engine import precision

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    layouts = iter([True, False])  # a busy machine: the second measurement would pick the other fp32 layout
    monkeypatch.setattr(precision, "_fastest", lambda candidates, stop=None: candidates[1 if next(layouts) else 0])
    precision._CHOSEN.clear()
    measured = precision.choose("cpu", "auto")  # what the command line's run chose
    precision._CHOSEN.clear()  # the viewer is another process
    try:
        segment_widget.precision.value = "auto"
        run_segment(qtbot, segment_widget)
        assert precision.choose("cpu", "auto") == measured
    finally:
        precision._CHOSEN.clear()
    assert notes["error"] == [] and "; auto: remembered from " in segment_widget.device_note.value


@pytest.mark.usefixtures("inline_jobs")
def test_running_again_updates_the_same_layer_and_leaves_a_same_named_user_layer_alone(qtbot, viewer, segment_widget):
    widget = segment_widget
    user = viewer.add_labels(np.full((6, 256, 256), 7, np.uint8), name=f"{PATIENT} tumour")
    run_segment(qtbot, widget)
    ours = [layer for layer in viewer.layers if OWNER_KEY in layer.metadata]
    assert len(ours) == 1 and ours[0] is not user
    count = len(viewer.layers)
    widget.cleanup.threshold.value = 0.3
    run_segment(qtbot, widget)
    assert len(viewer.layers) == count
    assert [layer for layer in viewer.layers if OWNER_KEY in layer.metadata] == ours
    assert (user.data == 7).all()


def _paint(layer, where) -> np.ndarray:
    """Paint tumour the way napari's brush does (into the layer's own array, then a refresh); the data after it."""
    layer.data[where] = 1
    layer.refresh()
    return np.array(layer.data, copy=True)


@pytest.mark.usefixtures("inline_jobs")
def test_segmenting_again_keeps_a_painted_tumour_layer_as_the_users_own(qtbot, viewer, segment_widget, notes):
    widget = segment_widget
    run_segment(qtbot, widget)
    tumour = viewer.layers[f"{PATIENT} tumour"]
    segmented = np.array(tumour.data, copy=True)
    painted = _paint(tumour, tuple(np.argwhere(segmented == 0)[:40].T))
    run_segment(qtbot, widget)  # a new segmentation of the same image, as after changing the model
    np.testing.assert_array_equal(tumour.data, painted)  # not a voxel lost
    assert tumour.name == f"{PATIENT} tumour (edited)" and OWNER_KEY not in tumour.metadata
    new = widget.prediction_layer()
    assert new is not tumour and new.name == f"{PATIENT} tumour"
    np.testing.assert_array_equal(new.data, segmented)  # the new segmentation, without the painting
    assert any("(edited)" in note for note in notes["info"])
    count = len(viewer.layers)
    run_segment(qtbot, widget)  # unedited: replaced in place, as before
    assert len(viewer.layers) == count and widget.prediction_layer() is new


@pytest.mark.usefixtures("inline_jobs")
def test_a_tumour_layer_picked_as_the_ground_truth_is_kept_and_scores_the_next_segmentation(qtbot, viewer,
                                                                                            segment_widget, notes):
    """To compare two segmentations (another model, or test-time augmentation), a user picks the first one's tumour
    layer as the ground truth and presses Segment again: the new segmentation overwrote that layer, so the reference
    was lost and the readouts said to pick a ground truth although one was picked."""
    widget = segment_widget
    # the shipped model: the untrained test model's probabilities all lie within a few hundredths of 0.5, so at 0.5
    # both segmentations were sometimes the same (all tumour, or none) and the comparison proved nothing
    widget.model.value = "default"
    widget.cleanup.threshold.value = 0.5
    run_segment(qtbot, widget)
    first = widget.prediction_layer()
    widget.truth.value = first
    assert "is the segmentation on screen" in widget.readout.value
    reference = np.array(first.data, copy=True)
    widget.tta.value = True
    run_segment(qtbot, widget)
    new = widget.prediction_layer()
    assert new is not first and new.name == f"{PATIENT} tumour"
    np.testing.assert_array_equal(first.data, reference)
    assert first.name == f"{PATIENT} tumour (kept)" and OWNER_KEY not in first.metadata
    assert widget.truth.value is first
    scores = volume_scores(np.asarray(new.data) > 0, reference > 0)
    assert 0 < scores.dice < 1  # two segmentations that differ
    assert widget.readouts.scores["volume"]["dice"] == pytest.approx(scores.dice)
    assert any("(kept)" in note for note in notes["info"])


@pytest.mark.usefixtures("inline_jobs")
def test_painting_while_another_image_was_segmented_is_kept_too(qtbot, viewer, segment_widget, patient, notes):
    widget = segment_widget
    run_segment(qtbot, widget)
    first = viewer.layers[PATIENT]
    tumour = widget.prediction_layer()
    widget.image.value = viewer.add_image(patient[0], name="other", rgb=True)
    run_segment(qtbot, widget)
    painted = _paint(tumour, tuple(np.argwhere(tumour.data == 0)[:16].T))  # the first image's layer, meanwhile
    widget.image.value = first
    run_segment(qtbot, widget)
    np.testing.assert_array_equal(tumour.data, painted)
    assert OWNER_KEY not in tumour.metadata and widget.prediction_layer() is not tumour


@pytest.mark.usefixtures("inline_jobs")
def test_a_duplicate_or_a_renamed_tumour_layer_is_the_users(qtbot, viewer, segment_widget, notes):
    from napari.layers._layer_actions import _duplicate_layer  # what Layers > Duplicate Layer runs

    widget = segment_widget
    widget.show_probability.value = True
    run_segment(qtbot, widget)
    tumour = widget.prediction_layer()
    for layer in (tumour, viewer.layers[f"{PATIENT} probability"]):
        viewer.layers.selection = {layer}
        _duplicate_layer(viewer.layers)
    copies = [layer for layer in viewer.layers if layer.name.endswith(" copy")]
    assert len(copies) == 2 and OWNER_KEY in copies[0].metadata  # napari copies the metadata, our mark included
    viewer.layers.remove(tumour)  # only the user's copy is left
    kept = [np.array(copy.data, copy=True) for copy in copies]
    widget.cleanup.threshold.value = 0.3
    widget.show_probability.value = False
    run_segment(qtbot, widget)
    assert all(copy in viewer.layers for copy in copies)
    for copy, data in zip(copies, kept):
        np.testing.assert_array_equal(copy.data, data)
    mine = widget.prediction_layer()
    assert mine not in copies
    mine.name = "my final mask"  # renamed, not painted: claimed all the same
    data = np.array(mine.data, copy=True)
    run_segment(qtbot, widget)
    assert mine.name == "my final mask" and OWNER_KEY not in mine.metadata and widget.prediction_layer() is not mine
    np.testing.assert_array_equal(mine.data, data)
    assert notes["error"] == []


@pytest.mark.usefixtures("inline_jobs")
def test_the_layers_made_for_an_image_follow_its_new_name_unless_the_user_named_them(qtbot, viewer, segment_widget,
                                                                                     notes):
    """They kept the image's old name, so after a case's FLAIR was renamed its tumour layer named another. One the
    user renamed is theirs (`layers.edited`) and keeps its name; followed by us, a layer stays ours to update."""
    widget = segment_widget
    widget.show_probability.value = True
    run_segment(qtbot, widget)
    image, tumour, probability = widget._source, widget.prediction_layer(), viewer.layers[f"{PATIENT} probability"]
    image.name = "patient 7"
    assert (tumour.name, probability.name) == ("patient 7 tumour", "patient 7 probability")
    run_segment(qtbot, widget)  # not the user's name: the layer is updated in place, not handed over
    assert widget.prediction_layer() is tumour and tumour.name == "patient 7 tumour"
    tumour.name = "my mask"
    image.name = "patient 8"
    assert (tumour.name, probability.name) == ("my mask", "patient 8 probability")
    viewer.add_labels(np.zeros((2, 2), np.uint8), name="patient 9 probability")  # a layer of the user's: never renamed
    image.name = "patient 9"
    assert probability.name == "patient 9 probability [1]"
    assert viewer.layers["patient 9 probability"].data.shape == (2, 2) and notes["error"] == []


@pytest.mark.usefixtures("inline_jobs")
def test_painted_label_values_stay_as_painted_through_a_new_threshold(qtbot, viewer, segment_widget):
    widget = segment_widget
    run_segment(qtbot, widget)
    tumour = widget.prediction_layer()
    tumour.data[0, 0:20, 0:20] = 2
    tumour.refresh()
    widget.cleanup.threshold.value = 0.3
    assert (tumour.data[0, 0:20, 0:20] == 2).all()


@pytest.mark.usefixtures("inline_jobs")
def test_moving_the_threshold_rethresholds_without_running_the_model(qtbot, viewer, segment_widget, monkeypatch):
    widget = segment_widget
    run_segment(qtbot, widget)
    probability = widget._probability
    monkeypatch.setattr(segment_module, "segment_job", lambda *a, **k: pytest.fail("the model must not run again"))
    for threshold in (0.2, 0.6):
        widget.cleanup.threshold.value = threshold
        expected = postprocess(probability, PostprocessConfig(threshold=threshold))
        np.testing.assert_array_equal(widget.prediction_layer().data, expected)


def test_a_new_threshold_is_applied_off_the_viewers_thread_and_only_the_latest_of_quick_changes(
        qtbot, viewer, segment_widget, monkeypatch):
    widget = segment_widget
    run_segment(qtbot, widget)
    probability = widget._probability
    ran = []

    def counted(probability, config, *args, stop):
        ran.append(config.threshold)
        yield from cleanup_job(probability, config, *args, stop=stop)

    monkeypatch.setattr(segment_module, "cleanup_job", counted)
    for threshold in (0.2, 0.3, 0.4, 0.6):  # a slider dragged: each step arrives before the first is done
        widget.cleanup.threshold.value = threshold
    assert widget.cleanup_job.running
    settle(qtbot, widget)
    assert ran == [0.2, 0.6]
    expected = postprocess(probability, replace(widget.cleanup.config(), threshold=0.6))
    np.testing.assert_array_equal(widget.prediction_layer().data, expected)
    assert len(widget.review_list.rows) == label_pieces(expected)[1]


@pytest.mark.usefixtures("inline_jobs")
def test_probability_layer_is_optional(qtbot, viewer, segment_widget):
    widget = segment_widget
    run_segment(qtbot, widget)
    assert f"{PATIENT} probability" not in viewer.layers
    widget.show_probability.value = True
    probability = viewer.layers[f"{PATIENT} probability"]
    assert probability.data.dtype == np.float32 and probability.data.shape == (6, 256, 256)
    assert probability.visible


@pytest.mark.usefixtures("inline_jobs")
def test_unticking_the_probability_box_hides_the_map_which_stays_current_and_shows_again(qtbot, viewer,
                                                                                        segment_widget):
    """Removed, the map cost a full garbage collection in napari (0.4-1 s with PyTorch loaded); hidden, it costs
    nothing, and its own eye in the layer list would show the current map."""
    widget = segment_widget
    run_segment(qtbot, widget)
    widget.show_probability.value = True
    probability = viewer.layers[f"{PATIENT} probability"]
    widget.show_probability.value = False
    assert probability in viewer.layers and not probability.visible
    before = widget._probability
    widget.tta.value = True  # mirrored too: other probabilities
    run_segment(qtbot, widget)
    assert widget._probability is not before
    np.testing.assert_array_equal(probability.data, widget._probability)
    assert not probability.visible
    widget.show_probability.value = True
    assert viewer.layers[f"{PATIENT} probability"] is probability and probability.visible


def test_the_probability_map_is_never_offered_as_an_image_to_segment(qtbot, viewer, segment_widget, notes):
    widget = segment_widget
    run_segment(qtbot, widget)
    widget.show_probability.value = True
    probability = viewer.layers[f"{PATIENT} probability"]
    copy = viewer.add_image(np.array(probability.data), name="my copy")  # the user's own image of it may be picked
    assert list(widget.image.choices) == [viewer.layers[PATIENT], copy]
    viewer.layers.remove(PATIENT)
    assert widget.image.value is copy


@pytest.mark.usefixtures("inline_jobs")
def test_readouts_equal_the_engine_metrics_for_volume_and_shown_slice(qtbot, viewer, segment_widget, tmp_path):
    widget = segment_widget
    truth = segmented_with_its_truth(qtbot, viewer, widget)
    prediction = widget.prediction_layer().data
    assert widget.readouts.scores["volume"] == volume_scores(prediction, truth.data).to_dict()
    viewer.dims.set_current_step(0, 4)
    assert widget.readouts.scores["slice 4"] == volume_scores(prediction[4], truth.data[4]).to_dict()
    assert widget.readouts.voxels == int(np.count_nonzero(prediction))
    assert widget.readouts.physical_size is None  # a scale in pixels: the size in voxels, as the review list gives it
    assert "dice" in widget.readout.value
    widget.csv_path.value = tmp_path / "readouts.csv"
    widget.save_button.clicked()
    lines = (tmp_path / "readouts.csv").read_text().splitlines()
    assert lines[0].startswith("image,ground_truth,scope,dice")
    assert lines[1].startswith(f"{PATIENT},{PATIENT} mask,volume,")
    assert len(lines) == 3


@pytest.mark.usefixtures("inline_jobs")
def test_readouts_saved_to_a_relative_path_are_named_in_full(qtbot, viewer, segment_widget, notes, tmp_path,
                                                             monkeypatch):
    """A relative CSV path is taken from the folder napari was started from, which napari does not show: the notice
    said 'readouts saved to scores.csv'; it names the absolute file now."""
    started_in = tmp_path / "started in"
    started_in.mkdir()
    monkeypatch.chdir(started_in)
    segmented_with_its_truth(qtbot, viewer, segment_widget)
    segment_widget.csv_path.line_edit.value = "scores"
    segment_widget.save_button.clicked()
    assert notes["info"][-1] == f"readouts saved to {started_in / 'scores.csv'}"


@pytest.mark.usefixtures("inline_jobs")
def test_a_ground_truth_painted_below_0_is_refused_not_scored_as_no_tumour(qtbot, viewer, segment_widget, notes):
    """Labels below 0 counted as no tumour: a manual mask painted with -1 scored every segmentation against an empty
    truth (Dice 0). Refused as the engine refuses them in a label file, and the readouts say why."""
    widget = segment_widget
    mask = segmented_with_its_truth(qtbot, viewer, widget)
    negative = viewer.add_labels(-mask.data.astype(np.int8), name="painted -1", scale=(3.0, 0.5, 0.5))
    before = snapshot(viewer)
    widget.truth.value = negative
    assert notes["error"][-1].startswith("'painted -1' holds values below 0 (such as -1)")
    assert widget.readouts is None and widget.readout.value == notes["error"][-1]
    assert_unchanged(before, snapshot(viewer))
    widget.truth.value = mask  # the widget goes on scoring a ground truth it can use
    scores = volume_scores(widget.prediction_layer().data, mask.data).to_dict()
    assert widget.readouts.scores["volume"] == scores and scores["dice"] > 0


@pytest.mark.usefixtures("inline_jobs")
def test_a_slider_step_scores_the_new_slice_only_and_a_new_threshold_or_painting_scores_the_volume(qtbot, viewer,
                                                                                                 segment_widget,
                                                                                                 monkeypatch):
    widget = segment_widget
    truth = segmented_with_its_truth(qtbot, viewer, widget)
    prediction = widget.prediction_layer()
    scored = []  # the number of axes of every pair of masks scored
    score = readouts_module.volume_scores
    monkeypatch.setattr(readouts_module, "volume_scores", lambda p, t: (scored.append(p.ndim), score(p, t))[1])
    for z in (4, 1, 5):
        viewer.dims.set_current_step(0, z)
        assert widget.readouts.scores[f"slice {z}"] == volume_scores(prediction.data[z], truth.data[z]).to_dict()
    assert scored == [2, 2, 2]
    widget.cleanup.threshold.value = 0.1
    assert scored.count(3) == 1
    assert widget.readouts.scores["volume"] == volume_scores(prediction.data, truth.data).to_dict()
    z, y, x = np.argwhere(truth.data > 0)[0]
    viewer.dims.set_current_step(0, z)
    prediction.brush_size = 15
    prediction.paint((z, y, x), 0, refresh=True)
    qtbot.waitUntil(lambda: scored.count(3) == 2, timeout=2000)
    assert widget.readouts.scores["volume"] == volume_scores(prediction.data, truth.data).to_dict()
    assert widget.readouts.scores[f"slice {z}"] == volume_scores(prediction.data[z], truth.data[z]).to_dict()


@pytest.mark.usefixtures("inline_jobs")
def test_the_slice_scored_is_the_one_on_screen_whichever_axis_is_on_the_slider(qtbot, viewer, segment_widget):
    """With the view transposed (another axis on the slider) the readouts named and scored the slice along the first
    axis at the slider's old position, a slice not on screen, and did not follow the slider; the 3D view shows no
    slice."""
    widget = segment_widget
    truth = segmented_with_its_truth(qtbot, viewer, widget)
    prediction = widget.prediction_layer().data
    z, y, _ = np.argwhere(truth.data > 0)[0]
    viewer.dims.set_current_step(0, z)
    assert set(widget.readouts.scores) == {"volume", f"slice {z}"}
    viewer.dims.order = (1, 0, 2)  # rows on the slider, slices and columns on screen
    viewer.dims.set_current_step(1, y)
    assert set(widget.readouts.scores) == {"volume", f"slice {y} along axis 1"}
    assert widget.readouts.scores[f"slice {y} along axis 1"] == volume_scores(prediction[:, y],
                                                                              truth.data[:, y]).to_dict()
    assert f"slice {y} along axis 1: dice" in widget.readout.value
    viewer.dims.ndisplay = 3
    assert set(widget.readouts.scores) == {"volume"}
    viewer.dims.ndisplay = 2
    viewer.dims.order = (0, 1, 2)
    assert set(widget.readouts.scores) == {"volume", f"slice {z}"}


@pytest.mark.usefixtures("inline_jobs")
def test_a_slider_step_right_after_new_data_scores_the_new_data(qtbot, viewer, segment_widget):
    """New data in the tumour layer (a script's `layer.data = ...`) is scored by the layer watch after its delay; a
    slider step before that scored a slice of the masks replaced, and with more slices than they had, raised an
    IndexError in the viewer's slider."""
    widget = segment_widget
    truth = segmented_with_its_truth(qtbot, viewer, widget)
    prediction = widget.prediction_layer()
    replaced = np.zeros_like(prediction.data)
    replaced[3] = truth.data[3]
    prediction.data = replaced
    viewer.dims.set_current_step(0, 3)
    assert widget.readouts.scores["slice 3"] == volume_scores(replaced[3], truth.data[3]).to_dict()
    assert widget.readouts.scores["volume"] == volume_scores(replaced, truth.data).to_dict()
    longer = np.zeros((10, *replaced.shape[1:]), replaced.dtype)
    prediction.data = longer
    viewer.dims.set_current_step(0, 8)
    assert widget.readouts is None
    assert widget.readout.value.startswith(f"'{truth.name}' has shape {truth.data.shape}, the prediction (10,")


@pytest.mark.usefixtures("inline_jobs")
def test_readouts_follow_painting_on_the_tumour_layer_and_the_ground_truth_without_a_slider_step(qtbot, viewer,
                                                                                                 segment_widget):
    """A correction painted on the tumour layer or the ground truth, and napari's undo of it, show in the Dice at once
    (once per stroke): the readouts used to wait for the next slider step."""
    widget = segment_widget
    truth = segmented_with_its_truth(qtbot, viewer, widget)
    prediction = widget.prediction_layer()
    before = widget.readouts.scores["volume"]["dice"]
    computed = []
    real = widget.update_readouts
    widget._readout_watch._on_change = lambda: (computed.append(1), real())

    def scored() -> float:
        return volume_scores(prediction.data, truth.data).dice

    z, y, x = np.argwhere(truth.data > 0)[0]
    prediction.brush_size = 15
    for offset in range(5):  # one stroke of several paint events
        prediction.paint((z, y, x + offset), 0, refresh=True)
    qtbot.waitUntil(lambda: widget.readouts.scores["volume"]["dice"] != before, timeout=2000)
    assert widget.readouts.scores["volume"]["dice"] == pytest.approx(scored())
    qtbot.wait(300)
    assert computed == [1]  # the stroke was computed once, after it
    painted = widget.readouts.scores["volume"]["dice"]
    prediction.undo()  # napari's own undo (of the last paint event) gives the layer new data
    qtbot.waitUntil(lambda: widget.readouts.scores["volume"]["dice"] != painted, timeout=2000)
    assert widget.readouts.scores["volume"]["dice"] == pytest.approx(scored())
    undone = widget.readouts.scores["volume"]["dice"]
    truth.paint((z, y, x), 0, refresh=True)  # a correction of the ground truth counts too
    qtbot.waitUntil(lambda: widget.readouts.scores["volume"]["dice"] != undone, timeout=2000)
    assert widget.readouts.scores["volume"]["dice"] == pytest.approx(scored())


@pytest.mark.usefixtures("inline_jobs")
def test_readouts_catch_up_with_an_undo_or_new_data_on_a_hidden_layer(qtbot, viewer, segment_widget, tmp_path):
    """napari redraws no hidden layer, so an undo on one (ctrl-z with the layer's eye closed) emits nothing and new
    data only `data`: the Dice of the masks before stayed on screen, were scored slice by slice on a slider step and
    saved to CSV, until the layer was shown again."""
    widget = segment_widget
    truth = segmented_with_its_truth(qtbot, viewer, widget)
    prediction = widget.prediction_layer()

    def current(scope: str = "volume") -> dict:
        if scope == "volume":
            return volume_scores(prediction.data, truth.data).to_dict()
        z = int(scope.split()[1])
        return volume_scores(prediction.data[z], truth.data[z]).to_dict()

    z, y, x = np.argwhere(truth.data > 0)[0]
    viewer.dims.set_current_step(0, z)
    for layer in (prediction, truth):  # a correction painted on each, scored once the strokes end
        layer.brush_size = 15
        layer.paint((z, y, x), 0, refresh=True)
    qtbot.waitUntil(lambda: widget.readouts.scores["volume"] == current(), timeout=2000)
    prediction.visible = False
    prediction.undo()
    assert current() != widget.readouts.scores["volume"]  # what napari's silence leaves on screen until then
    viewer.dims.set_current_step(0, z + 1)  # a slider step with the tumour layer hidden
    assert widget.readouts.scores["volume"] == current()
    assert widget.readouts.scores[f"slice {z + 1}"] == current(f"slice {z + 1}")
    truth.visible = False
    truth.undo()
    widget.csv_path.value = tmp_path / "readouts.csv"
    widget.save_button.clicked()  # saved with the ground truth hidden
    rows = [line.split(",") for line in (tmp_path / "readouts.csv").read_text().splitlines()[1:]]
    assert {row[2]: [float(value) for value in row[3:8]] for row in rows} == {
        scope: list(current(scope).values()) for scope in ("volume", f"slice {z + 1}")}
    truth.data = np.zeros_like(truth.data)  # new data for the hidden ground truth: heard of at once
    qtbot.waitUntil(lambda: widget.readouts.scores["volume"]["dice"] == 0.0, timeout=2000)


@pytest.mark.usefixtures("inline_jobs")
def test_picking_no_ground_truth_clears_the_scores_of_the_one_picked_before(qtbot, viewer, segment_widget, tmp_path):
    """'(none)' picked in the Ground truth box (its Qt entry, as a user picks it): the Dice against the mask picked
    before stayed on screen, and a CSV saved then wrote those scores with an empty ground_truth column."""
    widget = segment_widget
    segmented_with_its_truth(qtbot, viewer, widget)
    assert "volume" in widget.readouts.scores
    widget.truth.native.setCurrentIndex(0)
    assert widget.truth.value is None
    assert widget.readouts.scores == {}
    assert "Pick a ground-truth labels layer" in widget.readout.value
    widget.csv_path.value = tmp_path / "readouts.csv"
    widget.save_button.clicked()
    row = (tmp_path / "readouts.csv").read_text().splitlines()[1]
    assert row.startswith(f"{PATIENT},,volume,,,")  # a size, no scores


@pytest.mark.usefixtures("inline_jobs")
def test_saving_readouts_a_ground_truth_cannot_score_says_why_not_to_segment_first(qtbot, viewer, segment_widget,
                                                                                     notes, tmp_path):
    """A ground truth of another shape leaves nothing to save: the error said "segment an image first" after the user
    had segmented, instead of what the readouts say is wrong."""
    widget = segment_widget
    run_segment(qtbot, widget)
    widget.truth.value = viewer.add_labels(np.ones((2, 8, 8), np.uint8), name="other mask")
    widget.csv_path.value = tmp_path / "readouts.csv"
    widget.save_button.clicked()
    assert notes["error"] == [f"nothing saved: {widget.readout.value}"]
    assert "'other mask' has shape (2, 8, 8)" in notes["error"][0] and not (tmp_path / "readouts.csv").exists()


def test_a_ground_truth_of_the_predictions_shape_shown_elsewhere_is_not_scored(qtbot, viewer, segment_widget, notes):
    """A mask moved or scaled away from the image would be scored voxel by voxel against another place; one stored
    reversed but shown on the image's voxels is scored as the mask it is."""
    widget = segment_widget
    widget.cleanup.threshold.value = 0.05
    run_segment(qtbot, widget)
    truth = viewer.layers[f"{PATIENT} mask"]
    moved = viewer.add_labels(truth.data, name="moved mask", scale=(3.0, 0.5, 0.5), translate=(0.0, 0.0, 20.0))
    before = snapshot(viewer)
    widget.truth.value = moved
    assert widget.readouts is None
    assert widget.readout.value.startswith("'moved mask' has the prediction's shape but lies elsewhere in the viewer")
    assert_unchanged(before, snapshot(viewer))
    follow_placement_fix(viewer, widget.readout.value, moved, widget.prediction_layer())  # if it were the right one
    qtbot.waitUntil(lambda: widget.readouts is not None, timeout=2000)  # the readouts follow the new placement
    assert "dice" in widget.readout.value
    viewer.layers.remove(moved)
    prediction = widget.prediction_layer().data
    prediction[:] = 0
    prediction[:, :100] = 1  # painted by the user: the upper part of every slice, so that reversing it would show
    widget.truth.value = truth  # the widget goes on with a ground truth of this image
    scores = widget.readouts.scores["volume"]
    assert scores == volume_scores(prediction, truth.data).to_dict()
    stored = np.ascontiguousarray(truth.data[:, ::-1, :])
    assert volume_scores(prediction, stored).to_dict() != scores
    height = (truth.data.shape[1] - 1) * 0.5
    widget.truth.value = viewer.add_labels(stored, name="reversed", scale=(3.0, -0.5, 0.5), translate=(0, height, 0))
    assert widget.readouts.scores["volume"] == scores


@pytest.mark.usefixtures("inline_jobs")
def test_a_ground_truth_without_a_placement_is_scored_on_the_images_voxels(qtbot, viewer, segment_widget):
    """A mask TIFF opened beside a scan shown in mm (or a mask added from an array) has napari's default scale 1: it
    says nothing of where it lies and is the mask of the image's voxels, index for index, not a mask 'elsewhere'."""
    widget = segment_widget
    truth = segmented_with_its_truth(qtbot, viewer, widget)
    scores = widget.readouts.scores["volume"]
    widget.truth.value = viewer.add_labels(truth.data, name="mask TIFF")
    assert widget.readouts is not None, widget.readout.value
    assert widget.readouts.scores["volume"] == scores


def test_readouts_never_overwrite_a_file_of_another_name_and_a_folder_is_refused(tmp_path):
    readouts = Readouts(voxels=3, physical_size=None, unit="", scores={})
    mine = tmp_path / "scores.csv"
    mine.write_text("the user's own table\n")
    written = write_readouts_csv(tmp_path / "scores.v2", readouts, "scan", "")
    assert written == tmp_path / "scores.v2.csv" and written.read_text().startswith("image,ground_truth")
    assert mine.read_text() == "the user's own table\n"
    for folder in (tmp_path, Path("/")):
        with pytest.raises(InputError, match="folder"):
            write_readouts_csv(folder, readouts, "scan", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv", "scores.v2.csv"]  # no temporary file left


@pytest.mark.parametrize("sequences", [False, True], ids=["one layer", "FLAIR, T1 and T1c layers"])
def test_a_lazy_image_is_read_in_the_worker_and_segments_like_its_array(qtbot, viewer, tiny_model_dir, sequences):
    """A dask or zarr layer holds no voxels until read: the Segment click read the whole scan on the viewer's thread
    (twice), holding the viewer for as long as a large or remote scan takes to load. Dask's synchronous scheduler
    reads each chunk in the thread that asks for it, so the reads of the click itself tell which thread read it."""
    dask, lazy_array = pytest.importorskip("dask"), pytest.importorskip("dask.array")
    readers: list[int] = []

    def read(block: np.ndarray) -> np.ndarray:
        readers.append(threading.get_ident())
        return block

    names = ["FLAIR", "T1", "T1c"] if sequences else ["lazy"]
    scans = [bright_square_scan(seed) for seed in range(len(names))]
    widget = dock(viewer, "Segment tumour")
    widget.model.value = "folder"
    widget.model_folder.value = tiny_model_dir
    masks = []
    for lazy in (True, False):
        layers = [viewer.add_image(lazy_array.from_array(scan, chunks=(1, 64, 64)).map_blocks(read, dtype=scan.dtype)
                                   if lazy else scan, name=name, contrast_limits=(0.0, 3.0), scale=(3.0, 1.0, 1.0))
                  for name, scan in zip(names, scans)]
        widget.image.value = layers[0]
        if sequences:
            widget.pre_contrast.value, widget.post_contrast.value = layers[1:]
        with dask.config.set(scheduler="synchronous"):
            readers.clear()
            widget.segment_button.clicked()
            on_click = list(readers)
            qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
        masks.append(np.asarray(widget.prediction_layer().data).copy())
        if lazy:
            assert threading.get_ident() not in on_click, "the click read the scan on the viewer's thread"
            assert readers, "the scan was never read"
        viewer.layers.clear()
    np.testing.assert_array_equal(masks[0], masks[1])


@pytest.mark.usefixtures("inline_jobs")
@pytest.mark.parametrize("sequences", [False, True], ids=["one layer", "FLAIR, T1 and T1c layers"])
def test_an_image_changed_in_place_during_a_run_is_segmented_as_it_was_when_segment_was_pressed(
        qtbot, viewer, tiny_model_dir, notes, monkeypatch, sequences):
    """The worker read the layer's array when it got to it: a script writing into it meanwhile (`layer.data[...] =`,
    which keeps the array, so the result was not dropped as one of replaced data) sent the network a scan half
    changed. The mask is that of the image as it was when Segment was pressed."""
    names = ["FLAIR", "T1", "T1c"] if sequences else ["scan"]
    layers = [viewer.add_image(bright_square_scan(seed), name=name) for seed, name in enumerate(names)]
    widget = dock(viewer, "Segment tumour")
    widget.model.value = "folder"
    widget.model_folder.value = tiny_model_dir
    widget.image.value = layers[0]
    if sequences:
        widget.pre_contrast.value, widget.post_contrast.value = layers[1:]
    run_segment(qtbot, widget)
    before = np.array(widget._probability)
    real_job = segment_module.segment_job

    def job_while_a_script_writes(*args, stop):
        for layer in layers:
            layer.data[:, :32] = 0.0
        yield from real_job(*args, stop=stop)

    monkeypatch.setattr(segment_module, "segment_job", job_while_a_script_writes)
    run_segment(qtbot, widget)
    np.testing.assert_allclose(widget._probability, before, atol=1e-6)
    assert not layers[0].data[:, :32].any() and notes["error"] == []  # the script's change is there, not segmented


def test_cancel_stops_segmenting_without_adding_a_layer(qtbot, viewer, segment_widget, monkeypatch):
    widget = segment_widget
    real_job = segment_module.segment_job

    def job_that_waits_for_cancel(*args, stop):
        yield SegmentProgress(0, 6)
        while not stop():
            time.sleep(0.01)
        yield from real_job(*args, stop=stop)

    monkeypatch.setattr(segment_module, "segment_job", job_that_waits_for_cancel)
    count = len(viewer.layers)
    widget.segment_button.clicked()
    qtbot.waitUntil(lambda: widget.cancel_button.enabled, timeout=5_000)
    widget.cancel_button.clicked()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert len(viewer.layers) == count
    assert widget.prediction_layer() is None
    assert widget.segment_button.enabled


def test_one_click_with_the_default_model_on_the_sample_matches_the_model_card(qtbot, viewer, notes):
    import json
    from pathlib import Path

    from napari_lgg_unet.engine.model import read_config

    viewer.open_sample("napari-lgg-unet", "lgg_patient")
    widget = dock(viewer, "Segment tumour")
    widget.model.value = "default"
    settings = read_config("default").postprocess
    assert (widget.cleanup.threshold.value, widget.cleanup.min_size.value, widget.cleanup.keep_largest.value) == (
        settings.threshold, settings.min_size, settings.keep_largest)
    run_segment(qtbot, widget)
    assert notes["error"] == []
    truth = viewer.layers[f"{PATIENT} mask"].data
    dice = volume_scores(viewer.layers[f"{PATIENT} tumour"].data, truth).dice
    card = json.loads((Path(__file__).resolve().parents[2] / "docs" / "default-model-test.json").read_text())
    assert dice == pytest.approx(card["patients"][PATIENT]["dice"], abs=0.01)


def _segmented_square(qtbot, viewer, model: str, **placement):
    """The Segment widget with a bright-square scan placed by `placement` segmented at a low threshold (the test model
    is unsure: a non-empty mask)."""
    widget = dock(viewer, "Segment tumour")
    widget.model.value = "folder"
    widget.model_folder.value = model
    widget.image.value = viewer.add_image(bright_square_scan(0), name="scan", **placement)
    widget.cleanup.threshold.value = 0.05
    run_segment(qtbot, widget)
    assert widget.readouts.voxels > 0 and widget.review_list.rows
    return widget


def _sizes_shown(widget) -> list[str]:
    return [widget.review_list.table.native.item(row, 2).text() for row in range(len(widget.review_list.rows))]


@pytest.mark.usefixtures("inline_jobs")
@pytest.mark.parametrize("placement", [{"scale": (3.0, 0.5, 0.5)}, {"affine": np.diag([3.0, 0.5, 0.5, 1.0])},
                                       {"scale": (1.5, 1.0, 1.0), "affine": np.diag([2.0, 0.5, 0.5, 1.0])}],
                         ids=["scale", "affine", "both"])
def test_tumour_sizes_use_the_voxel_volume_of_scale_and_affine_together(qtbot, viewer, tiny_model_dir, notes,
                                                                         placement):
    """A reader (or a script) may put the voxel size in the layer's affine and leave its scale at 1: the readouts
    then gave no size in mm^3 at all, and the review list gave each piece 1 mm^3 a voxel, where it is 0.75."""
    widget = _segmented_square(qtbot, viewer, tiny_model_dir, units=("mm", "mm", "mm"), **placement)
    readouts = widget.readouts
    assert readouts.unit == "mm^3" and readouts.physical_size == pytest.approx(readouts.voxels * 0.75)
    assert widget.readout.value.startswith(f"Tumour: {readouts.voxels} voxels = {readouts.voxels * 0.75:.6g} mm^3")
    assert [piece.size for piece in widget.review_list.rows] == pytest.approx(
        [piece.voxels * 0.75 for piece in widget.review_list.rows])
    assert _sizes_shown(widget) == [f"{size_text(piece.voxels * 0.75)} mm^3" for piece in widget.review_list.rows]
    assert notes["error"] == []


@pytest.mark.usefixtures("inline_jobs")
@pytest.mark.parametrize(("units", "mm3_per_voxel"), [(("um", "um", "um"), 0.75e-9), (("mm", "µm", "micron"), 0.75e-6),
                                                       (("nm", "cm", "m"), 0.75e-2)], ids=["µm", "mm µm", "nm cm m"])
def test_a_layer_in_other_length_units_or_a_mix_of_them_gives_its_tumour_sizes_in_mm3(
        qtbot, viewer, tiny_model_dir, notes, units, mm3_per_voxel):
    """A layer in µm gave its sizes in µm³ while the review list's pieces claimed mm³ (and showed 0 µm^3 under a
    cubic micrometre), and one whose axes mixed units gave a product of units, 'mm*µm', in no unit of volume."""
    widget = _segmented_square(qtbot, viewer, tiny_model_dir, scale=(3.0, 0.5, 0.5), units=units)
    readouts = widget.readouts
    assert readouts.unit == "mm^3" and readouts.physical_size == pytest.approx(readouts.voxels * mm3_per_voxel)
    sizes = [piece.voxels * mm3_per_voxel for piece in widget.review_list.rows]
    assert [piece.size for piece in widget.review_list.rows] == pytest.approx(sizes)
    assert _sizes_shown(widget) == [f"{size_text(size)} mm^3" for size in sizes]
    assert all(float(text.split()[0]) > 0 for text in _sizes_shown(widget))
    assert notes["error"] == []


@pytest.mark.usefixtures("inline_jobs")
@pytest.mark.parametrize("units", [None, ("inch", "mm", "mm")], ids=["pixels", "a unit of no factor"])
def test_a_layer_in_pixels_gives_its_tumour_size_in_voxels_in_the_readouts_as_in_the_review_list(
        qtbot, viewer, tiny_model_dir, notes, units):
    """napari's units are pixels unless a reader says otherwise: a scale then has no unit, and the readouts showed
    '= 0.75 x voxels' with none, beside a review list in voxels. An axis in a length unit without a factor to mm
    (inches: napari takes any pint unit) gets voxels too, rather than a volume in a made-up unit."""
    widget = _segmented_square(qtbot, viewer, tiny_model_dir, scale=(3.0, 0.5, 0.5),
                               **({} if units is None else {"units": units}))
    assert widget.readouts.physical_size is None and widget.readouts.unit == ""
    assert widget.readout.value.splitlines()[0] == f"Tumour: {widget.readouts.voxels} voxels"
    assert _sizes_shown(widget) == [f"{piece.voxels} voxels" for piece in widget.review_list.rows]
    assert notes["error"] == []


@pytest.mark.usefixtures("inline_jobs")
def test_the_tumour_layer_keeps_the_scans_geometry_for_the_writer(qtbot, viewer, tiny_model_dir, notes):
    geometry = {
        "affine": [[-1.0, 0, 0, 90.0], [0, -1.0, 0, 126.0], [0, 0, 2.5, -72.0], [0, 0, 0, 1]], "shape": [3, 64, 64],
    }
    image = viewer.add_image(
        np.random.default_rng(1).random((3, 64, 64), dtype=np.float32), name="scan", scale=(2.5, 1.0, 0.9),
        translate=(-72.0, 3.0, 4.0), units=("mm", "mm", "mm"), axis_labels=("S", "A", "R"),
        metadata={"lgg_unet_geometry": geometry, "source_note": "not copied"},
    )
    widget = dock(viewer, "Segment tumour")
    widget.model.value = "folder"
    widget.model_folder.value = tiny_model_dir
    run_segment(qtbot, widget)
    assert notes["error"] == []
    tumour = viewer.layers["scan tumour"]
    assert tumour.metadata["lgg_unet_geometry"] == geometry
    assert "source_note" not in tumour.metadata
    np.testing.assert_array_equal(tumour.scale, image.scale)
    np.testing.assert_array_equal(tumour.translate, image.translate)
    assert tumour.units == image.units and tuple(tumour.axis_labels) == ("S", "A", "R")
    # the user's layer is untouched
    assert image.metadata == {"lgg_unet_geometry": geometry, "source_note": "not copied"}
    assert widget.readouts.unit == "mm^3"


NIFTI_SHAPE = (12, 10, 8)


def _segmented_nifti(qtbot, viewer, model_dir, path, affine: np.ndarray):
    """A random NIfTI scan of NIFTI_SHAPE placed by `affine`, written to `path`, opened with our reader and segmented
    by the untrained model at a threshold that leaves its mask not empty (its probabilities are near 0.5); returns
    the image layer and the Segment widget."""
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.random.default_rng(2).random(NIFTI_SHAPE).astype(np.float32), affine), path)
    [image] = viewer.open(str(path), plugin="napari-lgg-unet")
    widget = dock(viewer, "Segment tumour")
    widget.model.value = "folder"
    widget.model_folder.value = model_dir
    widget.cleanup.threshold.value = 0.01
    run_segment(qtbot, widget)
    return image, widget


@pytest.mark.usefixtures("inline_jobs")
def test_a_sheared_nifti_opened_with_our_reader_measures_its_tumour_as_the_cli_does(qtbot, viewer, tiny_model_dir,
                                                                                    tmp_path, notes):
    """napari shows a sheared scan unsheared (our reader gives it its voxel sizes as scale): the readouts and the
    review list gave each voxel the product of its sizes, 3 % more than |det| of the file's affine, the volume the
    CLI's summary gives. A layer given another scale since is measured by that scale, as napari shows it."""
    sheared = np.array([[0.9, 0, 0.5, -20], [0, 1.1, 0, 12], [0, 0, 2.0, -30], [0, 0, 0, 1]])
    image, widget = _segmented_nifti(qtbot, viewer, tiny_model_dir, tmp_path / "scan_flair.nii.gz", sheared)
    assert notes["error"] == []
    per_voxel = abs(np.linalg.det(sheared[:3, :3]))
    readouts = widget.readouts
    assert readouts.voxels > 0 and readouts.physical_size == pytest.approx(readouts.voxels * per_voxel)
    assert [piece.size for piece in widget.review_list.rows] == pytest.approx(
        [piece.voxels * per_voxel for piece in widget.review_list.rows])
    image.scale = (2.0, 1.0, 1.0)
    assert voxel_volume(image) == pytest.approx((2.0, "mm^3"))


@pytest.mark.usefixtures("inline_jobs")
def test_a_nifti_scan_opened_with_our_reader_segments_and_saves_back_onto_its_grid(
    qtbot, viewer, tiny_model_dir, tmp_path, notes
):
    import nibabel as nib

    affine = np.array([[-0.9, 0, 0, 10], [0, 0, 3.0, -5], [0, 1.2, 0, 7], [0, 0, 0, 1]])  # permuted, flipped axes
    image, widget = _segmented_nifti(qtbot, viewer, tiny_model_dir, tmp_path / "scan_flair.nii.gz", affine)
    assert notes["error"] == []
    tumour = widget.prediction_layer()
    assert tumour.metadata["lgg_unet_geometry"] == image.metadata["lgg_unet_geometry"]
    tumour.save(str(tmp_path / "mask.nii.gz"), plugin="napari-lgg-unet")
    written = nib.load(tmp_path / "mask.nii.gz")
    assert written.shape == NIFTI_SHAPE
    np.testing.assert_array_equal(written.affine, nib.load(tmp_path / "scan_flair.nii.gz").affine)
    assert np.asanyarray(written.dataobj).any()


@pytest.mark.usefixtures("inline_jobs")
def test_a_nifti_without_orientation_opens_with_a_warning_notification_and_its_mask_saves_without_one_too(
    qtbot, viewer, tiny_model_dir, tmp_path, notes
):
    """qform_code and sform_code 0: napari shows the reader's warning (the hooks `napari.run` installs turn Python
    warnings into notifications), and the saved mask keeps codes 0, so another tool reads mask and scan alike."""
    import nibabel as nib
    from napari.utils.notifications import NotificationSeverity, notification_manager

    image = nib.Nifti1Image(np.random.default_rng(4).random((12, 10, 8)).astype(np.float32), None)
    image.set_qform(None, code=0)
    image.set_sform(None, code=0)
    nib.save(image, tmp_path / "old.nii.gz")
    with notification_manager:
        viewer.open(str(tmp_path / "old.nii.gz"), plugin="napari-lgg-unet")
    warned = [str(n.message) for n in notification_manager.records if n.severity == NotificationSeverity.WARNING]
    assert [m for m in warned if "has no orientation" in m] == [
        f"{tmp_path / 'old.nii.gz'} has no orientation (its qform_code and sform_code are 0): it is shown and "
        "segmented as if its voxel axes ran right to left, posterior to anterior and inferior to superior "
        "(nibabel's reading; ITK-based viewers read it otherwise), so check that the brain looks upright; its mask "
        "keeps the scan's voxel grid and header, codes 0 included, so any tool overlays the two alike"]
    widget = dock(viewer, "Segment tumour")
    widget.model.value = "folder"
    widget.model_folder.value = tiny_model_dir
    run_segment(qtbot, widget)
    assert notes["error"] == []
    widget.prediction_layer().save(str(tmp_path / "old_mask.nii.gz"), plugin="napari-lgg-unet")
    written = nib.load(tmp_path / "old_mask.nii.gz")
    assert (int(written.header["qform_code"]), int(written.header["sform_code"])) == (0, 0)
    np.testing.assert_array_equal(written.affine, nib.load(tmp_path / "old.nii.gz").affine)


def test_a_case_whose_labels_cannot_be_used_opens_without_them_with_a_warning_notification(viewer, tmp_path):
    """A 0.4 voxel in A_seg.nii.gz (labels resampled linearly) refused the whole case to File > Open; no labels layer
    is added, so `view --segment` has no ground truth to score against either."""
    import nibabel as nib
    from napari.layers import Image
    from napari.utils.notifications import NotificationSeverity, notification_manager

    case = tmp_path / "A"
    case.mkdir()
    nib.save(nib.Nifti1Image(np.random.default_rng(5).random((12, 10, 8)).astype(np.float32), np.eye(4)),
             case / "A_flair.nii.gz")
    labels = np.zeros((12, 10, 8), np.float32)
    labels[4:8, 4:8, 2:4] = 1.0
    labels[4, 4, 2] = 0.4
    nib.save(nib.Nifti1Image(labels, np.eye(4)), case / "A_seg.nii.gz")
    with notification_manager:
        viewer.open(str(case), plugin="napari-lgg-unet")
    warned = [str(n.message) for n in notification_manager.records if n.severity == NotificationSeverity.WARNING]
    assert [m for m in warned if str(case) in m] == [
        f"A is read without its manual mask (segmenting and viewing need none): the labels {case / 'A_seg.nii.gz'} "
        "holds fractional values (such as 0.4), as a probability map or a mask resampled with linear interpolation "
        "has; a label map holds whole numbers (0 background, above 0 tumour): resample it with nearest neighbour, or "
        "threshold it yourself"]
    assert [type(layer) for layer in viewer.layers] == [Image]


@pytest.mark.usefixtures("inline_jobs")
def test_the_tumour_layer_of_a_tiff_scan_is_never_saved_onto_the_scan_or_its_manual_mask(
    qtbot, viewer, tiny_model_dir, tmp_path, notes
):
    from napari_lgg_unet.engine.errors import InputError

    scan, manual = tmp_path / f"{PATIENT}_image.tif", tmp_path / f"{PATIENT}_mask.tif"
    tifffile.imwrite(scan, np.random.default_rng(3).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8))
    tifffile.imwrite(manual, np.full((3, 64, 64), 255, np.uint8))
    files = {p: p.read_bytes() for p in (scan, manual)}
    [image] = viewer.open(str(scan), plugin="napari-lgg-unet")
    widget = dock(viewer, "Segment tumour")
    widget.model.value = "folder"
    widget.model_folder.value = tiny_model_dir
    run_segment(qtbot, widget)
    assert notes["error"] == []
    tumour = widget.prediction_layer()
    for target in (scan, manual):
        with pytest.raises(InputError, match="the scan this layer comes from"):
            tumour.save(str(target), plugin="napari-lgg-unet")
    assert {p: p.read_bytes() for p in (scan, manual)} == files


def test_a_cache_that_cannot_remember_the_auto_precision_is_one_warning_notification_and_segmenting_goes_on(
    qtbot, segment_widget, notes, monkeypatch, tmp_path
):
    """A folder named precision.json: the engine's warning comes from the job's thread, once per session."""
    from napari_lgg_unet.engine import precision

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "cache" / "napari-lgg-unet" / "precision.json").mkdir(parents=True)
    monkeypatch.setattr(precision, "_fastest", lambda candidates, stop=None: candidates[0])
    precision._CHOSEN.clear()
    segment_widget.precision.value = "auto"
    try:
        for _ in range(2):
            run_segment(qtbot, segment_widget)
    finally:
        precision._CHOSEN.clear()
    assert [note.split(" (")[0] for note in notes["warning"]] == ["the 'auto' precision cannot be remembered"]
    assert notes["error"] == [] and segment_widget.prediction_layer() is not None
    assert segment_widget.device_note.value.endswith(f"; auto: measured on {datetime.date.today().isoformat()}")


@pytest.mark.usefixtures("inline_jobs")
def test_a_slider_step_beside_a_ground_truth_that_cannot_be_scored_checks_nothing_again(qtbot, viewer,
                                                                                        segment_widget, monkeypatch):
    """The refusal does not depend on the slice: checking the ground truth against the prediction on every step
    (both masks over every voxel) made the slider lag on a large scan, the work a step was meant to be spared."""
    widget = segment_widget
    truth = segmented_with_its_truth(qtbot, viewer, widget)
    widget.truth.value = viewer.add_labels(truth.data[:3], name="another scan's mask", scale=truth.scale)
    refusal = widget.readout.value
    assert refusal.startswith("'another scan's mask' has shape")
    checked = []
    on_grid = segment_module._truth_on_grid
    monkeypatch.setattr(segment_module, "_truth_on_grid", lambda *layers: (checked.append(1), on_grid(*layers))[1])
    for z in (4, 1, 5):
        viewer.dims.set_current_step(0, z)
    assert checked == [] and widget.readouts is None and widget.readout.value == refusal
    widget.truth.value = truth  # the right ground truth is scored, and its slices follow the slider again
    viewer.dims.set_current_step(0, 2)
    prediction = widget.prediction_layer().data
    assert widget.readouts.scores["slice 2"] == volume_scores(prediction[2], truth.data[2]).to_dict()
