"""outputs: a mask is never written onto, or into, a file or case folder that a job reads."""

import os

import nibabel as nib
import numpy as np
import pytest
import tifffile

from napari_lgg_unet.engine.cases import cases_in_folder
from napari_lgg_unet.engine.errors import InputError, InputWarning
from napari_lgg_unet.engine.io import load_scan, write_mask
from napari_lgg_unet.engine.outputs import check_not_the_input, check_output, check_unique_names, input_paths, outside


def _nifti(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.float32), np.eye(4)), str(path))
    return path


def test_an_output_on_or_inside_an_input_is_refused_and_one_beside_it_is_not(tmp_path):
    stack = tmp_path / "scan.tif"
    tifffile.imwrite(stack, np.zeros((2, 8, 8), np.uint8))
    patient = tmp_path / "P1"
    patient.mkdir()
    for output in (stack, patient / "mask.tif"):
        with pytest.raises(InputError, match="part of the input"):
            check_output(output, [stack, patient])
    check_output(tmp_path / "scan_mask.tif", [stack, patient])
    for name in ("scan_mask.tif", "scan_SEG.TIF"):
        tifffile.imwrite(tmp_path / name, np.zeros((2, 8, 8), np.uint8))  # now a manual mask: kept
        with pytest.raises(InputError, match=f"the manual mask read with the input \\({name}"):
            check_output(tmp_path / name, [stack, patient])


def test_a_tiff_mask_read_as_the_input_protects_its_scan_and_the_scans_other_masks(tmp_path):
    for name in ("P_image.tif", "P_mask.tif", "P_seg.tif", "P_labels.tif", "Q_image.tif"):
        tifffile.imwrite(tmp_path / name, np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(InputError, match="part of the input"):
        check_output(tmp_path / "P_image.tif", [tmp_path / "P_mask.tif"])
    for output in ("P_seg.tif", "P_labels.tif", "P_mask.tif"):  # every name that opens as labels
        with pytest.raises(InputError, match="the manual mask read with the input"):
            check_output(tmp_path / output, [tmp_path / "P_mask.tif"])
    for output in ("Q_image.tif", "P_mask_edited.tif"):
        check_output(tmp_path / output, [tmp_path / "P_mask.tif"])


def test_a_volume_named_to_join_a_loose_scans_case_is_refused(tmp_path):
    flair = _nifti(tmp_path / "loose" / "X_flair.nii.gz")  # a case's file in a folder not named after it
    for name in ("X_t1c.nii.gz", "X.nii.gz"):  # read as a sequence, as a second FLAIR, when the case is next read
        with pytest.raises(InputError, match="would be read as a file of X"):
            check_output(tmp_path / "loose" / name, [flair])
    for name in ("X_mask.nii.gz", "X_edited.nii.gz", "Y_mask.nii.gz"):  # the first as its labels
        check_output(tmp_path / "loose" / name, [flair])
    _nifti(tmp_path / "loose" / "X_seg.nii.gz")  # manual labels: a second labels file would break the case
    for name in ("X_mask.nii.gz", "X_tumor_mask.nii.gz", "X_mask_flair.nii.gz"):  # all read as X's labels
        with pytest.raises(InputError, match="would be read as a file of X"):
            check_output(tmp_path / "loose" / name, [flair])


def test_a_tiff_beside_a_loose_volume_scan_is_refused_as_its_folder_would_no_longer_read(tmp_path):
    """A TIFF is never a volume case's labels: beside a loose X_flair.nii.gz, X_mask.tif was allowed (as if it were
    read as the case's mask), and the folder then no longer read ("holds TIFF stacks beside X")."""
    from napari_lgg_unet.engine.io import load_scan

    flair = _nifti(tmp_path / "loose" / "X_flair.nii.gz")
    for name in ("X_mask.tif", "X_flair.TIFF", "edited.tif"):
        with pytest.raises(InputError, match="is a TIFF beside the volume scan X_flair.nii.gz.*as a .nii.gz file"):
            check_output(tmp_path / "loose" / name, [flair])
    check_output(tmp_path / "X_mask.tif", [flair])  # elsewhere: fine
    load_scan(tmp_path / "loose")  # what the refusal keeps reading
    (tmp_path / "loose" / "X_mask.tif").write_bytes(b"")
    with pytest.raises(InputError, match="holds TIFF stacks"):
        load_scan(tmp_path / "loose")


def test_a_volume_file_stands_for_its_case_labels_and_own_folder(tmp_path):
    flair = _nifti(tmp_path / "A" / "A_flair.nii.gz")
    labels = _nifti(tmp_path / "A" / "A_seg.nii.gz")
    assert set(input_paths(flair)) == {(tmp_path / "A").resolve(), flair.resolve(), labels.resolve()}
    with pytest.raises(InputError, match=r"the manual mask read with the input \(A_seg.nii.gz"):
        check_output(labels, [flair])


def test_a_folder_of_masks_is_refused_where_scans_lie_directly(tmp_path):
    flair = _nifti(tmp_path / "B_flair.nii.gz")
    check_output(tmp_path / "B_mask.nii.gz", [flair])  # one mask beside the scan: fine
    with pytest.raises(InputError, match="the folder of the input's scan files, where the next run would read its "
                                         r"masks with those scans \(as their manual masks\)"):
        check_output(tmp_path, [flair], folder=True)


def test_a_folder_of_masks_beside_the_case_folders_read_is_allowed_and_read_without_them(tmp_path):
    """`predict --input ROOT/P1 --output ROOT/` was refused as landing "on or in ROOT, which is part of the input":
    ROOT holds case folders, no scan file; the mask it gets, ROOT/P1_mask.nii.gz, is the one `--output
    ROOT/P1_mask.nii.gz` writes, which a later run over ROOT leaves out by name, saying so."""
    from napari_lgg_unet.engine.io import find_scans

    for case in ("P1", "P2"):
        _nifti(tmp_path / case / f"{case}_flair.nii.gz")
    check_output(tmp_path, cases_in_folder(tmp_path / "P1"), folder=True)
    check_output(tmp_path, cases_in_folder(tmp_path / "P1") + cases_in_folder(tmp_path / "P2"), folder=True)
    _nifti(tmp_path / "P1_mask.nii.gz")
    with pytest.warns(InputWarning, match="left out P1_mask.nii.gz"):
        assert [case.name for case in find_scans(tmp_path)] == ["P1", "P2"]


def test_masks_of_an_earlier_run_inside_the_input_root_are_not_inputs(tmp_path):
    _nifti(tmp_path / "C_flair.nii.gz")
    _nifti(tmp_path / "masks" / "C_mask.nii.gz")
    sources = cases_in_folder(tmp_path) + cases_in_folder(tmp_path / "masks")
    assert [case.name for case in outside(sources, tmp_path / "masks")] == ["C"]
    assert len(outside(sources, tmp_path / "elsewhere")) == 2


def test_two_cases_with_one_name_are_refused(tmp_path):
    first, second = _nifti(tmp_path / "x" / "D_flair.nii.gz"), _nifti(tmp_path / "y" / "D_flair.nii.gz")
    check_unique_names(cases_in_folder(tmp_path / "x"))
    with pytest.raises(InputError, match="two cases are named D"):
        check_unique_names(cases_in_folder(first.parent) + cases_in_folder(second.parent))


def test_another_name_of_an_input_file_is_that_input(tmp_path):
    """As the file system knows it: a hard link here, and on a case-insensitive disk (macOS, Windows) a spelling that
    differs in case only, which a compared path does not see and replacing would replace the scan."""
    scan_path = _nifti(tmp_path / "P1" / "P1_flair.nii.gz")
    other = tmp_path / "elsewhere" / "flair.nii.gz"
    other.parent.mkdir()
    os.link(scan_path, other)
    with pytest.raises(InputError, match="part of the input"):
        check_output(other, cases_in_folder(tmp_path / "P1"))
    check_output(tmp_path / "elsewhere" / "P1_mask.nii.gz", cases_in_folder(tmp_path / "P1"))
    scan = load_scan(tmp_path / "P1")
    with pytest.raises(InputError, match="is a file of the scan P1 itself"):
        write_mask(other, np.zeros((3, 4, 4), np.uint8), scan)  # a script's call, without check_output
    assert nib.load(scan_path).get_fdata().shape == (4, 4, 3) and other.stat().st_nlink == 2


def test_a_labels_file_beside_a_case_whose_labels_carry_a_qualifier_is_refused(tmp_path):
    """`X_tumor_seg.nii.gz` is X's labels when X is read (cases.py); the output check grouped names by a rule of its
    own and let `X_mask.nii.gz` be written beside it, after which X held two labels files and no longer read."""
    flair = _nifti(tmp_path / "loose" / "X_flair.nii.gz")
    _nifti(tmp_path / "loose" / "X_tumor_seg.nii.gz")
    assert cases_in_folder(tmp_path / "loose")[0].labels.path.name == "X_tumor_seg.nii.gz"
    for name in ("X_mask.nii.gz", "X_lesion_mask.nii.gz", "X_seg_flair.nii.gz"):
        with pytest.raises(InputError, match="would be read as a file of X,"):
            check_output(tmp_path / "loose" / name, [flair])
    check_output(tmp_path / "loose" / "Y_mask.nii.gz", [flair])


def test_an_output_that_is_the_input_folder_says_why_a_folder_is_refused(tmp_path):
    (tmp_path / "P1").mkdir()
    scan = tmp_path / "P1" / "P1_flair.nii.gz"
    _nifti(scan)
    with pytest.raises(InputError, match="replaced by its mask"):
        check_not_the_input(scan, scan)
    with pytest.raises(InputError, match="read by the next run as scans or as their manual masks") as refused:
        check_not_the_input(f"{tmp_path}/", tmp_path)
    assert "replaced" not in str(refused.value)
    check_not_the_input(tmp_path / "masks", tmp_path)
