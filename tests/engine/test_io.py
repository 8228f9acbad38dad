import shutil

import numpy as np
import pytest
import tifffile

from napari_lgg_unet.engine.errors import InputError
from napari_lgg_unet.engine.io import load_patient, load_scan, patient_folders, write_mask, write_mask_tiff
from napari_lgg_unet.sample_data import SAMPLE_PATIENT


def test_real_patient_loads_in_numeric_slice_order_with_boolean_masks(sample_patient_dir):
    folder = sample_patient_dir
    scan = load_patient(folder)
    n = len(list(folder.glob("*_mask.tif")))
    assert scan.image.shape == (n, 256, 256, 3) and scan.image.dtype == np.uint8
    assert scan.mask.shape == (n, 256, 256) and scan.mask.dtype == bool
    # Slice 10 must sit at index 9 (text sorting would put it after slice 1).
    np.testing.assert_array_equal(scan.image[9], tifffile.imread(folder / f"{SAMPLE_PATIENT}_10.tif"))
    on_disk = tifffile.imread(folder / f"{SAMPLE_PATIENT}_10_mask.tif")
    assert set(np.unique(on_disk)) <= {0, 255}
    np.testing.assert_array_equal(scan.mask[9], on_disk > 0)
    assert scan.mask.any()


def test_root_folder_yields_every_patient(lgg_root, sample_patient_dir):
    folders = patient_folders(lgg_root)
    assert len(folders) == len([p for p in lgg_root.iterdir() if p.is_dir()])
    assert patient_folders(sample_patient_dir) == [sample_patient_dir]


@pytest.mark.parametrize("shape", [(40, 50), (40, 50, 3), (4, 40, 50), (4, 40, 50, 3)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
def test_tiff_stacks_of_every_supported_layout_load_unchanged(tmp_path, shape, dtype):
    data = (np.random.default_rng(0).random(shape) * 100).astype(dtype)
    tifffile.imwrite(tmp_path / "scan.tif", data, photometric="rgb" if shape[-1] == 3 else "minisblack")
    scan = load_scan(tmp_path / "scan.tif")
    np.testing.assert_array_equal(scan.image, data)
    assert scan.rgb == (shape[-1] == 3)


def test_mask_is_written_as_uint8_0_255(tmp_path):
    mask = np.zeros((2, 5, 6), dtype=np.uint8)
    mask[1, 2:4, 1:3] = 1
    write_mask_tiff(tmp_path / "m.tif", mask)
    saved = tifffile.imread(tmp_path / "m.tif")
    assert saved.dtype == np.uint8 and set(np.unique(saved)) == {0, 255}
    np.testing.assert_array_equal(saved > 0, mask > 0)
    assert [p.name for p in tmp_path.iterdir()] == ["m.tif"]


@pytest.mark.parametrize("name", ["m.tif", "m.nii.gz", "m.nrrd"])
@pytest.mark.parametrize(("values", "refusal"), [
    (np.full((2, 5, 6), 0.7, np.float32), r"fractional values \(such as 0.7\).*threshold it first"),
    (np.full((2, 5, 6), -1, np.int16), r"values below 0 \(such as -1\).*give 0 for background and 1 for tumour"),
    (np.full((2, 5, 6), np.nan, np.float32), "NaN values"),
], ids=["probability map", "minus one", "NaN"])
def test_a_mask_that_reading_would_refuse_is_refused_when_written_not_thresholded(tmp_path, name, values, refusal):
    """Reading a mask refuses fractions, NaN and values below 0; writing took `> 0`, so a probability map of 0.7
    was saved as all tumour and -1 as background without a word. Nothing is written."""
    from napari_lgg_unet.engine.formats import file_format
    from napari_lgg_unet.engine.volumes import engine_geometry

    path = tmp_path / name
    with pytest.raises(InputError, match=f"the mask to save as {name} holds {refusal}"):
        file_format(path).write_mask(path, values, engine_geometry(values.shape))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mask", [np.eye(6, dtype=bool)[:5], np.eye(6, dtype=np.uint8)[:5] * 255,
                                  np.eye(6, dtype=np.float32)[:5] * 0.99999994], ids=["bool", "0/255", "float 0/1"])
def test_masks_of_whole_labels_are_written_as_tumour_where_above_0(tmp_path, sample_patient_dir, mask):
    scan = load_patient(sample_patient_dir)
    volume = np.zeros(scan.image.shape[:3], mask.dtype)
    volume[0, :5, :6] = mask
    write_mask(tmp_path / "mask.tif", volume, scan)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "mask.tif") > 0, volume > 0)


def test_write_mask_never_writes_into_the_kaggle_patient_folder_it_read(sample_patient_dir, tmp_path):
    scan = load_patient(sample_patient_dir)
    before = {p.name: p.read_bytes() for p in sample_patient_dir.iterdir()}
    slice_one = next(p for p in sample_patient_dir.iterdir() if p.name.endswith("_1.tif"))
    for onto in (slice_one, sample_patient_dir / "mask.tif"):  # a slice of its own, or a new file among them
        with pytest.raises(InputError, match=f"lies in {sample_patient_dir}, a folder of the scan"):
            write_mask(onto, np.zeros(scan.image.shape[:3], np.uint8), scan)
    assert {p.name: p.read_bytes() for p in sample_patient_dir.iterdir()} == before
    write_mask(tmp_path / "mask.tif", np.zeros(scan.image.shape[:3], np.uint8), scan)  # outside it: written


def test_bad_inputs_raise_input_errors_that_name_the_problem(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_scan(tmp_path / "missing.tif")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no patient folders"):
        patient_folders(tmp_path / "empty")
    (tmp_path / "broken.tif").write_bytes(b"not a tiff")
    with pytest.raises(InputError, match="cannot read"):
        load_scan(tmp_path / "broken.tif")
    patient = tmp_path / "P_1"
    patient.mkdir()
    tifffile.imwrite(patient / "P_1_1.tif", np.zeros((8, 8, 3), np.uint8))
    tifffile.imwrite(patient / "P_1_1_mask.tif", np.zeros((9, 8), np.uint8))
    with pytest.raises(InputError, match="does not match"):
        load_patient(patient, require_masks=True)  # where masks are not needed, the scan is read without them


def test_a_mask_slice_saved_in_colour_among_grey_ones_counts_any_channel(tmp_path):
    patient = tmp_path / "P"
    patient.mkdir()
    grey, colour = np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.uint8)
    grey[1, 1], colour[2, 2, 1] = 255, 255
    for number, mask in ((1, grey), (2, colour)):
        tifffile.imwrite(patient / f"P_{number}.tif", np.zeros((8, 8, 3), np.uint8))
        tifffile.imwrite(patient / f"P_{number}_mask.tif", mask)
    scan = load_patient(patient)
    assert scan.mask.shape == (2, 8, 8) and np.argwhere(scan.mask).tolist() == [[0, 1, 1], [1, 2, 2]]


@pytest.mark.parametrize("source", [None, 3, b"/tmp/scan.nii.gz", ["a.tif"]])
def test_a_source_that_is_not_a_path_is_refused_by_every_loader(source):
    from napari_lgg_unet.engine.io import load_patients

    for load in (load_scan, load_patient, load_patients):
        with pytest.raises(InputError, match="a path"):
            load(source)


def test_load_scan_takes_any_path_like_object(tmp_path):
    tifffile.imwrite(tmp_path / "scan.tif", np.zeros((2, 8, 8), np.uint16))

    class PathLike:
        def __fspath__(self) -> str:
            return str(tmp_path / "scan.tif")

    assert load_scan(PathLike()).image.shape == (2, 8, 8)


@pytest.mark.parametrize("flag", ["no", 1, None])
def test_a_require_mask_flag_that_is_not_true_or_false_is_refused_by_every_loader(sample_patient_dir, flag):
    """bool('no') is True: taken as it is, the flag would ask for the opposite of what was meant."""
    from napari_lgg_unet.engine.io import load_patients

    for load, name in ((load_scan, "require_mask"), (load_patient, "require_masks"), (load_patients, "require_masks")):
        with pytest.raises(InputError, match=f"{name} must be true or false"):
            load(sample_patient_dir, flag)
    assert load_scan(sample_patient_dir, np.bool_(True)).mask is not None


def _slice_pair(folder, name, tumour_pixel=None):
    """A slice `<name>.tif` and its mask `<name>_mask.tif`, tumour at `tumour_pixel` (none when None)."""
    folder.mkdir(exist_ok=True)
    mask = np.zeros((8, 8), np.uint8)
    if tumour_pixel is not None:
        mask[tumour_pixel] = 255
    tifffile.imwrite(folder / f"{name}.tif", np.zeros((8, 8, 3), np.uint8))
    tifffile.imwrite(folder / f"{name}_mask.tif", mask)


def test_slices_of_two_patients_in_one_folder_are_refused_not_paired_by_number(tmp_path):
    patient = tmp_path / "P"
    _slice_pair(patient, "P_1", tumour_pixel=(1, 1))
    _slice_pair(patient, "Q_1")  # paired by number, Q's empty mask could land on P's slice
    with pytest.raises(InputError, match=r"slices of 2 patients \(P and Q\)"):
        load_patient(patient, require_masks=True)


@pytest.mark.parametrize("twin", ["P_01.tif", "P_1_mask.tiff"])
def test_two_files_for_one_slice_are_refused_by_name(tmp_path, twin):
    patient = tmp_path / "P"
    _slice_pair(patient, "P_1", tumour_pixel=(1, 1))
    tifffile.imwrite(patient / twin, np.zeros((8, 8), np.uint8))
    with pytest.raises(InputError, match=f"{twin}.* are files of one slice"):
        # two slice files are refused always; two mask files where masks are needed (else the scan is read without)
        load_patient(patient, require_masks="_mask" in twin)


def test_a_mask_without_its_slice_is_refused_when_masks_are_read_for_training(tmp_path):
    patient = tmp_path / "P"
    _slice_pair(patient, "P_1")
    _slice_pair(patient, "P_2", tumour_pixel=(1, 1))
    (patient / "P_2.tif").unlink()  # its tumour would be left out of training and scoring without a word
    with pytest.raises(InputError, match="no slice image beside the mask P_2_mask.tif"):
        load_patient(patient, require_masks=True)
    assert load_patient(patient).image.shape[0] == 1  # viewing needs no masks: the slice opens


def test_a_mask_slice_resampled_with_linear_interpolation_is_refused_by_name(tmp_path):
    patient = tmp_path / "P"
    _slice_pair(patient, "P_1", tumour_pixel=(1, 1))
    blurred = np.zeros((8, 8), np.float32)
    blurred[1:4, 1:4], blurred[2, 2] = 0.3, 1.0  # read as > 0, its tumour would be nine pixels, not one
    tifffile.imwrite(patient / "P_1_mask.tif", blurred)
    with pytest.raises(InputError, match="mask P_1_mask.tif holds fractional values"):
        load_patient(patient, require_masks=True)


@pytest.mark.parametrize("channels", [2, 4])
def test_a_mask_slice_opaque_all_over_is_read_by_its_colour_not_as_all_tumour(tmp_path, channels):
    """Grey + alpha or RGBA, as paint programs and PIL's convert("RGBA") save a mask: the alpha, opaque everywhere,
    counted as a channel made every pixel tumour."""
    patient = tmp_path / "P"
    _slice_pair(patient, "P_1")
    with_alpha = np.zeros((8, 8, channels), np.uint8)
    with_alpha[1, 1, :-1], with_alpha[..., -1] = 255, 255  # one tumour pixel; opaque everywhere, as painted
    tifffile.imwrite(patient / "P_1_mask.tif", with_alpha, photometric="rgb" if channels == 4 else "minisblack",
                     extrasamples=["unassalpha"])
    assert np.argwhere(load_patient(patient, require_masks=True).mask).tolist() == [[0, 1, 1]]


@pytest.mark.parametrize("alpha", ["painted", "transparent"])
def test_a_mask_slice_whose_transparency_may_hold_the_tumour_is_refused(tmp_path, alpha):
    """A tumour painted on a transparent layer is in the alpha (its colour black), and a slice transparent all over
    shows nothing: which channel is the mask is unknown."""
    patient = tmp_path / "P"
    _slice_pair(patient, "P_1")
    with_alpha = np.zeros((8, 8, 4), np.uint8)
    with_alpha[1, 1, -1] = 255 if alpha == "painted" else 0
    tifffile.imwrite(patient / "P_1_mask.tif", with_alpha, photometric="rgb", extrasamples=["unassalpha"])
    with pytest.raises(InputError, match="mask P_1_mask.tif has 4 channels, the last of them transparency .* not "
                                         "opaque all over"):
        load_patient(patient, require_masks=True)


def _copy_of(patient, tmp_path):
    """A copy of a patient folder to change (the fixture's folder is shared by the session's tests)."""
    return shutil.copytree(patient, tmp_path / patient.name)


def test_a_patients_flair_saved_as_its_masks_is_refused_not_read_as_tumour(sample_patient_dir, tmp_path):
    """The FLAIR channel saved under the masks' names: read as labels, 59 % of the patient was tumour, which training
    learnt and evaluate scored without a word."""
    patient = _copy_of(sample_patient_dir, tmp_path)
    for mask in patient.glob("*_mask.tif"):
        tifffile.imwrite(mask, tifffile.imread(mask.with_name(mask.name.replace("_mask", "")))[..., 1])
    with pytest.raises(InputError, match=f"mask {SAMPLE_PATIENT}_1_mask.tif holds 195 distinct values; a tumour mask "
                                         "holds at most 16 .* an image saved as a mask"):
        load_patient(patient, require_masks=True)


def test_a_mask_slice_filled_with_255_is_refused_not_read_as_all_tumour(sample_patient_dir, tmp_path):
    patient = _copy_of(sample_patient_dir, tmp_path)
    tifffile.imwrite(patient / f"{SAMPLE_PATIENT}_12_mask.tif", np.full((256, 256), 255, np.uint8))
    with pytest.raises(InputError, match=rf"mask {SAMPLE_PATIENT}_12_mask.tif holds no 0 \(background\) anywhere"):
        load_patient(patient, require_masks=True)


def test_every_real_lgg_patient_is_numbered_without_gaps_and_its_masks_read_as_masks(lgg_root):
    """What refuses slice gaps and images saved as masks passes every patient we have: 81 folders of slices numbered
    from 1 without a gap, their 0/255 masks (the slices' pixels are not read here, to stay fast)."""
    from napari_lgg_unet.engine.io import _paired_slices, read_tiff
    from napari_lgg_unet.engine.scan_checks import tumour_of_labels

    pairs = [pair for folder in patient_folders(lgg_root) for pair in _paired_slices(folder, require_masks=True)]
    assert len(pairs) > 2000
    assert sum(tumour_of_labels(str(mask), read_tiff(mask)).sum() for _, [mask] in pairs) > 0


@pytest.mark.parametrize(("lost", "refusal"), [
    ([12], f"1 slice missing \\({SAMPLE_PATIENT}_12\\)"),
    ([5, 6, 7, 12], f"4 slices missing \\({SAMPLE_PATIENT}_5 to {SAMPLE_PATIENT}_7 and {SAMPLE_PATIENT}_12\\)"),
], ids=["one slice", "two gaps"])
def test_a_patient_with_missing_slice_numbers_is_refused_naming_them_not_stacked_as_neighbours(
        sample_patient_dir, tmp_path, lost, refusal):
    """Without `_12.tif` (and its mask), slices 11 and 13 were stacked as neighbours: the model's neighbouring-slice
    input, the 3D tumour pieces and the mask written back all took them as adjacent, without a word."""
    patient = _copy_of(sample_patient_dir, tmp_path)
    for number in lost:
        (patient / f"{SAMPLE_PATIENT}_{number}.tif").unlink()
        (patient / f"{SAMPLE_PATIENT}_{number}_mask.tif").unlink()
    for require_masks in (True, False):  # training and evaluate, and segmenting or viewing alike
        with pytest.raises(InputError, match=f"{SAMPLE_PATIENT}: {refusal}, so the slices either side"):
            load_patient(patient, require_masks=require_masks)


def test_a_patient_whose_numbers_start_above_1_is_no_gap(sample_patient_dir, tmp_path):
    """Slices 5 to 24 of a patient (the rest cropped away) are adjacent, as their numbers say."""
    patient = _copy_of(sample_patient_dir, tmp_path)
    for number in range(1, 5):
        (patient / f"{SAMPLE_PATIENT}_{number}.tif").unlink()
        (patient / f"{SAMPLE_PATIENT}_{number}_mask.tif").unlink()
    assert load_patient(patient, require_masks=True).mask.shape == (20, 256, 256)


def test_a_scan_given_as_a_link_to_nothing_is_refused_saying_where_the_link_leads(tmp_path):
    """`--input link.nii.gz`, a link to a drive not mounted, said only 'path not found: link.nii.gz', which the user
    could see lying there."""
    (tmp_path / "link.nii.gz").symlink_to(tmp_path / "unmounted" / "x.nii.gz")
    with pytest.raises(InputError, match=f"link.nii.gz is a link to {tmp_path / 'unmounted' / 'x.nii.gz'}, which does "
                                         "not exist"):
        load_scan(tmp_path / "link.nii.gz")
    with pytest.raises(InputError, match="path not found"):
        load_scan(tmp_path / "absent.nii.gz")
