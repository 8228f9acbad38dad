"""Separate layers per MRI sequence (as napari-nifti, napari-itk-io or our reader open them): a FLAIR plus optional
pre- and post-contrast T1 give the model the same input as one multi-channel image; missing ones are FLAIR."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lgg_unet.engine.errors import InputError
from napari_lgg_unet.sample_data import sample_patient

from widget_helpers import assert_unchanged, dock, snapshot

SLICES = slice(8, 14)


pytestmark = pytest.mark.usefixtures("inline_jobs")  # these compare results, the threads are tested elsewhere

@pytest.fixture(scope="module")
def channels():
    """Six slices of the packaged patient, and its three channels (pre-contrast, FLAIR, post-contrast) apart."""
    (image, _, _), _ = sample_patient()
    image = image[SLICES]
    return image, [np.ascontiguousarray(image[..., c]) for c in range(3)]


def segment_and_get_probability(qtbot, widget, image, pre=None, post=None) -> np.ndarray:
    widget.image.value, widget.pre_contrast.value, widget.post_contrast.value = image, pre, post
    widget.segment_button.clicked()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    return widget._probability


def test_separate_sequence_layers_segment_exactly_like_the_multichannel_image(
    qtbot, viewer, channels, tiny_model_dir, notes
):
    image, (pre, flair, post) = channels
    rgb = viewer.add_image(image, name="rgb", rgb=True)
    layers = {name: viewer.add_image(data, name=name) for name, data in zip(("T1", "FLAIR", "T1c"), (pre, flair, post))}
    widget = dock(viewer, "Segment tumour")
    widget.model.value = "folder"
    widget.model_folder.value = tiny_model_dir

    whole = segment_and_get_probability(qtbot, widget, rgb)
    apart = segment_and_get_probability(qtbot, widget, layers["FLAIR"], layers["T1"], layers["T1c"])
    np.testing.assert_array_equal(apart, whole)
    assert viewer.layers["FLAIR tumour"].data.shape == flair.shape

    # No pre-contrast layer: FLAIR takes its place, as the dataset itself did.
    filled = viewer.add_image(np.stack([flair, flair, post], axis=-1), name="filled by hand", rgb=True)
    expected = segment_and_get_probability(qtbot, widget, filled)
    np.testing.assert_array_equal(
        segment_and_get_probability(qtbot, widget, layers["FLAIR"], None, layers["T1c"]), expected
    )
    assert notes["error"] == []


def test_a_grey_flair_layer_alone_is_a_valid_input(qtbot, viewer, channels, tiny_model_dir, notes):
    _, (_, flair, _) = channels
    layer = viewer.add_image(flair.astype(np.float64), name="FLAIR from another reader")
    widget = dock(viewer, "Segment tumour")
    widget.model.value = "folder"
    widget.model_folder.value = tiny_model_dir
    probability = segment_and_get_probability(qtbot, widget, layer)
    assert notes["error"] == []
    assert probability.shape == flair.shape
    assert viewer.layers["FLAIR from another reader tumour"].data.shape == flair.shape


def test_sequences_on_another_grid_or_with_colour_are_refused_by_both_widgets(viewer, notes):
    segment, train = dock(viewer, "Segment tumour"), dock(viewer, "Train U-Net")
    flair = viewer.add_image(np.zeros((3, 32, 32), np.float32), name="FLAIR")
    smaller = viewer.add_image(np.zeros((3, 16, 16), np.float32), name="T1 small")
    colour = viewer.add_image(np.zeros((3, 32, 32, 3), np.uint8), name="colour", rgb=True)
    labels = viewer.add_labels(np.ones((3, 32, 32), np.uint8), name="labels")
    row = train.pairs[0]
    pickers = (segment.pre_contrast, segment.post_contrast, row.pre_contrast, row.post_contrast)
    assert [picker.value for picker in pickers] == [None] * 4  # '(none)' until the user picks a sequence
    row.image_layer.value, row.labels_layer.value = flair, labels
    before = snapshot(viewer)
    for pre, post, words in ((smaller, None, "share one grid"), (None, colour, "colour channels")):
        segment.image.value, segment.pre_contrast.value, segment.post_contrast.value = flair, pre, post
        row.pre_contrast.value, row.post_contrast.value = pre, post
        segment.segment_button.clicked()
        train.train_button.clicked()
        assert all(words in message for message in notes["error"][-2:]), notes["error"]
    assert len(notes["error"]) == 4
    assert not segment.running and not train.running
    assert_unchanged(before, snapshot(viewer))


def test_a_sequence_of_the_flairs_shape_shown_elsewhere_is_refused_not_stacked(viewer, notes):
    """A T1 file of another field of view, opened beside the FLAIR file, has the FLAIR's shape but lies beside it in
    the viewer: stacked voxel by voxel, the model would read two places at once. Layers on the FLAIR's grid go,
    stored reversed included, and so does one off by less than half a voxel (each voxel's nearest neighbour), and one
    that says nothing of where it lies (napari's default placement), which lies on the FLAIR's voxels."""
    from napari_lgg_unet.widgets.sequences import deferred_input

    data = np.random.default_rng(4).random((3, 32, 32), dtype=np.float32)
    flair = viewer.add_image(data, name="FLAIR", scale=(3.0, 1.0, 1.0))
    elsewhere = {"moved 20 mm": {"scale": (3.0, 1.0, 1.0), "translate": (0.0, 0.0, 20.0)},
                 "larger voxels": {"scale": (3.0, 1.2, 1.2)}}
    for name, placement in elsewhere.items():
        with pytest.raises(InputError, match=f"'{name}' has the shape of the FLAIR 'FLAIR' but lies elsewhere"):
            deferred_input(flair, viewer.add_image(data, name=name, **placement))
    same = {"reversed": {"scale": (3.0, -1.0, -1.0), "translate": (0.0, 31.0, 31.0)},
            "a tenth of a voxel off": {"scale": (3.0, 1.0, 1.0), "translate": (0.0, 0.1, 0.0)},
            "unplaced (a TIFF: napari's default scale 1)": {}}
    for name, placement in same.items():
        stored = data[:, ::-1, ::-1] if name == "reversed" else data
        read, _ = deferred_input(flair, viewer.add_image(np.ascontiguousarray(stored), name=name, **placement))
        np.testing.assert_array_equal(read()[..., 0], data)

    segment = dock(viewer, "Segment tumour")  # the widget says so and changes nothing
    segment.image.value, segment.pre_contrast.value = flair, viewer.layers["moved 20 mm"]
    before = snapshot(viewer)
    segment.segment_button.clicked()
    assert len(notes["error"]) == 1 and "lies elsewhere" in notes["error"][0]
    assert not segment.running
    assert_unchanged(before, snapshot(viewer))


def test_training_pairs_take_a_flair_and_optional_sequences(viewer, channels, notes):
    image, (pre, flair, post) = channels
    train = dock(viewer, "Train U-Net")
    flair_layer = viewer.add_image(flair, name="FLAIR")
    pre_layer = viewer.add_image(pre, name="T1")
    labels = viewer.add_labels(np.ones(flair.shape, np.uint8), name="labels")
    row = train.pairs[0]
    row.image_layer.value, row.pre_contrast.value, row.labels_layer.value = flair_layer, pre_layer, labels
    [scan] = [pair.scan() for pair in train.training_pairs()]
    assert scan.rgb and scan.name == "FLAIR"
    np.testing.assert_array_equal(scan.image, np.stack([pre, flair, flair], axis=-1))
    assert scan.mask.shape == flair.shape
    assert notes["error"] == []


# How readers store a scan whose voxels run against the axes they show (napari-nifti 0.0.20 keeps superior, anterior
# and right as increasing indices and flips all three back with negative scales; an `affine` can do the same).
REVERSED_STORAGE = {
    "negative scale": {"scale": (-1.0, -1.0, -1.0), "translate": (5.0, 63.0, 63.0)},
    "affine": {"affine": np.array([[1.0, 0, 0, 0], [0, -1.0, 0, 63.0], [0, 0, -1.0, 63.0], [0, 0, 0, 1]])},
}


@pytest.mark.parametrize("storage", REVERSED_STORAGE, ids=list(REVERSED_STORAGE))
def test_layers_stored_reversed_by_their_reader_segment_as_napari_shows_them(
    qtbot, viewer, channels, tiny_model_dir, notes, storage
):
    _, sequences = channels
    shown = {name: viewer.add_image(data, name=name) for name, data in zip(("T1", "FLAIR", "T1c"), sequences)}
    widget = dock(viewer, "Segment tumour")
    widget.model.value = "folder"
    widget.model_folder.value = tiny_model_dir
    expected = segment_and_get_probability(qtbot, widget, shown["FLAIR"], shown["T1"], shown["T1c"])[:, ::-1, ::-1]

    stored = {name: viewer.add_image(np.ascontiguousarray(data[:, ::-1, ::-1]), name=f"stored {name}",
                                     **REVERSED_STORAGE[storage])
              for name, data in zip(("T1", "FLAIR", "T1c"), sequences)}
    probability = segment_and_get_probability(qtbot, widget, stored["FLAIR"], stored["T1"], stored["T1c"])
    np.testing.assert_array_equal(probability, expected)
    tumour = widget.prediction_layer()
    np.testing.assert_array_equal(tumour.data, (expected >= widget.cleanup.threshold.value).astype(np.uint8))
    corner = np.array([5.0, 10.0, 20.0])  # the tumour layer lies on its scan in the viewer
    np.testing.assert_allclose(tumour.data_to_world(corner), stored["FLAIR"].data_to_world(corner))

    # The same reversed voxels shown unflipped are another picture to the model (so the check above can fail).
    plain = viewer.add_image(np.ascontiguousarray(sequences[1][:, ::-1, ::-1]), name="reversed, shown reversed")
    assert not np.array_equal(segment_and_get_probability(qtbot, widget, plain), expected)
    assert notes["error"] == []


def test_training_pairs_take_layers_as_napari_shows_them(viewer, channels, notes):
    image, (pre, flair, post) = channels
    train = dock(viewer, "Train U-Net")
    storage = REVERSED_STORAGE["negative scale"]
    flair_layer = viewer.add_image(np.ascontiguousarray(flair[:, ::-1, ::-1]), name="FLAIR", **storage)
    mask = np.zeros(flair.shape, np.uint8)
    mask[:, :10, :20] = 1
    labels = viewer.add_labels(np.ascontiguousarray(mask[:, ::-1, ::-1]), name="labels", **storage)
    row = train.pairs[0]
    row.image_layer.value, row.labels_layer.value = flair_layer, labels
    [scan] = [pair.scan() for pair in train.training_pairs()]
    np.testing.assert_array_equal(scan.image, flair)
    np.testing.assert_array_equal(scan.mask, mask > 0)
    assert notes["error"] == []


def test_a_case_opened_with_our_reader_is_picked_up_by_sequence_name(viewer, tmp_path, notes):
    """FLAIR, T1 and T1c layers of one case become the widget's image and sequences, and give the model the case's
    own channel stack."""
    import nibabel as nib

    from napari_lgg_unet.engine.io import load_scan
    from napari_lgg_unet.widgets.sequences import deferred_input

    case = tmp_path / "case"
    case.mkdir()
    rng = np.random.default_rng(3)
    affine = np.diag([0.9, 1.1, 3.0, 1.0])
    for sequence in ("flair", "t1", "t1ce", "t2"):
        nib.save(nib.Nifti1Image(rng.random((12, 10, 4)).astype(np.float32), affine), case / f"case_{sequence}.nii.gz")
    widget = dock(viewer, "Segment tumour")
    viewer.open(str(case), plugin="napari-lgg-unet")
    assert [layer.name for layer in viewer.layers] == ["T2", "T1c", "T1", "FLAIR"]
    assert [widget.image.value.name, widget.pre_contrast.value.name, widget.post_contrast.value.name] == [
        "FLAIR", "T1", "T1c"]
    read, rgb = deferred_input(widget.image.value, widget.pre_contrast.value, widget.post_contrast.value)
    assert rgb
    np.testing.assert_array_equal(read(), load_scan(case).image)
    # A widget made after the case was opened finds it too.
    from napari_lgg_unet.widgets.segment import SegmentWidget

    later = SegmentWidget(viewer)
    assert (later.image.value, later.post_contrast.value) == (viewer.layers["FLAIR"], viewer.layers["T1c"])
    assert notes["error"] == []


def test_renaming_the_picked_layers_keeps_them_picked(viewer, notes):
    """napari resets a docked widget's layer lists on every rename; the picked layers must stay picked, not fall back
    to the first layer of the list (Segment would run on another image)."""
    grey = np.zeros((3, 16, 16), dtype=np.float32)
    for name in ("T2", "T1", "T1c", "FLAIR"):
        viewer.add_image(grey, name=name)
    truth = viewer.add_labels(np.zeros((3, 16, 16), dtype=np.uint8), name="truth")
    viewer.add_labels(np.zeros((3, 16, 16), dtype=np.uint8), name="other labels")
    widget = dock(viewer, "Segment tumour")
    widget.truth.value = truth
    picked = (widget.image.value, widget.pre_contrast.value, widget.post_contrast.value, widget.truth.value)
    assert [layer.name for layer in picked] == ["FLAIR", "T1", "T1c", "truth"]
    for layer in picked:
        layer.name = f"my {layer.name}"
    assert (widget.image.value, widget.pre_contrast.value, widget.post_contrast.value, widget.truth.value) == picked
    viewer.layers.remove(picked[1])  # a removed layer is still dropped from its list
    assert widget.pre_contrast.value is None
