"""dicom: series written here with pydicom: slice order by position, orientation, study folders, bad series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from dicom_files import write_slice as _slice

from napari_lgg_unet.engine.dicom import list_series, series_by_sequence
from napari_lgg_unet.engine.errors import InputError
from napari_lgg_unet.engine.io import load_scan, write_mask
from napari_lgg_unet.engine.sequences import FLAIR, POST, PRE

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
