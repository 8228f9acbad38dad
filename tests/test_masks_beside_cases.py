"""A mask predicted for one case and written beside its folder (`--output data/P_mask.nii.gz`, the name predict gives a
case's mask) leaves the folder of cases readable: train, evaluate, calibrate and predict on `data` leave it out, and
say so; a file of any other name there is still refused, so no scan of the user's is skipped unsaid."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile

from napari_lgg_unet.cli import main
from napari_lgg_unet.engine.errors import InputError, InputWarning
from napari_lgg_unet.engine.io import find_scans

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])


def _kaggle(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for number in (1, 2):
        tifffile.imwrite(folder / f"{folder.name}_{number}.tif", np.zeros((16, 16, 3), np.uint8))
        tifffile.imwrite(folder / f"{folder.name}_{number}_mask.tif", np.zeros((16, 16), np.uint8))
    return folder


def _case(folder: Path) -> Path:
    folder.mkdir(parents=True)
    volume = np.random.default_rng(0).integers(0, 500, (40, 36, 3), dtype=np.int16)
    nib.save(nib.Nifti1Image(volume, AFFINE), folder / f"{folder.name}_flair.nii.gz")
    nib.save(nib.Nifti1Image((volume > 400).astype(np.uint8), AFFINE), folder / f"{folder.name}_seg.nii.gz")
    return folder


def _names(sources: list) -> list[str]:
    return sorted(getattr(source, "name", None) or Path(source).name for source in sources)


@pytest.mark.parametrize("mask", ["P1_mask.tif", "P1_mask.tiff", "P1_mask.nii.gz"])
def test_a_mask_named_after_a_kaggle_patient_beside_its_folder_is_left_out_with_a_warning(tmp_path, mask):
    root = tmp_path / "data"
    _kaggle(root / "P1"), _kaggle(root / "P2")
    tifffile.imwrite(root / mask, np.zeros((2, 16, 16), np.uint8)) if ".tif" in mask else nib.save(
        nib.Nifti1Image(np.zeros((16, 16, 2), np.uint8), AFFINE), root / mask)
    with pytest.warns(InputWarning, match=rf"left out {mask}.*named after the case beside it"):
        assert _names(find_scans(root, require_masks=True)) == ["P1", "P2"]


def test_a_mask_named_after_a_case_folder_beside_it_is_left_out_with_a_warning(tmp_path):
    root = tmp_path / "data"
    _case(root / "P1"), _case(root / "P2")
    nib.save(nib.Nifti1Image(np.zeros((40, 36, 3), np.uint8), AFFINE), root / "P2_mask.nii.gz")
    with pytest.warns(InputWarning, match="left out P2_mask.nii.gz"):
        assert _names(find_scans(root, require_masks=True)) == ["P1", "P2"]


def test_a_folder_of_cases_with_nothing_beside_them_is_listed_without_a_warning(tmp_path):
    root = tmp_path / "data"
    _case(root / "P1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _names(find_scans(root)) == ["P1"]


@pytest.mark.parametrize("stray, named", [
    ("P3_mask.tif", "P3_mask.tif"), ("P1.tif", "P1.tif"), ("P1_seg.tif", "P1_seg"),
    ("notes_mask.nii.gz", "loose .notes."), ("P1_mask.png.tif", "P1_mask.png"),
])
def test_a_file_beside_the_cases_not_named_as_one_of_their_masks_is_still_refused(tmp_path, stray, named):
    """A mask of no case there, a stack named like the case, a user's own labels: they may be scans or ground truth
    the user means to use, so the folder is refused naming them rather than read without them."""
    root = tmp_path / "data"
    _kaggle(root / "P1")
    if stray.endswith(".tif"):
        tifffile.imwrite(root / stray, np.zeros((2, 16, 16), np.uint8))
    else:
        nib.save(nib.Nifti1Image(np.zeros((16, 16, 2), np.uint8), AFFINE), root / stray)
    with pytest.raises(InputError, match=named):
        find_scans(root)


def test_predict_writes_a_patients_mask_beside_its_folder_and_the_folder_still_trains_and_evaluates(
        lgg_root, tiny_model_dir, tmp_path, capsys):
    """The real layout: a Kaggle root of patient folders, one patient segmented into `root/<patient>_mask.tif`."""
    root = tmp_path / "data"
    patients = sorted(p for p in lgg_root.iterdir() if p.is_dir())[:2]
    root.mkdir()
    for patient in patients:
        (root / patient.name).symlink_to(patient)
    mask = root / f"{patients[0].name}_mask.tif"
    assert main(["predict", "--model", str(tiny_model_dir), "--input", str(root / patients[0].name),
                 "--output", str(mask)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data", str(root)]) == 0
    printed = capsys.readouterr()
    assert "2 patients: mean Dice" in printed.out
    assert f"left out {mask.name}" in printed.err and "error" not in printed.err
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "run"), "--epochs", "1", "--workers", "0",
                 "--steps-per-epoch", "1", "--batch-size", "4", "--image-size", "64",
                 "--decoder-channels", "16,16,16,16,16"]) == 0
    assert mask.is_file()  # left where the user wrote it


def test_predict_writes_a_cases_mask_beside_its_folder_and_the_folder_still_evaluates(tiny_model_dir, tmp_path,
                                                                                       capsys):
    root = tmp_path / "data"
    _case(root / "P1"), _case(root / "P2")
    assert main(["predict", "--model", str(tiny_model_dir), "--input", str(root / "P1"),
                 "--output", str(root / "P1_mask.nii.gz")]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data", str(root)]) == 0
    printed = capsys.readouterr()
    assert "2 patients: mean Dice" in printed.out and "left out P1_mask.nii.gz" in printed.err
