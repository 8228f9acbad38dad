"""cases: which files of a folder form one scan, and loading them as the model's channels."""

import re
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_lgg_unet.engine.cases import case_in_folder, case_of_file, cases_in_folder, load_case, load_sequences
from napari_lgg_unet.engine.errors import InputError, InputWarning
from napari_lgg_unet.engine.io import find_scans
from napari_lgg_unet.engine.sequences import FLAIR, POST, PRE, T2

# how every message says that a NIfTI's header does not place the patient (a scan's, or labels' beside a FLAIR's)
UNORIENTED = "has no orientation (its qform_code and sform_code are 0)"


def _nifti(path, value: float = 0.0, labels: bool = False):
    data = np.random.default_rng(len(path.name)).random((6, 7, 5)).astype(np.float32) + value
    if labels:
        data = np.zeros((6, 7, 5), np.uint8)
        data[2:4, 3:5, 1:3] = 2  # any label > 0 is tumour
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return data


def test_a_flat_folder_groups_files_into_cases_by_name_with_their_labels(tmp_path):
    for case in ("A", "B"):
        for sequence in ("flair", "t1", "t2"):
            _nifti(tmp_path / f"{case}_{sequence}.nii.gz")
    _nifti(tmp_path / "A_seg.nii.gz", labels=True)
    found = {case.name: case for case in cases_in_folder(tmp_path)}
    assert sorted(found) == ["A", "B"]
    assert {s for s, _ in found["A"].sequences} == {FLAIR, PRE, T2}
    assert found["A"].labels.path.name == "A_seg.nii.gz" and found["B"].labels is None
    assert case_of_file(tmp_path / "B_t1.nii.gz") == found["B"]
    with pytest.raises(InputError, match="2 cases"):
        case_in_folder(tmp_path)


def test_two_flair_files_for_one_case_are_refused(tmp_path):
    _nifti(tmp_path / "A_flair.nii.gz")
    _nifti(tmp_path / "A_t2f.nii.gz")
    with pytest.raises(InputError, match="two FLAIR files"):
        cases_in_folder(tmp_path)


def test_missing_t1s_are_filled_with_flair_and_labels_become_a_bool_mask(tmp_path):
    _nifti(tmp_path / "A_flair.nii.gz")
    _nifti(tmp_path / "A_t1ce.nii.gz", value=5)
    labels = _nifti(tmp_path / "A_seg.nii.gz", labels=True)
    loaded = load_case(case_in_folder(tmp_path), require_mask=True)
    assert loaded.rgb and loaded.image.shape[-1] == 3 and loaded.mask.dtype == bool
    np.testing.assert_array_equal(loaded.image[..., 0], loaded.image[..., 1])  # pre-contrast T1 := FLAIR
    assert (loaded.image[..., 2] >= 5).all() and not (loaded.image[..., 1] >= 5).any()
    assert loaded.mask.sum() == (labels > 0).sum()


def test_a_multi_volume_file_beside_other_sequences_is_refused_and_a_single_volume_one_is_its_sequence(tmp_path):
    flair = _nifti(tmp_path / "A_flair.nii.gz")
    stacked = np.random.default_rng(1).random((6, 7, 5, 3)).astype(np.float32) + 5
    nib.save(nib.Nifti1Image(stacked, np.eye(4)), str(tmp_path / "A_t1.nii.gz"))
    with pytest.raises(InputError, match="A_t1.nii.gz holds 3 volumes"):  # its 2nd volume would have been the FLAIR
        load_case(case_in_folder(tmp_path))
    nib.save(nib.Nifti1Image(stacked[..., :1], np.eye(4)), str(tmp_path / "A_t1.nii.gz"))
    loaded = load_case(case_in_folder(tmp_path))
    plain = tmp_path / "plain"
    plain.mkdir()
    nib.save(nib.Nifti1Image(flair, np.eye(4)), str(plain / "A_flair.nii.gz"))
    nib.save(nib.Nifti1Image(stacked[..., 0], np.eye(4)), str(plain / "A_t1.nii.gz"))
    np.testing.assert_array_equal(loaded.image, load_case(case_in_folder(plain)).image)


def test_a_case_without_flair_or_without_labels_when_they_are_needed_is_refused(tmp_path):
    _nifti(tmp_path / "A_flair.nii.gz")
    with pytest.raises(InputError, match="no labels"):
        load_case(case_in_folder(tmp_path), require_mask=True)
    assert not load_case(case_in_folder(tmp_path)).rgb
    (tmp_path / "A_flair.nii.gz").rename(tmp_path / "A_t1.nii.gz")
    with pytest.raises(InputError, match="no FLAIR"):
        load_case(case_in_folder(tmp_path))


def test_sequences_for_reading_list_flair_first_and_keep_t2(tmp_path):
    for sequence in ("t2", "t1c", "flair"):
        _nifti(tmp_path / f"A_{sequence}.nii.gz")
    loaded = load_sequences(case_in_folder(tmp_path))
    assert list(loaded.images) == [FLAIR, POST, T2] and loaded.mask is None


def _case_with_labels(folder, labels):
    folder.mkdir()
    _nifti(folder / "A_flair.nii.gz")
    nib.save(nib.Nifti1Image(labels, np.eye(4)), str(folder / "A_seg.nii.gz"))
    return case_in_folder(folder)


@pytest.mark.parametrize("stored", [np.uint8, np.int16, np.float32, "0/255", "BraTS"])
def test_labels_stored_as_any_whole_numbers_read_as_the_same_tumour(tmp_path, stored):
    tumour = np.zeros((6, 7, 5), bool)
    tumour[2:4, 3:5, 1:3] = True
    if stored == "0/255":
        labels = tumour * np.uint8(255)
    elif stored == "BraTS":  # necrosis, oedema and enhancing tumour: together the whole tumour
        labels = np.where(tumour, [[[1, 2, 4, 2, 1]]], 0).astype(np.int16)
    else:
        labels = tumour.astype(stored)
    loaded = load_case(_case_with_labels(tmp_path / "A", labels), require_mask=True)
    assert loaded.mask.sum() == tumour.sum()


@pytest.mark.parametrize("stored", [np.float32(0.99999994), np.float32(1.0000001), "0/255 with scl_slope 0.00392"])
def test_labels_a_rounding_or_header_scaling_moved_off_whole_numbers_read_as_the_same_tumour(tmp_path, stored):
    """A float mask whose 1s a computation left at 0.99999994 or 1.0000001, and a uint8 0/255 mask whose header
    scales it by a rounded 1/255 (read as 0.9996), are whole labels, not a resampled mask's fractions."""
    tumour = np.zeros((6, 7, 5), bool)
    tumour[2:4, 3:5, 1:3] = True
    folder = tmp_path / "A"
    if isinstance(stored, str):
        folder.mkdir()
        _nifti(folder / "A_flair.nii.gz")
        image = nib.Nifti1Image(tumour * np.uint8(255), np.eye(4))
        image.header.set_slope_inter(0.00392, 0)
        nib.save(image, str(folder / "A_seg.nii.gz"))
        case = case_in_folder(folder)
    else:
        case = _case_with_labels(folder, np.where(tumour, stored, np.float32(0)))
    loaded = load_case(case, require_mask=True)
    assert loaded.mask.sum() == tumour.sum()


@pytest.mark.parametrize(("value", "refusal"), [(np.nan, "NaN values"), (-1.0, r"values below 0 \(such as -1\)"),
                                                (0.2, r"fractional values \(such as 0.2\).*nearest neighbour"),
                                                (0.0004, r"fractional values \(such as 0.0004\)")])
def test_labels_that_are_no_label_map_are_refused_naming_the_file(tmp_path, value, refusal):
    labels = np.zeros((6, 7, 5), np.float32)
    labels[2:4, 3:5, 1:3] = 1.0
    labels[2, 3, 1] = value  # NaN and -1 read as background, 0.2 or 0.0004 (a linearly resampled mask's edge or its
    # faint tail, no rounding of a whole label) as tumour
    with pytest.raises(InputError, match=f"A_seg.nii.gz holds {refusal}"):
        load_case(_case_with_labels(tmp_path / "A", labels), require_mask=True)


def test_labels_without_orientation_beside_an_oriented_flair_are_read_voxel_for_voxel_not_mirrored(tmp_path):
    """Labels saved as nib.Nifti1Image(mask, None) (qform and sform codes 0) from the FLAIR's own array, as numpy
    scripts save them: resampled by nibabel's guess for such a header (x running to the left), they lay mirrored on
    a FLAIR stored RAS; of the FLAIR's voxel shape, they are its voxels, as if saved with its header."""
    shape = (8, 6, 4)
    affine = np.eye(4)
    affine[:3, 3] = -(np.array(shape) - 1) / 2  # RAS, centred: the guess covers all of it, mirrored
    nib.save(nib.Nifti1Image(np.ones(shape, np.float32), affine), str(tmp_path / "A_flair.nii.gz"))
    labels = np.zeros(shape, np.uint8)
    labels[:2] = 1  # the patient's right
    nib.save(nib.Nifti1Image(labels, affine), str(tmp_path / "A_seg.nii.gz"))
    with_header = load_case(case_in_folder(tmp_path), require_mask=True).mask
    nib.save(nib.Nifti1Image(labels, None), str(tmp_path / "A_seg.nii.gz"))
    with pytest.warns(InputWarning) as told:
        without = load_case(case_in_folder(tmp_path), require_mask=True).mask
    np.testing.assert_array_equal(without, with_header)
    # one warning, saying how the labels were placed: the one for a scan without orientation ("shown and segmented
    # as if ...") came first, about a file that is neither shown nor segmented on its own grid
    [warning] = [str(w.message) for w in told if issubclass(w.category, InputWarning)]
    assert re.match(rf"the labels \S+A_seg.nii.gz {re.escape(UNORIENTED)} but the FLAIR has one; .* read voxel for "
                    "voxel on the FLAIR", warning)


def test_labels_without_orientation_on_another_grid_than_an_oriented_flair_are_refused(tmp_path):
    """Of another voxel shape, where such labels lie against the FLAIR is unknown: nibabel's guess could mirror them."""
    nib.save(nib.Nifti1Image(np.ones((8, 6, 4), np.float32), np.eye(4)), str(tmp_path / "A_flair.nii.gz"))
    labels = np.eye(8, 6, dtype=np.uint8)[..., None].repeat(5, 2)
    nib.save(nib.Nifti1Image(labels, None), str(tmp_path / "A_seg.nii.gz"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)  # the refusal says it all: no warning before it
        with pytest.raises(InputError, match=f"A_seg.nii.gz {re.escape(UNORIENTED)} but the FLAIR has one, and .* "
                                             "another voxel grid"):
            load_case(case_in_folder(tmp_path), require_mask=True)


def test_labels_and_flair_without_orientation_warn_once_for_the_flair_whose_grid_both_are_read_on(tmp_path):
    """The FLAIR's warning says what its grid is taken as; labels read voxel for voxel onto it add nothing to it."""
    labels = np.zeros((8, 6, 4), np.uint8)
    labels[2:4, 2:4] = 1
    for name, data in (("A_flair.nii.gz", np.ones((8, 6, 4), np.float32)), ("A_seg.nii.gz", labels)):
        nib.save(nib.Nifti1Image(data, None), str(tmp_path / name))
    with pytest.warns(InputWarning) as told:
        loaded = load_case(case_in_folder(tmp_path), require_mask=True)
    assert loaded.mask.sum() == labels.sum()
    [warning] = [str(w.message) for w in told if issubclass(w.category, InputWarning)]
    assert warning.startswith(f"{tmp_path / 'A_flair.nii.gz'} {UNORIENTED}: it is shown and segmented as if")


def test_a_dicom_series_beside_volume_files_is_refused_naming_both_unless_a_volume_file_is_given(tmp_path):
    from dicom_files import write_slice

    for z in range(3):
        write_slice(tmp_path, f"IM{z}", "1.2.9", "AX FLAIR", 2.5 * z, np.full((6, 8), z))
    converted = tmp_path / "P_Ax_T1_MPRAGE_5.nii.gz"  # as dcm2niix names a conversion it writes into the folder
    _nifti(converted)
    with pytest.raises(InputError, match=r"the DICOM series 'AX FLAIR' \(3 files\) beside the volume files P_Ax_T1"):
        case_in_folder(tmp_path)
    assert [source.path for _, source in case_of_file(converted).sequences] == [converted]


def test_a_case_whose_volumes_are_links_to_nothing_is_listed_and_refused_by_name_not_left_out(tmp_path):
    """A cohort of links to a drive not mounted: the cases whose files were gone vanished from the folder of cases
    without a word, and a run said it had segmented (or trained on, or scored) every case."""
    root = tmp_path / "cohort"
    (root / "A").mkdir(parents=True)
    _nifti(root / "A" / "A_flair.nii.gz")
    (root / "B").mkdir()
    (root / "B" / "B_flair.nii.gz").symlink_to(tmp_path / "unmounted" / "B_flair.nii.gz")
    assert [case.name for case in find_scans(root)] == ["A", "B"]
    with pytest.raises(InputError, match=re.escape(f"B_flair.nii.gz is a link to {tmp_path / 'unmounted'}")):
        load_case(case_in_folder(root / "B"))


def test_a_file_given_by_name_is_its_case_s_flair_though_other_formats_of_its_name_lie_beside_it(tmp_path,
                                                                                              monkeypatch):
    """`predict --input zero.nii.gz` beside zero.nii and zero.mha was refused as '.: two FLAIR files for one case':
    the user named the file to read, so it is read; the others are not its twins to choose from."""
    monkeypatch.chdir(tmp_path)
    for name in ("zero.nii.gz", "zero.nii", "zero_t2.nii.gz"):
        _nifti(tmp_path / name)
    (tmp_path / "zero.mha").write_bytes(b"")  # a third format of the name: files are grouped by name, not read
    case = case_of_file(Path("zero.nii.gz"))
    assert dict(case.sequences)[FLAIR].path == Path("zero.nii.gz")
    assert dict(case.sequences)[T2].path == Path("zero_t2.nii.gz")
    assert case_of_file(Path("zero.nii")).sequences[0][1].path == Path("zero.nii")


def test_two_files_of_a_sequence_beside_a_file_given_by_name_are_refused_naming_it_and_its_folder(tmp_path,
                                                                                                monkeypatch):
    """The folder of a file given as `zero.nii.gz` was shown as '.', and the file the user gave was not named."""
    monkeypatch.chdir(tmp_path)
    for name in ("zero.nii.gz", "zero_t2.nii.gz", "zero_t2.nii"):
        _nifti(tmp_path / name)
    message = (f"zero.nii.gz: its folder {tmp_path} holds two T2 files for its case (zero_t2.nii, zero_t2.nii.gz); "
               "keep one")
    with pytest.raises(InputError, match=re.escape(message)):
        case_of_file(Path("zero.nii.gz"))
    with pytest.raises(InputError, match=re.escape(f"{tmp_path}: two T2 files for one case")):
        case_in_folder(tmp_path)
