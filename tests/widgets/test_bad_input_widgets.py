"""The widget part of the bad-input catalogue (see tests/test_bad_input_catalogue.py): every bad image, model folder
or layer choice ends as error notifications, the widget is ready again, and no layer is added or changed.

Cases already covered in test_widget_errors.py (no image layer, mismatched or empty labels, a malformed config while
choosing a model) are not repeated here.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from bad_inputs import BAD_IMAGES, BAD_MODELS, make_bad_model
from napari_lgg_unet.engine.run_folder import RunFolder
from napari_lgg_unet.widgets.session_models import SCRATCH

from widget_helpers import assert_unchanged, dock, snapshot

pytestmark = pytest.mark.usefixtures("inline_jobs")  # these test what the widgets refuse, not threads


def _press(widget, button, qtbot) -> None:
    """Press `button` and wait until the job it may have started has ended."""
    button.clicked()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)


def _refused(notes, phrase: str) -> None:
    assert notes["error"], "no error notification"
    assert any(phrase in message for message in notes["error"]), notes["error"]
    assert all("\n" not in message for message in notes["error"])


@pytest.fixture
def segment(viewer, tiny_model_dir):
    widget = dock(viewer, "Segment tumour")
    widget.model.value = "folder"
    widget.model_folder.value = tiny_model_dir
    return widget


@pytest.fixture
def train(viewer, tmp_path):
    widget = dock(viewer, "Train U-Net")
    widget.settings.image_size.value, widget.settings.batch_size.value, widget.settings.epochs.value = 64, 2, 1
    widget.output.value = tmp_path / "models"
    widget.steps_per_epoch = 1
    return widget


@pytest.mark.parametrize("name", BAD_IMAGES)
def test_segment_refuses_a_bad_image(name, viewer, segment, notes, qtbot):
    make, phrase = BAD_IMAGES[name]
    segment.image.value = viewer.add_image(make(), name="scan")
    before = snapshot(viewer)
    _press(segment, segment.segment_button, qtbot)
    _refused(notes, phrase)
    assert_unchanged(before, snapshot(viewer))
    assert segment.segment_button.enabled


@pytest.mark.parametrize("name", BAD_IMAGES)
def test_training_refuses_a_bad_image_and_writes_no_model(name, viewer, train, notes, qtbot, tmp_path):
    make, phrase = BAD_IMAGES[name]
    image = viewer.add_image(make(), name="scan")
    labels = viewer.add_labels(
        np.ones(image.data.shape[:-1] if image.rgb else image.data.shape, np.uint8), name="tumour"
    )
    train.pairs[0].image_layer.value, train.pairs[0].labels_layer.value = image, labels
    before = snapshot(viewer)
    _press(train, train.train_button, qtbot)
    _refused(notes, phrase)
    assert_unchanged(before, snapshot(viewer))
    assert train.train_button.text == "Train"
    assert not any(RunFolder(run).holds_model() for run in (tmp_path / "models").glob("run-*"))


@pytest.mark.parametrize("name", BAD_MODELS)
def test_segment_refuses_a_bad_model_folder(name, viewer, segment, notes, qtbot, tiny_model_dir, tmp_path):
    """Refused when picked (its config and the header of its weights are read then), or else by Segment (a missing
    folder, or weights read in full); either way the picker no longer shows it."""
    _, phrase, _ = BAD_MODELS[name]
    viewer.add_image(np.random.default_rng(0).random((2, 32, 32), dtype=np.float32), name="scan")
    before = snapshot(viewer)
    bad = make_bad_model(name, tiny_model_dir, tmp_path)
    segment.model_folder.value = bad
    if not notes["error"]:
        _press(segment, segment.segment_button, qtbot)
    _refused(notes, phrase)
    assert_unchanged(before, snapshot(viewer))
    assert segment.segment_button.enabled
    assert segment.model_folder.value != bad or name == "missing folder"  # left to Segment: it may be made yet


# a missing folder may be made yet; the weights' tensors are read only when the model is used
LEFT_TO_TRAIN = {"missing folder", "weights of another decoder", "weights lacking a tensor", "whole-number weights",
                 "NaN weights", "weights beyond float32"}


@pytest.mark.parametrize("name", BAD_MODELS)
def test_training_refuses_a_bad_model_folder_to_start_from_and_writes_no_model(name, viewer, train, notes, qtbot,
                                                                                tiny_model_dir, tmp_path):
    """Refused when picked if its config or the header of its weights cannot be used (as Segment's picker does),
    the picker back at Scratch; else (a missing folder, or weights read in full) by Train."""
    _, phrase, _ = BAD_MODELS[name]
    image = viewer.add_image(np.random.default_rng(0).random((2, 32, 32), dtype=np.float32), name="scan")
    train.pairs[0].image_layer.value = image
    train.pairs[0].labels_layer.value = viewer.add_labels(np.ones((2, 32, 32), np.uint8), name="tumour")
    before = snapshot(viewer)
    bad = make_bad_model(name, tiny_model_dir, tmp_path)
    train.start_from.value, train.start_folder.value = "folder", bad
    refused_when_picked = bool(notes["error"])
    assert refused_when_picked == (name not in LEFT_TO_TRAIN)
    if refused_when_picked:
        assert train.start_from.value == SCRATCH
    else:
        _press(train, train.train_button, qtbot)
    _refused(notes, phrase)
    assert_unchanged(before, snapshot(viewer))
    assert train.train_button.text == "Train"
    assert not any(RunFolder(run).holds_model() for run in (tmp_path / "models").glob("run-*"))


def _on_another_grid(viewer) -> tuple:
    flair = viewer.add_image(np.zeros((3, 32, 32), np.float32), name="FLAIR")
    return flair, viewer.add_image(np.zeros((3, 32, 40), np.float32), name="T1"), "share one grid"


def _colour_layer_as_a_sequence(viewer) -> tuple:
    flair = viewer.add_image(np.zeros((3, 32, 32), np.float32), name="FLAIR")
    return flair, viewer.add_image(np.zeros((3, 32, 32, 3), np.uint8), name="T1", rgb=True), "colour channels"


@pytest.mark.parametrize(
    "layers", [_on_another_grid, _colour_layer_as_a_sequence], ids=["on another grid", "in colour"]
)
def test_segment_refuses_a_t1_layer_that_cannot_join_the_flair(layers, viewer, segment, notes, qtbot):
    flair, t1, phrase = layers(viewer)
    segment.image.value, segment.pre_contrast.value = flair, t1
    before = snapshot(viewer)
    _press(segment, segment.segment_button, qtbot)
    _refused(notes, phrase)
    assert_unchanged(before, snapshot(viewer))


def test_training_refuses_a_missing_training_folder(viewer, train, notes, qtbot, tmp_path):
    train.folder.value = tmp_path / "absent"
    _press(train, train.train_button, qtbot)
    _refused(notes, "training folder not found")
    assert not (tmp_path / "models").exists()


def _kaggle_root(tmp_path, mask_shapes: list[tuple[int, ...]], stray: bool = False):
    """A Kaggle root with one patient P whose mask slices have `mask_shapes` (its slices are 32 x 32 RGB)."""
    import nibabel as nib
    import tifffile

    patient = tmp_path / "data" / "P"
    patient.mkdir(parents=True)
    for number, shape in enumerate(mask_shapes, start=1):
        tifffile.imwrite(patient / f"P_{number}.tif", np.zeros((32, 32, 3), np.uint8))
        tifffile.imwrite(patient / f"P_{number}_mask.tif", np.zeros(shape, np.uint8))
    if stray:
        nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.float32), np.eye(4)), tmp_path / "data" / "stray.nii.gz")
    return patient.parent


@pytest.mark.parametrize("folder, phrase", [
    (lambda tmp_path: _kaggle_root(tmp_path, [(32, 32), (32, 40)]), "mask P_2_mask.tif has shape (32, 40)"),
    (lambda tmp_path: _kaggle_root(tmp_path, [(32, 32)] * 2, stray=True), "holds scans both loose (stray)"),
], ids=["a mask slice of another shape", "a stray NIfTI beside the patients"])
def test_training_refuses_a_training_folder_it_cannot_trust(folder, phrase, viewer, train, notes, qtbot, tmp_path):
    train.folder.value = folder(tmp_path)
    _press(train, train.train_button, qtbot)
    _refused(notes, phrase)
    assert not (tmp_path / "models").exists()


def test_training_refuses_an_output_folder_in_the_packages_weights_folder(viewer, train, notes, qtbot, tmp_path,
                                                                           tiny_model_dir, monkeypatch):
    default = tmp_path / "weights" / "lgg-unet-default"
    shutil.copytree(tiny_model_dir, default)  # stands in for the installed default model, which must not be risked
    monkeypatch.setattr("napari_lgg_unet.engine.model.default_model_path", lambda: default)
    image = viewer.add_image(np.zeros((2, 32, 32), np.float32), name="scan")
    labels = viewer.add_labels(np.ones((2, 32, 32), np.uint8), name="tumour")
    train.pairs[0].image_layer.value, train.pairs[0].labels_layer.value = image, labels
    train.output.value = default  # Browse... lands on the model the widget starts from
    before = sorted(default.rglob("*"))
    _press(train, train.train_button, qtbot)
    _refused(notes, "default model is part of the installed package")
    assert sorted(default.rglob("*")) == before
    assert train.train_button.text == "Train" and train.train_button.enabled
