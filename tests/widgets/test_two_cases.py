"""Two cases opened into one viewer with our reader: what the Segment widget does for the second must not mix in the
first's layers. BraTS cases share one grid (240 x 240 x 155, one affine), so nothing but the case each layer was read
from tells their layers apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_lgg_unet.engine.metrics import volume_scores

from widget_helpers import dock, segment_and_settle

pytestmark = pytest.mark.usefixtures("inline_jobs")

AFFINE = np.diag([-1.0, -1.0, 3.0, 1.0])


def write_case(folder: Path, seed: int, tumour: tuple[slice, ...]) -> Path:
    """A small BraTS-style case folder (four sequences and `_seg`, one grid shared by every case written here) whose
    manual mask covers `tumour`."""
    import nibabel as nib

    folder.mkdir()
    rng = np.random.default_rng(seed)
    for sequence in ("flair", "t1", "t1ce", "t2"):
        image = rng.random((64, 48, 4)).astype(np.float32)
        nib.save(nib.Nifti1Image(image, AFFINE), folder / f"{folder.name}_{sequence}.nii.gz")
    seg = np.zeros((64, 48, 4), np.uint8)
    seg[tumour] = 1
    nib.save(nib.Nifti1Image(seg, AFFINE), folder / f"{folder.name}_seg.nii.gz")
    return folder


def test_a_second_case_opened_is_scored_against_its_own_mask_not_the_first_cases(
    qtbot, viewer, tiny_model_dir, tmp_path, notes
):
    """The first case's manual mask, picked as the ground truth, stayed picked when a second case on the same grid
    was opened and segmented: its readouts scored case 2's tumour against case 1's mask, without a word."""
    widget = dock(viewer, "Segment tumour")
    widget.model.value, widget.model_folder.value = "folder", tiny_model_dir
    viewer.open(str(write_case(tmp_path / "case1", 1, np.s_[0:20, 0:20, :])), plugin="napari-lgg-unet")
    widget.truth.value = viewer.layers["case1 mask"]
    segment_and_settle(qtbot, widget)

    viewer.open(str(write_case(tmp_path / "case2", 2, np.s_[40:60, 20:40, :])), plugin="napari-lgg-unet")
    own = viewer.layers["case2 mask"]
    assert (widget.image.value, widget.truth.value) == (viewer.layers["FLAIR [1]"], own)
    segment_and_settle(qtbot, widget)
    tumour = widget.prediction_layer()
    assert tumour.name == "FLAIR [1] tumour"
    expected = volume_scores(np.asarray(tumour.data) > 0, np.asarray(own.data) > 0).to_dict()
    assert widget.readouts.scores["volume"] == expected
    assert notes["error"] == [] and notes["warning"] == []
    assert notes["info"] == ["'case1 mask' is the manual mask of case1, not of case2 ('FLAIR [1]'): the ground truth "
                             "is none until a mask of its own opens"]

    # Back to the first case, through an image of no case: its own mask is there already, and comes back at once.
    widget.image.value = viewer.add_image(np.zeros((4, 48, 64), np.float32), name="drawn in the session")
    assert widget.truth.value is own
    widget.image.value = viewer.layers["FLAIR"]
    assert widget.truth.value is viewer.layers["case1 mask"]
    assert notes["info"][-1].endswith("the ground truth is 'case1 mask', its own")


def test_a_ground_truth_opened_by_itself_stays_picked_for_another_case(viewer, tmp_path, notes):
    """Only a case's own manual mask follows its case: a mask file the user opened alone is their choice."""
    import nibabel as nib

    dock_widget = dock(viewer, "Segment tumour")
    viewer.open(str(write_case(tmp_path / "case1", 1, np.s_[0:20, 0:20, :])), plugin="napari-lgg-unet")
    reviewed = np.zeros((64, 48, 4), np.uint8)
    reviewed[10:30, 10:30] = 1
    nib.save(nib.Nifti1Image(reviewed, AFFINE), tmp_path / "reviewed_mask.nii.gz")
    [mine] = viewer.open(str(tmp_path / "reviewed_mask.nii.gz"), plugin="napari-lgg-unet")
    dock_widget.truth.value = mine
    viewer.open(str(write_case(tmp_path / "case2", 2, np.s_[40:60, 20:40, :])), plugin="napari-lgg-unet")
    assert dock_widget.image.value is viewer.layers["FLAIR [1]"]
    assert dock_widget.truth.value is mine
    assert notes["info"] == []
