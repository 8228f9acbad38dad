"""Every error a user can cause is one notification, the widgets keep working and no layer changes.

Bad images and bad model folders are catalogued in test_bad_input_widgets.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from qtpy.QtCore import Qt

from bad_inputs import make_bad_model, model_copy
from napari_lgg_unet.engine.errors import InputError
from napari_lgg_unet.engine.postprocess import PostprocessConfig
from napari_lgg_unet.widgets.session_models import SCRATCH

from widget_helpers import assert_unchanged, dock, follow_placement_fix, snapshot, wait_for_stop


@pytest.fixture
def widgets(viewer):
    return dock(viewer, "Segment tumour"), dock(viewer, "Train U-Net")


def test_segment_without_an_image_layer_explains_what_to_do(viewer, widgets, notes):
    segment, _ = widgets
    segment.segment_button.clicked()
    assert "no image layer" in notes["error"][0]
    assert not segment.running and segment.segment_button.enabled


def malformed_configs(valid: dict) -> dict[str, str]:
    """config.json texts a user may point the widget at: unreadable, or with values the widget cannot show."""

    def changed(**postprocess) -> str:
        return json.dumps({**valid, "postprocess": {**valid["postprocess"], **postprocess}})

    return {
        "not JSON": "{not json",
        "nested too deeply": "[" * 100_000 + "]" * 100_000,
        "threshold as text": changed(threshold="0.5"),
        "threshold the slider cannot show": changed(threshold=0.995),
        "negative speck size": changed(min_size=-1),
    }


CALIBRATED = {"threshold": 0.35, "min_size": 12, "keep_largest": True, "min_confidence": 0.8}


def test_choosing_a_model_folder_with_a_malformed_config_is_a_notification_and_keeps_the_model_before(
    viewer, widgets, notes, tmp_path, tiny_model_dir
):
    segment, _ = widgets
    viewer.add_image(np.zeros((2, 32, 32), np.float32), name="scan")
    before = snapshot(viewer)
    valid = json.loads((tiny_model_dir / "config.json").read_text())
    calibrated = model_copy(tiny_model_dir, tmp_path / "calibrated", "postprocess", value=CALIBRATED)
    segment.model.value = "folder"
    segment.model_folder.value = calibrated  # a good model: every setting is adopted
    assert segment.cleanup.config() == PostprocessConfig(**CALIBRATED)
    assert notes["error"] == []
    for number, (case, text) in enumerate(malformed_configs(valid).items()):
        folder = tmp_path / f"model-{number}"
        folder.mkdir()
        (folder / "config.json").write_text(text)
        segment.model_folder.value = folder
        assert len(notes["error"]) == number + 1, case
        assert "\n" not in notes["error"][-1], case
        assert notes["error"][-1].endswith(f"; the model is the folder {calibrated}"), case
        assert segment.model_folder.value == calibrated, case  # the picker is back at the model whose settings show
        assert segment.cleanup.config() == PostprocessConfig(**CALIBRATED), case
    assert_unchanged(before, snapshot(viewer))


def test_a_model_folder_typed_is_taken_when_the_typing_ends(viewer, widgets, notes, qtbot, tmp_path, tiny_model_dir):
    """Taken at every keystroke, the folders on the way to the one meant ('/', '/tmp') were refused and the field
    set back to the model before, under the user's typing."""
    segment, _ = widgets
    calibrated = model_copy(tiny_model_dir, tmp_path / "calibrated", "postprocess", value=CALIBRATED)
    segment.model.value, segment.model_folder.value = "folder", calibrated
    field = segment.model_folder.line_edit.native
    field.selectAll()
    qtbot.keyClicks(field, str(tiny_model_dir))
    assert notes["error"] == [] and field.text() == str(tiny_model_dir)
    assert segment.cleanup.config() == PostprocessConfig(**CALIBRATED)
    qtbot.keyClick(field, Qt.Key.Key_Return)
    assert notes["error"] == [] and segment.cleanup.config() == PostprocessConfig()
    field.selectAll()
    qtbot.keyClicks(field, str(tmp_path))
    qtbot.keyClick(field, Qt.Key.Key_Return)
    assert notes["error"] == [f"{tmp_path} is not a model folder: it has no config.json; the model is the folder "
                              f"{tiny_model_dir}"]
    assert field.text() == str(tiny_model_dir)


def test_a_model_to_start_training_from_is_checked_when_picked_and_a_typed_one_when_the_typing_ends(
    viewer, widgets, notes, qtbot, tmp_path, tiny_model_dir
):
    """Train's Start from picker checks a model as Segment's Model picker does (`common.ModelPicker`): a folder that
    cannot be used was kept until Train was pressed, and refused only once the training worker had started."""
    _, train = widgets
    no_weights = make_bad_model("no weights", tiny_model_dir, tmp_path / "no weights")
    train.start_from.value = "folder"  # no folder chosen yet: nothing to check
    train.start_folder.value = no_weights
    assert notes["error"] == [f"{no_weights} has a config but no model.safetensors; the model is Scratch (untrained)"]
    assert train.start_from.value == SCRATCH and train.start_folder.native.isHidden()
    train.start_from.value, train.start_folder.value = "folder", tiny_model_dir
    train.start_folder.value = no_weights
    assert notes["error"][1:] == [f"{no_weights} has a config but no model.safetensors; the model is the folder "
                                  f"{tiny_model_dir}"]
    assert train.start_folder.value == tiny_model_dir
    field = train.start_folder.line_edit.native
    field.selectAll()
    qtbot.keyClicks(field, str(tmp_path))
    assert len(notes["error"]) == 2 and field.text() == str(tmp_path)  # the folders on the way are not refused
    qtbot.keyClick(field, Qt.Key.Key_Return)
    assert notes["error"][2:] == [f"{tmp_path} is not a model folder: it has no config.json; the model is the folder "
                                  f"{tiny_model_dir}"]
    assert field.text() == str(tiny_model_dir) and train.train_config().init == str(tiny_model_dir)


@pytest.mark.usefixtures("inline_jobs")
def test_a_model_that_cannot_be_loaded_is_not_left_in_the_picker(viewer, widgets, notes, tmp_path, tiny_model_dir):
    """The picker kept a model folder that failed, over the settings of another model, and each Segment failed on it
    again: it goes back to the model whose settings the controls show, or, when the weights failed to load, to the
    model of the segmentation on screen."""
    segment, _ = widgets
    viewer.add_image(np.random.default_rng(0).random((2, 64, 64), dtype=np.float32), name="scan")
    calibrated = model_copy(tiny_model_dir, tmp_path / "calibrated", "postprocess", value=CALIBRATED)
    segment.model.value, segment.model_folder.value = "folder", calibrated
    segment.segment_button.clicked()
    assert notes["error"] == [] and segment.prediction_layer() is not None
    segment.model_folder.value = make_bad_model("no weights", tiny_model_dir, tmp_path / "no weights")
    assert len(notes["error"]) == 1 and "has a config but no model.safetensors" in notes["error"][0]
    assert segment.model_folder.value == calibrated
    assert segment.cleanup.config() == PostprocessConfig(**CALIBRATED)
    other_network = make_bad_model("weights of another decoder", tiny_model_dir, tmp_path / "other network")
    segment.model_folder.value = other_network  # its config.json is read at once, its weights by Segment
    assert len(notes["error"]) == 1 and segment.cleanup.config() == PostprocessConfig()
    segment.segment_button.clicked()
    assert len(notes["error"]) == 2 and "does not match its config.json" in notes["error"][1]
    assert notes["info"][-1] == f"the model picked cannot be used; the model is the folder {calibrated}"
    assert segment.model_folder.value == calibrated
    assert segment.cleanup.config() == PostprocessConfig(**CALIBRATED)
    viewer.layers.remove(segment.prediction_layer())
    segment.segment_button.clicked()  # segments with the model the picker shows
    assert len(notes["error"]) == 2 and segment.prediction_layer() is not None


def test_default_model_absence_is_a_notification_not_a_crash(viewer, widgets, notes, qtbot, monkeypatch, tmp_path):
    from napari_lgg_unet.engine import model

    monkeypatch.setattr(model, "default_model_path", lambda: tmp_path / "not-installed")
    segment, _ = widgets
    viewer.add_image(np.zeros((32, 32), np.float32), name="scan")
    segment.model.value = "default"
    segment.segment_button.clicked()
    qtbot.waitUntil(lambda: not segment.running, timeout=30_000)
    assert "default model is not installed" in notes["error"][-1]


def test_training_refuses_mismatched_or_empty_labels_and_warns_about_merged_values(viewer, widgets, notes):
    _, train = widgets
    viewer.add_image(np.zeros((4, 32, 32), np.float32), name="scan")
    labels = viewer.add_labels(np.zeros((4, 16, 16), np.uint8), name="small labels")
    row = train.pairs[0]
    row.image_layer.value, row.labels_layer.value = viewer.layers["scan"], labels
    before = snapshot(viewer)
    train.train_button.clicked()
    assert "shape" in notes["error"][-1]
    empty = viewer.add_labels(np.zeros((4, 32, 32), np.uint8), name="empty labels")
    row.labels_layer.value = empty
    before = snapshot(viewer)
    train.train_button.clicked()
    assert "empty" in notes["error"][-1] and "nothing to learn" in notes["error"][-1]
    assert_unchanged(before, snapshot(viewer))
    several = np.zeros((4, 32, 32), np.uint8)
    several[0, :4, :4], several[1, :4, :4] = 1, 2
    row.labels_layer.value = viewer.add_labels(several, name="two values")
    pairs = train.training_pairs()
    assert "merged" in notes["warning"][-1]
    assert pairs[0].mask().dtype == bool and pairs[0].mask().sum() == 32
    assert (viewer.layers["two values"].data == several).all()
    assert not train.running


def test_training_refuses_labels_painted_below_0_which_read_as_no_tumour(viewer, widgets, notes, tmp_path):
    """Labels below 0 counted as no tumour: painted with -1 they were refused as empty ("nothing to learn"), and
    beside labels above 0 they trained as background without a word. Refused as the engine refuses them in a file."""
    _, train = widgets
    train.output.value = tmp_path / "models"
    image = viewer.add_image(np.zeros((4, 32, 32), np.float32), name="scan")
    labels = np.zeros((4, 32, 32), np.int8)
    labels[1, 8:16, 8:16] = -1
    negative = viewer.add_labels(labels.copy(), name="painted -1")
    labels[2, 8:16, 8:16] = 1
    both = viewer.add_labels(labels, name="-1 and 1")
    row = train.pairs[0]
    row.image_layer.value, row.labels_layer.value = image, negative
    before = snapshot(viewer)
    train.train_button.clicked()
    assert notes["error"][-1].startswith("'painted -1' holds values below 0 (such as -1)")
    row.labels_layer.value = both
    with pytest.raises(InputError, match="'-1 and 1' holds values below 0"):
        train.training_pairs()
    assert_unchanged(before, snapshot(viewer))
    assert not train.running


PYRAMID_REFUSED = ("'pyramid' is a multiscale labels layer ({shape} at full resolution), and multiscale layers are "
                   "refused, at any level: open its full-resolution level as one layer")


def test_training_refuses_multiscale_labels_as_such_not_for_the_shape_of_their_coarsest_level(viewer, widgets, notes):
    """A multiscale layer's data as an array is its coarsest level: a pyramid of labels painted on the image's grid
    was refused as having "shape (4, 16, 16)", a shape the user never made, with advice to pick other labels."""
    _, train = widgets
    painted = np.zeros((4, 32, 32), np.uint8)
    painted[1, 2:6, 3:9] = 1
    row = train.pairs[0]
    row.image_layer.value = viewer.add_image(np.zeros((4, 32, 32), np.float32), name="scan")
    row.labels_layer.value = viewer.add_labels([painted, painted[:, ::2, ::2]], name="pyramid", multiscale=True)
    before = snapshot(viewer)
    train.train_button.clicked()
    assert notes["error"] == [PYRAMID_REFUSED.format(shape="4 x 32 x 32")]
    assert_unchanged(before, snapshot(viewer))
    assert not train.running and train.train_button.enabled


def test_training_refuses_labels_of_the_images_shape_shown_elsewhere_and_takes_them_on_its_voxels(
        viewer, widgets, notes):
    """Labels moved or scaled away from their image would be trained voxel by voxel on another place's anatomy;
    labels stored reversed but shown on the image's voxels are the image's labels."""
    _, train = widgets
    image = viewer.add_image(np.zeros((4, 32, 32), np.float32), name="scan", scale=(3.0, 1.0, 1.0))
    painted = np.zeros((4, 32, 32), np.uint8)
    painted[1, 2:6, 3:9] = 1
    row = train.pairs[0]
    row.image_layer.value = image
    elsewhere = {"moved labels": {"scale": (3.0, 1.0, 1.0), "translate": (0.0, 0.0, 20.0)},
                 "scaled labels": {"scale": (3.0, 1.5, 1.5)}}
    for name, placement in elsewhere.items():
        row.labels_layer.value = viewer.add_labels(painted, name=name, **placement)
        before = snapshot(viewer)
        train.train_button.clicked()
        assert f"'{name}' has the shape of 'scan' but lies elsewhere in the viewer" in notes["error"][-1]
        assert_unchanged(before, snapshot(viewer))
        assert not train.running and train.train_button.enabled
    assert len(notes["error"]) == 2
    reversed_labels = np.ascontiguousarray(painted[:, ::-1, ::-1])
    row.labels_layer.value = viewer.add_labels(reversed_labels, name="reversed", scale=(3.0, -1.0, -1.0),
                                               translate=(0.0, 31.0, 31.0))
    [pair] = train.training_pairs()
    np.testing.assert_array_equal(pair.mask(), painted > 0)


def test_labels_refused_as_shown_elsewhere_are_told_how_to_take_the_images_placement_which_then_trains(
        viewer, widgets, notes):
    """The right labels placed wrong (moved by a script, read by another plugin) were only told to pick others."""
    _, train = widgets
    image = viewer.add_image(np.zeros((4, 32, 32), np.float32), name="scan", scale=(3.0, 0.9, 0.9),
                             translate=(-6.0, -100.0, 80.0))
    painted = np.zeros((4, 32, 32), np.uint8)
    painted[1, 2:6, 3:9] = 1
    labels = viewer.add_labels(painted, name="its mask", scale=(3.0, 0.9, 0.9))
    row = train.pairs[0]
    row.image_layer.value, row.labels_layer.value = image, labels
    train.train_button.clicked()
    assert "'its mask' has the shape of 'scan' but lies elsewhere in the viewer" in notes["error"][-1]
    follow_placement_fix(viewer, notes["error"][-1], labels, image)
    [pair] = train.training_pairs()
    np.testing.assert_array_equal(pair.mask(), painted > 0)


def test_training_takes_labels_without_a_placement_on_the_voxels_of_a_scan_shown_in_mm(viewer, widgets, notes):
    """A mask TIFF opened beside a NIfTI scan (or labels added from an array) has napari's default scale 1: it says
    nothing of where it lies and is trained on the scan's voxels, index for index. Beside a scan shown reversed,
    where index and view disagree, it is measured as shown, hence refused."""
    _, train = widgets
    painted = np.zeros((4, 32, 32), np.uint8)
    painted[1, 2:6, 3:9] = 1
    image = viewer.add_image(np.zeros((4, 32, 32), np.float32), name="scan", scale=(3.0, 0.9, 0.9),
                             translate=(-6.0, -100.0, 80.0))
    labels = viewer.add_labels(painted, name="mask TIFF")
    row = train.pairs[0]
    row.image_layer.value, row.labels_layer.value = image, labels
    [pair] = train.training_pairs()
    np.testing.assert_array_equal(pair.mask(), painted > 0)
    shown_reversed = viewer.add_image(np.zeros((4, 32, 32), np.float32), name="reversed scan",
                                      scale=(3.0, -0.9, 0.9), translate=(0.0, 27.9, 0.0))
    row.image_layer.value, row.labels_layer.value = shown_reversed, labels
    before = snapshot(viewer)
    train.train_button.clicked()
    assert "'mask TIFF' has the shape of 'reversed scan' but lies elsewhere in the viewer" in notes["error"][-1]
    assert_unchanged(before, snapshot(viewer))
    assert not train.running and train.train_button.enabled


def test_pressing_train_while_training_runs_is_refused(viewer, widgets, notes, qtbot):
    _, train = widgets
    train.job.start(wait_for_stop, on_item=lambda _: None)
    train.train()
    assert "already running" in notes["warning"][-1]
    train.job.stop()
    qtbot.waitUntil(lambda: not train.running, timeout=10_000)


def test_out_of_memory_in_a_worker_becomes_the_advice(notes):
    from napari_lgg_unet.engine.device import OOM_ADVICE
    from napari_lgg_unet.widgets import notify

    notify.report_error(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    notify.report_error(ValueError("something odd\nwith a long traceback"))
    assert notes["error"] == [OOM_ADVICE, "ValueError: something odd"]


def test_labels_with_several_values_as_ground_truth_are_merged_with_a_warning(viewer, widgets, notes):
    segment, _ = widgets
    labels = viewer.add_labels(np.array([[0, 1], [2, 3]], np.uint8), name="multi")
    segment.truth.value = labels
    assert "several label values" in notes["warning"][-1]
    assert (labels.data == [[0, 1], [2, 3]]).all()
    json.dumps(notes)  # notifications are plain text


def test_a_multiscale_ground_truth_is_refused_as_such_naming_its_full_resolution_shape(qtbot, viewer, widgets, notes,
                                                                                     tiny_model_dir):
    """Segment's readouts took a pyramid's coarsest level: a ground truth painted on the image's grid was refused as
    having "shape (4, 16, 16)", a shape the user never made, with advice to pick the ground truth of this image."""
    segment, _ = widgets
    viewer.add_image(np.random.default_rng(0).random((4, 32, 32), dtype=np.float32), name="scan")
    segment.model.value = "folder"
    segment.model_folder.value = tiny_model_dir
    segment.segment_button.clicked()
    qtbot.waitUntil(lambda: not segment.running, timeout=60_000)
    painted = np.zeros((4, 32, 32), np.uint8)
    painted[1, 2:6, 3:9] = 1
    pyramid = viewer.add_labels([painted, painted[:, ::2, ::2]], name="pyramid", multiscale=True)
    before = snapshot(viewer)
    segment.truth.value = pyramid
    refusal = PYRAMID_REFUSED.format(shape="4 x 32 x 32")
    assert notes["error"] == [refusal] and segment.readout.value == refusal
    assert_unchanged(before, snapshot(viewer))
    segment.truth.value = None  # the widget goes on
    assert segment.readout.value.startswith("Tumour") and notes["error"] == [refusal]
