"""The registry of scan formats: which format claims a path, masks written in every mask format, the manifest kept in
step with it, a new format added as one class plus one registration, and the header checks as a load runs them."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import tifffile
import yaml

from napari_lgg_unet import reader, writer
from napari_lgg_unet.engine import formats, scan_checks
from napari_lgg_unet.engine.errors import InputError
from napari_lgg_unet.engine.formats import FORMATS, format_of
from napari_lgg_unet.engine.io import (Scan, find_scans, load_patients, load_scan, mask_file_name, source_mask_name,
                                      write_mask)
from napari_lgg_unet.engine.volumes import Geometry, covered_fraction

from dicom_files import write_slice


def _nifti(path: Path, shape=(8, 8, 4), affine=np.eye(4)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random(shape, dtype=np.float32), affine), path)
    return path


def _kaggle(folder: Path) -> Path:
    folder.mkdir(parents=True)
    tifffile.imwrite(folder / f"{folder.name}_1.tif", np.zeros((16, 16, 3), np.uint8))
    return folder


def _nnunet(root: Path) -> Path:
    _nifti(root / "imagesTr" / "case_0000.nii.gz")
    (root / "dataset.json").write_text('{"channel_names": {"0": "FLAIR"}, "labels": {"background": 0}}')
    return root


def _dicom(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for index in range(3):
        write_slice(folder, f"{index}.dcm", "1.2.9", "FLAIR", index * 2.5, np.zeros((4, 5)))
    return folder


PATHS = {
    "TiffStack": lambda root: tifffile.imwrite(root / "s.tif", np.zeros((2, 8, 8), np.uint8)) or root / "s.tif",
    "NiftiVolume": lambda root: _nifti(root / "s.nii.gz"),
    "ItkVolume": lambda root: (
        sitk.WriteImage(sitk.Image([4, 5, 3], sitk.sitkInt16), str(root / "s.nrrd")) or root / "s.nrrd"
    ),
    "KaggleFolder": lambda root: _kaggle(root / "P"),
    "NnunetFolder": lambda root: _nnunet(root / "Dataset001"),
    "CaseFolder": lambda root: _nifti(root / "case" / "case_flair.nii.gz").parent,
    "DicomFolder": lambda root: _dicom(root / "series"),
}


@pytest.mark.parametrize("kind", PATHS)
def test_each_path_is_claimed_by_the_one_format_that_reads_it(kind, tmp_path):
    path = PATHS[kind](tmp_path)
    assert type(format_of(path)).__name__ == kind
    assert reader.get_reader(str(path)) is not None
    assert [type(f).__name__ for f in FORMATS].count(kind) == 1


@pytest.mark.parametrize("kind", PATHS)
def test_a_scans_mask_name_is_known_from_its_source_before_the_scan_is_read(kind, tmp_path):
    """A cohort run checks the masks it will replace (a colleague's in a shared folder, one that does not fit its
    scan) before it segments a case, by the name `source_mask_name` gives: the one its mask is written as."""
    path = PATHS[kind](tmp_path)
    sources = [path, *find_scans(path)] if kind != "NnunetFolder" else find_scans(path)  # a dataset is no one scan
    assert [source_mask_name(source) for source in sources] == [mask_file_name(load_scan(source)) for source in sources]


def test_paths_no_format_claims_are_refused_with_what_is_read(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    assert format_of(tmp_path / "notes.txt") is None and reader.get_reader(str(tmp_path / "notes.txt")) is None
    with pytest.raises(InputError, match=r"not a scan file \(\.tif, \.tiff, \.nii\.gz, \.nii, \.nrrd"):
        load_scan(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="holds no scans: no TIFF stacks .*; no DICOM image series"):
        load_scan(tmp_path / "empty")
    stacks = tmp_path / "stacks"  # loose stacks, as the packaged samples folder holds: not a Kaggle patient
    stacks.mkdir()
    for name in ("A_image.tif", "A_mask.tif", "B_image.tif"):
        tifffile.imwrite(stacks / name, np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(InputError, match=r"holds TIFF stacks \(A_image.tif, A_mask.tif and 1 more\), which are read "
                                         "one file at a time: give one of them"):
        load_scan(stacks)
    for load in (lambda: load_patients(stacks), lambda: load_scan(stacks, require_mask=True)):  # "one of them" has none
        with pytest.raises(InputError, match=r"holds TIFF stacks \(.*\), which carry no masks; to train or evaluate"):
            load()


def test_the_napari_manifest_lists_exactly_the_registered_suffixes():
    manifest = yaml.safe_load((Path(formats.__file__).parents[1] / "napari.yaml").read_text())
    patterns = manifest["contributions"]["readers"][0]["filename_patterns"]
    extensions = manifest["contributions"]["writers"][0]["filename_extensions"]
    assert sorted(p for p in patterns if p != "*") == sorted(f"*{s}" for f in FORMATS for s in f.suffixes)
    assert sorted(extensions) == sorted(s for f in FORMATS for s in f.mask_suffixes)


@pytest.mark.parametrize("suffix", [s for f in FORMATS for s in f.mask_suffixes])
def test_a_mask_written_in_each_mask_format_reads_back_on_its_scan_grid(suffix, tmp_path):
    affine = np.array([[0, 0, -2.0, 40], [0.9, 0, 0, -30], [0, 1.1, 0, 12], [0, 0, 0, 1]])
    scan = load_scan(_nifti(tmp_path / "scan.nii.gz", (8, 6, 4), affine))
    mask = np.zeros(scan.image.shape, bool)
    mask[1, 2:4, 1:5] = True
    write_mask(tmp_path / f"m{suffix}", mask, scan)
    back = load_scan(tmp_path / f"m{suffix}")
    np.testing.assert_array_equal(back.image > 0, mask)  # TIFFs: the engine layout, volumes: back on the source grid


@pytest.mark.parametrize("name", ["m.mhd", "m", "m.png"])  # .mhd: a header and a data file; the others: no format
def test_a_mask_name_that_cannot_be_written_atomically_or_names_no_format_is_refused_naming_those_that_can(
        name, tmp_path):
    scan = Scan("s", np.zeros((2, 4, 4), np.uint8), rgb=False)
    with pytest.raises(
        InputError,
        match=rf"cannot write a mask as {re.escape(name)}: use \.tif, \.tiff, \.nii\.gz, \.nii, \.nrrd, \.mha$",
    ):
        write_mask(tmp_path / name, np.zeros((2, 4, 4)), scan)
    assert not list(tmp_path.iterdir())


class _NumpyStack(formats.ScanFormat):
    """A format added by a test: a .npy stack, read without unpickling."""

    description = "NumPy stacks (.npy)"
    suffixes = mask_suffixes = (".npy",)

    def read(self, path: Path, require_mask: bool = False) -> Scan:
        return Scan(path.stem, np.load(path, allow_pickle=False), rgb=False)

    def write_mask(self, path: Path, mask: np.ndarray, geometry: Geometry | None) -> None:
        np.save(path, np.asarray(mask) > 0, allow_pickle=False)


def test_one_dicom_file_given_as_the_scan_is_refused_naming_its_folder(tmp_path):
    write_slice(tmp_path, "IM0001.dcm", "1.2.3.4", "AX FLAIR", 0.0, np.zeros((6, 8)))
    folder = re.escape(str(tmp_path))
    with pytest.raises(InputError, match=rf"IM0001.dcm is one DICOM file; give the folder .*\({folder}\)"):
        load_scan(tmp_path / "IM0001.dcm")


def test_a_new_format_is_one_class_and_one_registration(tmp_path, monkeypatch):
    np.save(tmp_path / "scan.npy", np.arange(2 * 8 * 8, dtype=np.uint16).reshape(2, 8, 8))
    with pytest.raises(InputError, match="not a scan file"):
        load_scan(tmp_path / "scan.npy")
    monkeypatch.setattr(formats, "FORMATS", (*FORMATS, _NumpyStack()))
    scan = load_scan(tmp_path / "scan.npy")
    assert scan.image.shape == (2, 8, 8) and find_scans(tmp_path / "scan.npy") == [tmp_path / "scan.npy"]
    assert reader.get_reader(str(tmp_path / "scan.npy"))(str(tmp_path / "scan.npy"))[0][0].shape == (2, 8, 8)
    write_mask(tmp_path / "m.npy", scan.image > 60, scan)
    writer.write_labels(str(tmp_path / "w.npy"), (scan.image > 60).astype(np.uint8), {})
    np.testing.assert_array_equal(np.load(tmp_path / "m.npy"), np.load(tmp_path / "w.npy"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match=r"\.mhd, \.npy\)$"):  # the refusal lists what is read, the new format too
        load_scan(tmp_path / "notes.txt")


def test_a_folder_of_cases_is_listed_but_refused_as_one_scan_naming_its_cases(tmp_path):
    for name in ("a", "b"):
        _nifti(tmp_path / "cohort" / f"{name}.nii.gz")
    assert [s.name for s in find_scans(tmp_path / "cohort")] == ["a", "b"]
    with pytest.raises(InputError, match=r"holds 2 scans \(a and b\); give one of them"):
        load_scan(tmp_path / "cohort")


def test_a_header_larger_than_free_memory_is_refused_before_its_voxels_are_read(tmp_path, monkeypatch):
    path = _nifti(tmp_path / "s.nii.gz", (32, 32, 8))
    monkeypatch.setattr(scan_checks, "available_memory", lambda: 32 * 32 * 8 * 4)  # one copy fits, two do not
    monkeypatch.setattr(nib.arrayproxy.ArrayProxy, "__array__", lambda *_: pytest.fail("voxels were read"))
    with pytest.raises(InputError, match="32 x 32 x 8 float32 voxels .* of memory free"):
        load_scan(path)


def test_broken_nifti_geometry_is_refused_with_nothing_on_stderr(tmp_path, capfd):
    import struct

    raw = bytearray(nib.Nifti1Image(np.ones((8, 8, 4), np.float32), np.eye(4)).to_bytes())
    struct.pack_into("<3f", raw, 80, 0.0, 1.0, 1.0)  # pixdim[1] = 0 ...
    struct.pack_into("<2h", raw, 252, 0, 0)  # ... and no qform or sform: pixdim places the voxels
    (tmp_path / "zero.nii").write_bytes(bytes(raw))
    with pytest.raises(InputError, match="pixdim voxel size of 0 x 1 x 1 mm"):
        load_scan(tmp_path / "zero.nii")
    assert capfd.readouterr().err == ""  # nibabel would log that it set the size to 1


def test_sequences_are_refused_only_when_they_miss_most_of_the_flair(tmp_path):
    flair = Geometry.of((10, 10, 10), np.eye(4))
    shifted = np.eye(4)
    shifted[0, 3] = 4.0
    assert covered_fraction(flair, flair) == 1.0 and covered_fraction(Geometry.of((10, 10, 10), shifted), flair) == 0.6
    case = tmp_path / "case"
    _nifti(case / "a_flair.nii.gz", (10, 10, 10))
    _nifti(case / "a_t1ce.nii.gz", (10, 10, 10), shifted)  # 60 % overlap: resampled, as before
    assert load_scan(case).image.shape == (10, 10, 10, 3)
    shifted[0, 3] = 6.0
    _nifti(case / "a_t1ce.nii.gz", (10, 10, 10), shifted)  # 40 %: refused by name
    with pytest.raises(InputError, match="post-contrast T1 .*a_t1ce.nii.gz covers 40% of the FLAIR's field of view"):
        load_scan(case)
