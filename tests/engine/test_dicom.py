"""dicom: series written here with pydicom: slice order by position, orientation, study folders, bad series."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from dicom_files import counting_gdcm_scans, write_multiframe, write_slice as _slice, write_studies

from napari_lgg_unet.engine import dicom
from napari_lgg_unet.engine.dicom import list_series, series_by_sequence
from napari_lgg_unet.engine.errors import InputError, InputWarning
from napari_lgg_unet.engine.io import find_scans, is_one_scan, load_scan, write_mask
from napari_lgg_unet.engine.sequences import FLAIR, POST, PRE
from napari_lgg_unet.engine.stopping import Stopped
from napari_lgg_unet.engine.volumes import from_engine

ROWS, COLUMNS, SLICES, THICKNESS = 6, 8, 4, 2.5


def _series(folder: Path, description: str, offset: int = 0, shape=(ROWS, COLUMNS)) -> None:
    """Slices named in reverse order of position, so only sorting by position gets them right.

    Pixel value = 100 * (slice height in mm) + column + offset: the slice order and the left-right axis are visible.
    """
    folder.mkdir(parents=True, exist_ok=True)
    series = generate_uid()
    for index in range(SLICES):
        z = index * THICKNESS
        pixels = np.broadcast_to(100 * z + np.arange(shape[1]) + offset, shape)
        _slice(folder, f"{SLICES - index:03d}_{description or 'x'}.dcm", series, description, z, pixels)


def test_a_dicom_series_is_sorted_by_position_and_oriented_like_the_lgg_slices(tmp_path):
    _series(tmp_path / "flair", "AX FLAIR")
    scan = load_scan(tmp_path / "flair")
    assert scan.image.shape == (SLICES, ROWS, COLUMNS) and scan.rgb is False
    assert scan.spacing == (THICKNESS, 1.0, 1.0)
    np.testing.assert_array_equal(np.diff(scan.image, axis=0), 100 * THICKNESS)  # inferior -> superior
    # DICOM columns already run to the patient's left, which is the engine's W direction: unchanged.
    np.testing.assert_array_equal(scan.image[0, 0], np.arange(COLUMNS))
    write_mask(tmp_path / "m.nii.gz", scan.image > 250, scan)
    assert load_scan(tmp_path / "m.nii.gz").image.shape == scan.image.shape


def test_a_dicom_study_folder_becomes_a_case_by_series_description(tmp_path):
    _series(tmp_path / "study", "AX T2 FLAIR", offset=1)
    _series(tmp_path / "study", "AX T1 POST GD", offset=3)
    scan = load_scan(tmp_path / "study")
    assert scan.rgb and [int(scan.image[0, 0, 0, c]) for c in range(3)] == [1, 1, 3]  # pre-contrast missing: FLAIR
    assert dict(scan.geometry.sources)["FLAIR"].startswith("DICOM series 'AX T2 FLAIR' (4 files)")


def test_a_stop_asked_while_a_folder_of_dicom_studies_is_listed_ends_the_listing_before_the_next_study(
        tmp_path, monkeypatch):
    """Listing a study reads every file's header (about a second for 3 series of 155 slices), and the listing of a
    folder of studies went on to the end whatever was asked."""
    write_studies(tmp_path, 3)
    listed, list_them = [], dicom.list_series
    monkeypatch.setattr(dicom, "list_series", lambda folder: listed.append(Path(folder).name) or list_them(folder))
    with pytest.raises(Stopped):
        find_scans(tmp_path, require_masks=True, stop=lambda: "study0" in listed)
    assert "study0" in listed and not {"study1", "study2"} & set(listed)
    assert [case.name for case in find_scans(tmp_path)] == ["study0", "study1", "study2"]  # nothing asked: all


def test_listing_a_dicom_study_reads_each_files_header_once_per_series_question(tmp_path, monkeypatch):
    """find_scans asked a study folder's series three times (which format claims it, its case, whether it is one
    scan), and GDCM read every file's header each time: 15 opens per file of a 4-series study."""
    for description in ("AX T2 FLAIR", "AX T1", "AX T1 POST GD"):
        _series(tmp_path / "study", description)
    scans = counting_gdcm_scans(monkeypatch)
    assert len(find_scans(tmp_path / "study")) == 1
    assert len(scans) == 1 + 3 and set(scans.values()) == {1}
    _series(tmp_path / "study", "AX T2")  # a later listing sees the folder as it is then
    scans.clear()
    assert is_one_scan(tmp_path / "study") and len(list_series(tmp_path / "study")) == 4
    assert len(scans) == 1 + 4 and set(scans.values()) == {2}  # outside a listing nothing is remembered


def test_loading_a_dicom_study_folder_scans_each_of_its_series_once(tmp_path, monkeypatch):
    """load_scan (the napari reader's) asked which format claims the folder, then read it as a case: GDCM read every
    file's header for each question."""
    for description in ("AX T2 FLAIR", "AX T1", "AX T1 POST GD"):
        _series(tmp_path / "study", description)
    scans = counting_gdcm_scans(monkeypatch)
    assert load_scan(tmp_path / "study").image.shape == (SLICES, ROWS, COLUMNS, 3)
    assert len(scans) == 1 + 3 and set(scans.values()) == {1}


def test_dicom_folders_that_cannot_be_read_as_one_scan_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "note.txt").write_text("x")
    with pytest.raises(InputError, match="holds no scans: .*; no DICOM image series"):
        load_scan(tmp_path / "empty")
    _series(tmp_path / "two", "SAG T1")
    _series(tmp_path / "two", "COR T2")
    with pytest.raises(InputError, match="2 DICOM series and none is described as FLAIR"):
        load_scan(tmp_path / "two")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    _slice(mixed, "a.dcm", "9.9", "FLAIR", 0.0, np.zeros((ROWS, COLUMNS)))
    _slice(mixed, "b.dcm", "9.9", "FLAIR", 2.5, np.zeros((ROWS + 2, COLUMNS)))
    with pytest.raises(InputError, match="mixes images of different sizes"):
        load_scan(mixed)


def test_a_volume_file_is_read_whatever_dicom_folders_lie_beside_it(tmp_path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((5, 6, 3), np.float32), np.eye(4)), tmp_path / "scan.nii.gz")
    _series(tmp_path / "study_t1", "AX T1")  # another patient's study beside it, named like a sequence folder
    _series(tmp_path / "study_t1", "SAG T1")
    assert load_scan(tmp_path / "scan.nii.gz").image.shape == (3, 6, 5)


def test_looking_for_series_in_a_folder_without_dicom_prints_nothing(tmp_path, capfd):
    (tmp_path / "note.txt").write_text("x")
    assert list_series(tmp_path) == []
    assert capfd.readouterr().err == ""  # ITK's own warning would come before the CLI's one-line error


def test_series_feed_channels_by_description_and_the_longest_of_one_kind_wins(tmp_path):
    _series(tmp_path, "AX FLAIR")
    _series(tmp_path, "AX T1")
    _series(tmp_path, "SAG T1", shape=(ROWS, COLUMNS - 2))
    (tmp_path / "001_SAG T1.dcm").unlink()  # the sagittal T1 now has fewer slices
    found = {s.description: s for s in list_series(tmp_path)}
    assert {d: len(s.files) for d, s in found.items()} == {"AX FLAIR": SLICES, "AX T1": SLICES, "SAG T1": SLICES - 1}
    assert series_by_sequence(tmp_path) == {FLAIR: found["AX FLAIR"], PRE: found["AX T1"]}
    assert POST not in series_by_sequence(tmp_path)


def _series_at(folder: Path, positions: list[tuple[float, float, float]], **options) -> list[np.ndarray]:
    """One series, slice k (pixel value 100 * k + 10 * row + column) at LPS `positions[k]`, named in reverse order of
    position; returns the positions as arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    series = generate_uid()
    for index, (x, y, z) in enumerate(positions):
        pixels = 100 * index + 10 * np.arange(ROWS)[:, None] + np.arange(COLUMNS)
        _slice(folder, f"{len(positions) - index:03d}.dcm", series, "AX FLAIR", z, pixels, corner=(x, y), **options)
    return [np.array(p, dtype=float) for p in positions]


def test_a_mask_written_for_an_oblique_dicom_series_puts_every_voxel_where_its_file_says(tmp_path):
    import nibabel as nib

    row, column = np.array([np.cos(0.3), 0.0, np.sin(0.3)]), np.array([0.0, 1.0, 0.0])  # tilted about P
    normal = np.cross(row, column)
    corner = np.array([-10.0, -20.0, 5.0])
    # the first slice is missing (the series starts one step later): that is a series, not a gap
    positions = _series_at(tmp_path / "s", [tuple(corner + k * 2.5 * normal) for k in range(1, SLICES + 1)],
                           orientation=(*row, *column), pixel_spacing=(0.8, 0.9))
    scan = load_scan(tmp_path / "s")
    write_mask(tmp_path / "m.nii.gz", scan.image >= 0, scan)
    written = nib.load(tmp_path / "m.nii.gz")
    on_grid = np.asarray(written.dataobj)
    assert on_grid.shape == (COLUMNS, ROWS, SLICES) and on_grid.all()
    values = from_engine(scan.image, scan.geometry)  # on the mask's grid, each voxel's file, row and column
    for index in np.ndindex(values.shape):
        k, r, c = int(values[index]) // 100, int(values[index]) // 10 % 10, int(values[index]) % 10
        lps = positions[k] + c * 0.9 * row + r * 0.8 * column  # PixelSpacing is (row step, column step)
        np.testing.assert_allclose((written.affine @ [*index, 1])[:3], lps * [-1, -1, 1], atol=1e-3)


@pytest.mark.parametrize("positions, phrase", [
    # each step under 10 % wider than the narrowest, but ITK's one averaged step misplaces the middle slices by ~1 mm
    ([(-10.0, -20.0, 2.5 * k) for k in range(10)] + [(-10.0, -20.0, 22.5 + 2.7 * k) for k in range(1, 11)],
     "unevenly spaced"),
    # even steps along the normal, but each slice 1 mm further right: ITK would stack them straight
    ([(-10.0 + k, -20.0, 2.5 * k) for k in range(SLICES)], "not stacked along"),
], ids=["uneven steps", "slices sliding sideways"])
def test_a_dicom_series_that_one_regular_grid_cannot_place_is_refused(tmp_path, positions, phrase):
    _series_at(tmp_path / "s", positions)
    with pytest.raises(InputError, match=f"lies .* mm from where .*{phrase}"):
        load_scan(tmp_path / "s")


def test_a_gantry_tilted_series_is_refused_not_stacked_straight(tmp_path):
    # as CT-style tilted acquisitions store it: slices tilted 15 degrees about the left-right axis, each placed where
    # the table stood (straight up), so its slices are not stacked along their normal; every voxel would be misplaced
    tilt = np.radians(15)
    _series_at(tmp_path / "s", [(-10.0, -20.0, THICKNESS * k) for k in range(SLICES)],
               orientation=(1.0, 0.0, 0.0, 0.0, np.cos(tilt), np.sin(tilt)))
    with pytest.raises(InputError, match=r"001.dcm lies 1.9\d mm from where a regular stack .*\(a tilted gantry\)"):
        load_scan(tmp_path / "s")


def test_small_rounding_in_dicom_slice_positions_is_read(tmp_path):
    _series_at(tmp_path / "s", [(-10.0, -20.0, 2.5 * k + (0.01 if k == 2 else 0.0)) for k in range(SLICES)])
    assert load_scan(tmp_path / "s").spacing == pytest.approx((2.5, 1.0, 1.0))


def test_a_dicom_series_mixing_pixel_spacings_is_refused(tmp_path):
    series = generate_uid()
    for index in range(SLICES):
        _slice(tmp_path, f"{index}.dcm", series, "FLAIR", index * THICKNESS, np.zeros((ROWS, COLUMNS)),
               pixel_spacing=(1.0, 1.0) if index < 2 else (0.5, 0.5))
    with pytest.raises(InputError, match="mixes images of different sizes, pixel spacings or orientations"):
        load_scan(tmp_path)


def test_a_colour_dicom_series_is_refused_like_a_colour_nifti(tmp_path):
    series = generate_uid()  # a screenshot-like series: its R, G, B are no pre-contrast T1, FLAIR, post-contrast T1
    for index in range(SLICES):
        _slice(tmp_path, f"{index}.dcm", series, "FLAIR", index * THICKNESS, np.zeros((ROWS, COLUMNS, 3)))
    with pytest.raises(InputError, match="holds RGB colour voxels; the model needs grey MRI intensities"):
        load_scan(tmp_path)


def test_a_multiframe_dicom_file_is_refused_with_what_to_do_not_a_traceback(tmp_path):
    # ITK reads its frames at one spacing, 1 mm where they are uneven: their positions cannot be checked here
    write_multiframe(tmp_path / "enhanced.dcm", [0.0, 2.5, 7.5, 10.0])
    with pytest.raises(InputError, match=r"enhanced.dcm is a multi-frame .* of 4 frames.*dcm2niix"):
        load_scan(tmp_path)


def test_slices_stored_with_their_own_rescale_keep_their_intensities(tmp_path):
    # ITK reads a series in its first slice's pixel type (here unsigned 16-bit): the other slices' intensities,
    # negative or fractional after their own RescaleSlope / RescaleIntercept, wrapped round or lost their fractions
    series, pixels = generate_uid(), np.arange(ROWS * COLUMNS, dtype=float).reshape(ROWS, COLUMNS) * 0.5 - 10
    rescales = [(1.0, 0.0), (0.5, -10.0), (0.25, -1000.0), (0.5, -40.0)]
    for index, rescale in enumerate(rescales):
        first = index == 0  # its pixels are whole and positive, so its own rescale is exact
        _slice(tmp_path, f"{index}.dcm", series, "FLAIR", index * THICKNESS, np.abs(pixels).round() if first else
               pixels, rescale=rescale)
    image = load_scan(tmp_path).image
    np.testing.assert_array_equal(image[0], np.abs(pixels).round())
    np.testing.assert_array_equal(image[1:], np.broadcast_to(pixels, (SLICES - 1, ROWS, COLUMNS)))


@pytest.mark.parametrize("second_echo_at", [0.0, THICKNESS / 2])  # the first echo's positions, or between them
def test_a_series_of_two_echoes_is_refused_not_stacked_as_one_volume(tmp_path, second_echo_at):
    # a dual-echo (proton density / T2) series: its echoes' slices would alternate contrasts in one volume
    series = generate_uid()
    for index in range(SLICES):
        for echo, (time, shift) in enumerate([(15.0, 0.0), (90.0, second_echo_at)]):
            _slice(tmp_path, f"e{echo}_{index}.dcm", series, "PD T2", index * THICKNESS + shift,
                   np.full((ROWS, COLUMNS), echo), echo_time=time)
    with pytest.raises(InputError, match=r"slices of 2 echo times \(15 ms: e0_0.dcm; 90 ms: e1_0.dcm\)"):
        load_scan(tmp_path)


def test_a_series_of_one_echo_time_in_several_acquisitions_is_read(tmp_path):
    series = generate_uid()  # a scanner's concatenations: one echo time, the slices shared between acquisitions
    for index in range(SLICES):
        _slice(tmp_path, f"{index}.dcm", series, "FLAIR", index * THICKNESS, np.zeros((ROWS, COLUMNS)),
               echo_time=90.0 if index % 2 else 90.000001)
    assert load_scan(tmp_path).image.shape == (SLICES, ROWS, COLUMNS)


def test_a_dicom_series_without_slice_positions_is_refused_naming_the_file_not_as_duplicates(tmp_path):
    # GDCM puts a slice without ImagePositionPatient at 0 mm: refused as "both at slice position 0.00 mm; remove the
    # duplicate file", the user was told to delete real slices
    import pydicom

    _series(tmp_path / "s", "AX FLAIR")
    for file in sorted((tmp_path / "s").iterdir())[1:]:
        ds = pydicom.dcmread(file)
        del ds.ImagePositionPatient
        ds.save_as(file)
    message = r"00[234]_AX FLAIR.dcm has no slice position \(ImagePositionPatient\), nor have 2 other files"
    with pytest.raises(InputError, match=message):
        load_scan(tmp_path / "s")


def test_a_series_repeating_its_slices_is_refused_as_acquisitions_not_as_duplicate_files(tmp_path):
    # a dynamic series (time points at the same positions) exported as one series: its files are no copies
    series = generate_uid()
    for acquisition in (1, 2):
        for index in range(SLICES):
            _slice(tmp_path, f"a{acquisition}_{index}.dcm", series, "DYN T1", index * THICKNESS,
                   np.full((ROWS, COLUMNS), acquisition), acquisition=acquisition)
    with pytest.raises(InputError, match=r"2 files at each of its 4 slice positions \(a1_0.dcm and a2_0.dcm are both "
                                         r"at slice position 0.00 mm, from acquisitions 1 and 2\): the series "
                                         "repeats its slices") as refused:
        load_scan(tmp_path)
    assert "remove the duplicate" not in str(refused.value)


def test_a_dynamic_series_of_40_time_points_is_refused_naming_three_of_its_files_not_all_40(tmp_path):
    # the refusal listed every file at the first shared position and its acquisition number: 950 characters
    series = generate_uid()
    for acquisition in range(1, 41):
        for index in range(2):
            _slice(tmp_path, f"t{acquisition:02}_{index}.dcm", series, "DYN T1", index * THICKNESS,
                   np.full((ROWS, COLUMNS), acquisition), acquisition=acquisition)
    with pytest.raises(InputError, match=r"40 files at each of its 2 slice positions \(t01_0.dcm, t02_0.dcm, "
                                         r"t03_0.dcm and 37 more are all at slice position 0.00 mm, from "
                                         r"acquisitions 1, 2, 3 and 37 more\): the series repeats") as refused:
        load_scan(tmp_path)
    assert "t04_0.dcm" not in str(refused.value) and len(str(refused.value)) < 500


def _slabs(folder: Path) -> None:
    """A regular series of 12 slices every 0.9 mm, each 10 mm thick (a thick-slab reformat, or an exporter's wrong
    SliceThickness): every slice overlaps its neighbours by more than nine tenths of its thickness."""
    _series_at(folder, [(-10.0, -20.0, 0.9 * k) for k in range(12)], thickness=10.0)


def test_a_regular_series_of_slices_thicker_than_ten_steps_is_read_not_refused_as_repeating_its_slices(tmp_path):
    # refused as "2 files at each of its 6 slice positions (... both at slice position 0.00 to 0.90 mm)"
    _slabs(tmp_path)
    scan = load_scan(tmp_path)
    assert scan.image.shape == (12, ROWS, COLUMNS) and scan.spacing == pytest.approx((0.9, 1.0, 1.0))
    np.testing.assert_array_equal(scan.image[:, 0, 0], 100 * np.arange(12))


@pytest.mark.parametrize("slices, step, thickness", [(2, 0.9, 10.0), (5, 0.2, 10.0), (20, 2.5, 500.0)])
def test_a_regular_series_all_within_a_tenth_of_its_slice_thickness_is_read(tmp_path, slices, step, thickness):
    # one group by thickness left no gap to compare with: refused as "20 files at each of its 1 slice positions"
    _series_at(tmp_path, [(-10.0, -20.0, step * k) for k in range(slices)], thickness=thickness)
    scan = load_scan(tmp_path)
    assert scan.image.shape == (slices, ROWS, COLUMNS) and scan.spacing[0] == pytest.approx(step)


def test_two_copies_of_one_file_are_counted_at_their_position_not_as_copies_elsewhere(tmp_path):
    # told "(1 more copy at other positions)" where both copies lie at the position named
    _slabs(tmp_path)
    shutil.copy(tmp_path / "012.dcm", tmp_path / "012 copy.dcm")
    shutil.copy(tmp_path / "012.dcm", tmp_path / "012 copy 2.dcm")
    with pytest.raises(InputError, match=r"012 copy 2.dcm, 012 copy.dcm and 012.dcm are all at slice position 0.00 mm "
                                         r"and hold the same image; remove the duplicate files$"):
        load_scan(tmp_path)


def test_a_copied_file_in_a_series_of_slices_thicker_than_ten_steps_is_refused_as_a_duplicate(tmp_path):
    # its neighbour 0.9 mm away was taken for a third file at the copy's position: "the series repeats its slices"
    _slabs(tmp_path)
    shutil.copy(tmp_path / "012.dcm", tmp_path / "012 copy.dcm")
    with pytest.raises(InputError, match=r"\(13 files\) in .*: 012 copy.dcm and 012.dcm are both at slice position "
                                         r"0.00 mm and hold the same image; remove the duplicate file$"):
        load_scan(tmp_path)


def _repeated_scan(folder: Path, second_at: float = 0.0, same_pixels: bool = False,
                   second_positions: range = range(SLICES)) -> None:
    """A series scanned twice into one SeriesInstanceUID, with one echo time and no AcquisitionNumber: the repeat's
    slices at `second_positions` (slice indices), `second_at` mm above the first scan's, with other pixels (or the
    same: a copy of each file, written again)."""
    series = generate_uid()
    for repeat, indices in enumerate([range(SLICES), second_positions]):
        for index in indices:
            pixels = np.full((ROWS, COLUMNS), index + (0 if same_pixels else 100 * repeat))
            _slice(folder, f"r{repeat}_{index}.dcm", series, "AX FLAIR", index * THICKNESS + repeat * second_at,
                   pixels, thickness=THICKNESS, echo_time=90.0)


@pytest.mark.parametrize("second_at, where", [(0.0, "0.00"), (0.01, "0.00 to 0.01"), (0.2, "0.00 to 0.20")],
                         ids=["same positions", "1/100 mm above", "a twelfth of the thickness above"])
def test_a_scan_repeated_into_one_series_is_refused_saying_how_many_files_share_each_position(tmp_path, second_at,
                                                                                               where):
    # told "remove the duplicate file" (at the same positions) or "about 248 slice files missing" (0.01 mm above):
    # neither was true, and deleting files as told would have left a volume of both scans' slices
    _repeated_scan(tmp_path, second_at)
    with pytest.raises(InputError, match=rf"'AX FLAIR' \(8 files\) in .*: 2 files at each of its 4 slice positions "
                                         rf"\(r0_0.dcm and r1_0.dcm are both at slice position {where} mm\): the "
                                         r"series repeats its slices .* export the acquisition to segment as a "
                                         "series of its own") as refused:
        load_scan(tmp_path)
    assert "remove the duplicate" not in str(refused.value) and "missing" not in str(refused.value)


def test_a_repeat_of_some_slices_is_refused_saying_how_many_positions_hold_several_files(tmp_path):
    _repeated_scan(tmp_path, second_positions=range(1, 3))
    with pytest.raises(InputError, match=r"2 of its 4 slice positions hold 2 files each \(r0_1.dcm and r1_1.dcm "
                                         r"are both at slice position 2.50 mm\): the series repeats its slices"):
        load_scan(tmp_path)


def test_copies_of_a_series_files_are_refused_as_duplicate_files(tmp_path):
    _repeated_scan(tmp_path, same_pixels=True)
    with pytest.raises(InputError, match=r"r0_0.dcm and r1_0.dcm are both at slice position 0.00 mm and hold the "
                                         r"same image \(3 more copies at other positions\); remove the duplicate "
                                         "files$"):
        load_scan(tmp_path)


@pytest.mark.parametrize("second_at", [0.3, 1.0])
def test_a_scan_repeated_a_little_off_the_first_ones_positions_is_refused_as_two_stacks_not_missing_slices(
        tmp_path, second_at):
    _repeated_scan(tmp_path, second_at)  # told "about 6 slice files missing" (0.3 mm) or "1 missing" (1 mm)
    with pytest.raises(InputError, match=rf"{second_at:.2f} mm apart overlap by most of their 2.50 mm thickness: "
                                         r"two stacks of slices interleaved \(a scan repeated into one series\)"):
        load_scan(tmp_path)


def test_two_stacks_interleaved_half_a_slice_apart_are_still_read_as_one_volume(tmp_path):
    # a scanner's concatenations: two acquisitions of one echo time, each the other's gaps; a volume, not a repeat
    _repeated_scan(tmp_path, THICKNESS / 2)
    assert load_scan(tmp_path).image.shape == (2 * SLICES, ROWS, COLUMNS)


def test_a_series_without_image_orientation_is_read_with_a_warning_of_the_orientation_assumed(tmp_path):
    """GDCM takes rows to the left and columns to posterior when no ImageOrientationPatient says how the patient lies,
    as nibabel guesses for a NIfTI with both codes 0; that NIfTI was told of, this series was read without a word."""
    series = generate_uid()
    for index in range(SLICES):
        pixels = np.broadcast_to(np.arange(COLUMNS) + 100 * index, (ROWS, COLUMNS))
        _slice(tmp_path, f"{index}.dcm", series, "AX FLAIR", index * THICKNESS, pixels, orientation=None)
    with pytest.warns(InputWarning, match="has no orientation") as caught:
        scan = load_scan(tmp_path)
    assert len(caught) == 1 and "ImageOrientationPatient" in str(caught[0].message)
    assert "check that the brain looks upright" in str(caught[0].message)
    assert scan.image.shape == (SLICES, ROWS, COLUMNS)


@pytest.mark.parametrize("spacing, thickness, warned", [(None, 5.0, "1 mm deep"), (2.0, 5.0, "2 mm deep"),
                                                        (5.0, 5.0, None), (None, 1.0, None)])
def test_a_one_slice_series_whose_depth_is_not_its_thickness_warns_that_mm3_assume_that_depth(
        tmp_path, recwarn, spacing, thickness, warned):
    """ITK gives one slice the depth SpacingBetweenSlices, or 1 mm: with a 5 mm SliceThickness its tumour_mm3 was 5x
    too small without a word. The grid is kept (a mask must fit the slice as read); the figure's assumption is said."""
    _slice(tmp_path, "0.dcm", generate_uid(), "AX FLAIR", 0.0, np.ones((ROWS, COLUMNS)), thickness=thickness,
           spacing=spacing)
    scan = load_scan(tmp_path)
    said = [str(w.message) for w in recwarn if issubclass(w.category, InputWarning)]
    assert said == ([] if warned is None else [said[0]]) and all(warned in m and "mm³" in m for m in said)
    assert scan.image.shape == (1, ROWS, COLUMNS)
