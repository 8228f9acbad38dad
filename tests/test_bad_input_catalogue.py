"""The bad-input catalogue: each case is something a user (or a hostile file) can hand us.

Through the CLI every case ends with exit code 2, exactly one line on stderr and nothing half-written in the output
folder; through the API it raises the engine's own error type, with the same words. The widget cases are in
tests/widgets/test_bad_input_widgets.py; the bad model folders are shared with them (tests/bad_inputs.py). A manual
mask that cannot be used (BAD_MASKS) is refused so only where ground truth is needed (training, evaluation); predict,
the reader and the API without require_mask read its scan without it, with one warning.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import json
import math
import re
import shutil
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
from safetensors.torch import save_file

from bad_inputs import BAD_IMAGES, BAD_MODELS, make_bad_model
from napari_lgg_unet import cli, launch
from napari_lgg_unet.engine import batch_predict, model as model_module
from napari_lgg_unet.engine.augment import AugmentConfig
from napari_lgg_unet.engine.errors import InputError, InputWarning, LggUnetError, ModelError
from napari_lgg_unet.engine.io import Scan, load_scan, write_mask
from napari_lgg_unet.engine.model import default_model_path, load_model
from napari_lgg_unet.engine.postprocess import PostprocessConfig
from napari_lgg_unet.engine.predict import SegmentOptions, segment_volume
from napari_lgg_unet.engine.folder_lock import LOCK_FILE
from napari_lgg_unet.engine.run_folder import RESUME_FILE, RESUME_FORMAT, RunFolder
from napari_lgg_unet.engine.train import TrainConfig, train_model
from napari_lgg_unet.reader import get_reader


@dataclass
class Workspace:
    """Inputs for one case (in `inputs`), a good model and patient, and the output folder that must stay clean."""

    inputs: Path
    out: Path
    model: Path
    patient: Path
    held: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)  # locks a case holds until it ends

    def file(self, name: str, data: bytes) -> Path:
        (self.inputs / name).write_bytes(data)
        return self.inputs / name

    def tiff(self, name: str, data: np.ndarray) -> Path:
        tifffile.imwrite(self.inputs / name, data)
        return self.inputs / name

    def nifti(self, name: str, data: np.ndarray, folder: Path | None = None) -> Path:
        path = (folder or self.inputs) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(data, np.eye(4)), path)
        return path

    def folder(self, name: str) -> Path:
        (self.inputs / name).mkdir()
        return self.inputs / name

    def kaggle_patient(self, image: np.ndarray, masks: list[np.ndarray] | None) -> Path:
        """A Kaggle-style folder `P` with one `P_<n>.tif` per slice of `image` and the given `_mask.tif` slices."""
        folder = self.folder("P")
        for number, data in enumerate(image, start=1):
            tifffile.imwrite(folder / f"P_{number}.tif", data)
        for number, data in enumerate(masks or [], start=1):
            tifffile.imwrite(folder / f"P_{number}_mask.tif", data)
        return folder


@pytest.fixture
def w(tmp_path: Path, tiny_model_dir: Path, sample_patient_dir: Path) -> Iterator[Workspace]:
    (tmp_path / "inputs").mkdir()
    (tmp_path / "out").mkdir()
    workspace = Workspace(tmp_path / "inputs", tmp_path / "out", tiny_model_dir, sample_patient_dir)
    with workspace.held:
        yield workspace


def _nan_slice_the_percentiles_skip(w: Workspace) -> Path:
    """More voxels than the percentile sampling reads, so it samples every other slice and misses slice 1."""
    image = np.random.default_rng(0).random((66, 256, 256), dtype=np.float32)
    image[1] = np.nan
    return w.tiff("nan.tif", image)


def _infinite(w: Workspace) -> Path:
    image = np.ones((3, 32, 32), np.float32)
    image[2, 5, 5] = np.inf
    return w.tiff("inf.tif", image)


def _case_without_flair(w: Workspace) -> Path:
    case = w.folder("case")
    for sequence in ("t1", "t1ce"):
        w.nifti(f"case_{sequence}.nii.gz", np.zeros((16, 16, 4), np.float32), case)
    return case


def _two_flair_files(w: Workspace) -> Path:
    case = w.folder("case")
    w.nifti("a_flair.nii.gz", np.zeros((16, 16, 4), np.float32), case)
    w.nifti("a_flair.nii", np.zeros((16, 16, 4), np.float32), case)
    return case


def _slices_of_different_shapes(w: Workspace) -> Path:
    folder = w.folder("P")
    tifffile.imwrite(folder / "P_1.tif", np.zeros((32, 32, 3), np.uint8))
    tifffile.imwrite(folder / "P_2.tif", np.zeros((40, 32, 3), np.uint8))
    return folder


def _gzip_crc_fails(w: Workspace) -> Path:
    """A .nii.gz whose voxels decompress but whose gzip CRC does not match them (one flipped trailer byte)."""
    path = w.nifti("crc.nii.gz", np.random.default_rng(0).random((16, 16, 4), dtype=np.float32))
    damaged = bytearray(path.read_bytes())
    damaged[-8] ^= 0xFF
    path.write_bytes(bytes(damaged))
    return path


def _header_claiming_16_gb(w: Workspace) -> Path:
    """A 477-byte .nii whose header claims 20000 x 20000 x 20 int16 voxels."""
    header = nib.Nifti1Image(np.zeros((1, 1, 1), np.int16), np.eye(4)).header.copy()
    header.set_data_shape((20000, 20000, 20))
    header.set_data_offset(352)
    return w.file("huge.nii", header.binaryblock + b"\0" * 4 + b"\1" * 125)


def _nifti_header_patched(w: Workspace, name: str, offset: int, fmt: str, *values: float, by_pixdim: bool) -> Path:
    """A .nii whose header bytes at `offset` are overwritten (nibabel itself would not save such a header);
    `by_pixdim` sets the qform and sform codes to 0, so pixdim places the voxels."""
    raw = bytearray(nib.Nifti1Image(np.ones((8, 8, 4), np.float32), np.eye(4)).to_bytes())
    struct.pack_into(fmt, raw, offset, *values)
    if by_pixdim:
        struct.pack_into("<2h", raw, 252, 0, 0)  # qform_code, sform_code
    return w.file(name, bytes(raw))


def _rgb24_nifti(w: Workspace) -> Path:
    return w.nifti("rgb.nii.gz", np.zeros((8, 8, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")]))


def _two_series_tiff(w: Workspace) -> Path:
    path = w.tiff("two.tif", np.zeros((3, 16, 16), np.uint8))
    tifffile.imwrite(path, np.zeros((2, 8, 8), np.uint8), append=True)
    return path


def _case_with_a_t1_5_km_away(w: Workspace) -> Path:
    case = w.folder("case")
    far = np.eye(4)
    far[0, 3] = 5e6
    nib.save(nib.Nifti1Image(np.ones((16, 16, 4), np.float32), np.eye(4)), case / "a_flair.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((16, 16, 4), np.float32), far), case / "a_t1.nii.gz")
    return case


def _case_with_labels_5_km_away(w: Workspace) -> Path:
    case = _case_with_a_t1_5_km_away(w)
    far = nib.load(case / "a_t1.nii.gz").affine
    (case / "a_t1.nii.gz").unlink()
    nib.save(nib.Nifti1Image(np.eye(16, dtype=np.uint8)[..., None].repeat(4, 2), far), case / "a_seg.nii.gz")
    return case


def _case_with_labels(w: Workspace, value: float) -> Path:
    """A FLAIR with float labels, one voxel of them `value` (NaN, -1, a linearly resampled edge's 0.4)."""
    case = w.folder("case")
    w.nifti("a_flair.nii.gz", np.random.default_rng(0).random((24, 24, 3)).astype(np.float32), case)
    labels = np.zeros((24, 24, 3), np.float32)
    labels[8:16, 8:16] = 1.0
    labels[8, 8, 0] = value
    w.nifti("a_seg.nii.gz", labels, case)
    return case


def _case_with_its_flair_as_labels(w: Workspace) -> Path:
    """A FLAIR (900 grey values) copied as its case's labels: read as labels, the whole head would be tumour."""
    case = w.folder("case")
    flair = (np.arange(24 * 24 * 3) % 900).reshape(24, 24, 3).astype(np.int16)
    w.nifti("a_flair.nii.gz", flair, case)
    w.nifti("a_seg.nii.gz", flair, case)
    return case


def _case_with_labels_filled_with_255(w: Workspace) -> Path:
    case = _case_with_labels(w, 1.0)
    w.nifti("a_seg.nii.gz", np.full((24, 24, 3), 255, np.uint8), case)
    return case


def _case_with_unoriented_labels_of_another_shape(w: Workspace) -> Path:
    """Labels saved as nib.Nifti1Image(mask, None) (qform and sform codes 0) on another grid than their FLAIR's."""
    case = _case_with_labels(w, 1.0)
    labels = nib.Nifti1Image(np.eye(20, 24, dtype=np.uint8)[..., None].repeat(3, 2), None)
    labels.set_qform(None, code=0)
    labels.set_sform(None, code=0)
    nib.save(labels, case / "a_seg.nii.gz")
    return case


def _case_with_damaged_labels(w: Workspace) -> Path:
    case = _case_with_labels(w, 1.0)
    labels = case / "a_seg.nii.gz"
    labels.write_bytes(labels.read_bytes()[:-8] + bytes(8))  # its gzip CRC and length zeroed
    return case


def _case_with_labels_linked_to_a_drive_not_mounted(w: Workspace) -> Path:
    """The labels a link to a file on a drive not mounted: the case was read as having no manual mask at all."""
    case = _case_with_labels(w, 1.0)
    (case / "a_seg.nii.gz").unlink()
    (case / "a_seg.nii.gz").symlink_to(w.inputs.parent / "unmounted" / "a_seg.nii.gz")
    return case


def _nnunet_case_with_the_ignore_label(w: Workspace) -> Path:
    """nnU-Net v2's sparse annotations: labelsTr/c1 marks the voxels nobody annotated with dataset.json's label 2."""
    root = w.folder("Dataset001")
    (root / "dataset.json").write_text(json.dumps(
        {"channel_names": {"0": "FLAIR"}, "labels": {"background": 0, "tumour": 1, "ignore": 2}}))
    w.nifti("c1_0000.nii.gz", np.random.default_rng(0).random((24, 24, 3)).astype(np.float32), root / "imagesTr")
    labels = np.full((24, 24, 3), 2, np.uint8)
    labels[8:16, 8:16], labels[:4] = 1, 0
    w.nifti("c1.nii.gz", labels, root / "labelsTr")
    return root


def _kaggle_mask_slice_whose_alpha_varies(w: Workspace) -> Path:
    """A mask painted as transparency: RGBA, black, opaque only where the tumour is."""
    painted = np.zeros((32, 32, 4), np.uint8)
    painted[8:16, 8:16, 3] = 255
    return w.kaggle_patient(np.zeros((2, 32, 32, 3), np.uint8), [np.zeros((32, 32), np.uint8), painted])


def _kaggle_mask_slice_saved_twice(w: Workspace) -> Path:
    folder = w.kaggle_patient(np.zeros((2, 32, 32, 3), np.uint8), [np.zeros((32, 32), np.uint8)] * 2)
    tifffile.imwrite(folder / "P_2_mask.tiff", np.eye(32, dtype=np.uint8) * 255)
    return folder


def _dicom_series(w: Workspace, missing: bool = False, duplicate: bool = False, sliding: bool = False,
                  colour: bool = False, uneven: bool = False, two_echoes: bool = False,
                  repeated: bool = False) -> Path:
    """Five 2 mm slices; `sliding` moves each 1 mm further right than the one below (a tilted gantry's stack);
    `uneven` makes the steps 1.8 and 2.2 mm by turns; `two_echoes` gives the odd slices another echo time;
    `repeated` scans them twice into the series (other pixels at the same positions, one echo time)."""
    from pydicom.uid import generate_uid

    from dicom_files import write_slice

    folder, series = w.folder("series"), generate_uid()
    for index in range(5):
        if not (missing and index == 2):
            pixels = np.full((6, 8, 3) if colour else (6, 8), index)
            z = index * 2.0 - (0.2 if uneven and index % 2 else 0.0)
            write_slice(folder, f"{index}.dcm", series, "FLAIR", z, pixels, thickness=2.0,
                        corner=(-10.0 + (index if sliding else 0), -20.0),
                        echo_time=(90.0 if index % 2 else 15.0) if two_echoes else None)
            if repeated:
                write_slice(folder, f"{index} again.dcm", series, "FLAIR", z, pixels + 1, thickness=2.0)
    if duplicate:
        shutil.copy(folder / "3.dcm", folder / "3 copy.dcm")
    return folder


def _multiframe_dicom(w: Workspace) -> Path:
    from dicom_files import write_multiframe

    folder = w.folder("enhanced")
    write_multiframe(folder / "all.dcm", [0.0, 2.0, 4.0, 6.0, 8.0])
    return folder


def _kaggle_root_with_a_stray_nifti(w: Workspace) -> Path:
    w.kaggle_patient(np.zeros((2, 32, 32, 3), np.uint8), [np.zeros((32, 32), np.uint8)] * 2)
    w.nifti("stray.nii.gz", np.zeros((16, 16, 4), np.float32))
    return w.inputs


def _dicom_series_with_a_nifti_beside(w: Workspace) -> Path:
    """dcm2niix writes into the DICOM folder unless told otherwise: a converted T1 named by its protocol was read
    as the FLAIR, and the folder's own FLAIR series left out without a word."""
    folder = _dicom_series(w)
    w.nifti("series_Ax_T1_MPRAGE_3.nii.gz", np.zeros((8, 6, 5), np.float32), folder)
    return folder


def _kaggle_root_with_a_stray_tiff_stack(w: Workspace) -> Path:
    """A TIFF stack beside a folder of scans was left out without a word (it is read only when given by itself)."""
    w.kaggle_patient(np.zeros((2, 32, 32, 3), np.uint8), [np.zeros((32, 32), np.uint8)] * 2)
    w.tiff("stray.tif", np.zeros((2, 32, 32), np.uint8))
    return w.inputs


def _volumes_with_a_tiff_stack_beside(w: Workspace) -> Path:
    w.nifti("a_flair.nii.gz", np.zeros((16, 16, 4), np.float32))
    w.tiff("b.tif", np.zeros((2, 32, 32), np.uint8))
    return w.inputs


def _kaggle_mask_slice_of_another_shape(w: Workspace) -> Path:
    return w.kaggle_patient(np.zeros((2, 32, 32, 3), np.uint8), [np.zeros((32, 32), np.uint8),
                                                                 np.zeros((32, 40), np.uint8)])


def _kaggle_mask_slice_filled_with_255(w: Workspace) -> Path:
    return w.kaggle_patient(np.zeros((2, 32, 32, 3), np.uint8), [np.eye(32, dtype=np.uint8) * 255,
                                                                 np.full((32, 32), 255, np.uint8)])


def _kaggle_patient_with_a_file_linked_to_a_drive_not_mounted(w: Workspace, name: str) -> Path:
    """A Kaggle patient of two masked slices whose file `name` is a link to a drive not mounted: the slice, or its
    mask, was left out without a word."""
    folder = w.kaggle_patient(np.zeros((2, 32, 32, 3), np.uint8), [np.eye(32, dtype=np.uint8) * 255] * 2)
    (folder / name).unlink()
    (folder / name).symlink_to(w.inputs.parent / "unmounted" / name)
    return folder


def _nnunet_case_with_labels_linked_to_a_drive_not_mounted(w: Workspace) -> Path:
    """labelsTr/c1 a link to a drive not mounted: the case was read as having no labels, without a word."""
    root = _nnunet_case_with_the_ignore_label(w)
    (root / "labelsTr" / "c1.nii.gz").unlink()
    (root / "labelsTr" / "c1.nii.gz").symlink_to(w.inputs.parent / "unmounted" / "c1.nii.gz")
    return root


def _kaggle_patient_missing_a_slice(w: Workspace) -> Path:
    """Slices 1 and 3 of 3, slice 2 (and its mask) lost: stacked, 1 and 3 would be taken as neighbours."""
    folder = w.kaggle_patient(np.zeros((3, 32, 32, 3), np.uint8), [np.eye(32, dtype=np.uint8) * 255] * 3)
    (folder / "P_2.tif").unlink()
    (folder / "P_2_mask.tif").unlink()
    return folder


def _kaggle_slices_of_two_patients(w: Workspace) -> Path:
    """Q's slices and masks beside P's: paired by number alone, one patient's masks would land on the other's."""
    folder = w.kaggle_patient(np.zeros((2, 32, 32, 3), np.uint8), [np.full((32, 32), 255, np.uint8)] * 2)
    for number in (1, 2):
        tifffile.imwrite(folder / f"Q_{number}.tif", np.zeros((32, 32, 3), np.uint8))
        tifffile.imwrite(folder / f"Q_{number}_mask.tif", np.zeros((32, 32), np.uint8))
    return folder


def _case_linked_to_a_drive_not_mounted(w: Workspace) -> Path:
    """A case folder whose FLAIR is a link to a file on a drive not mounted: it was told as holding no scans."""
    case = w.folder("CASE")
    (case / "CASE_flair.nii.gz").symlink_to(w.inputs.parent / "unmounted" / "CASE_flair.nii.gz")
    return case


def _named_pipe(w: Workspace) -> Path:
    """A FIFO named as a NIfTI: no format claims it, and telling why listed it as a folder (NotADirectoryError)."""
    os.mkfifo(w.inputs / "pipe.nii.gz")
    return w.inputs / "pipe.nii.gz"


def _symlink_loop(w: Workspace) -> Path:
    (w.inputs / "loop").symlink_to(w.inputs / "loop")
    return w.inputs / "loop"


def _truncated_tiff_stack(w: Workspace) -> Path:
    """A compressed 24-slice stack cut to a quarter: tifffile reads its first page alone and only logs the error."""
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.random.default_rng(0).integers(0, 255, (24, 64, 64), np.uint8), compression="zlib")
    return w.file("t.tif", buffer.getvalue()[: len(buffer.getvalue()) // 4])


# name -> (make the scan, phrase of the refusal); each is refused by `predict --input` and by load_scan/segment_volume
BAD_SCANS: dict[str, tuple[Callable[[Workspace], Path], str]] = {
    "missing file": (lambda w: w.inputs / "absent.tif", "not found"),
    "corrupt TIFF": (lambda w: w.file("c.tif", b"II*\0garbage"), "empty or corrupt"),
    "unreadable TIFF": (lambda w: w.file("u.tif", b"garbage"), "cannot read"),
    "truncated TIFF stack": (_truncated_tiff_stack, "truncated or corrupt"),
    "TIFF with 4 channels": (lambda w: w.tiff("rgba.tif", np.zeros((2, 16, 16, 4), np.uint8)), "channels"),
    "NaN slice the percentiles skip": (_nan_slice_the_percentiles_skip, "NaN"),
    "infinite value": (_infinite, "infinite"),
    "zero-slice TIFF stack": (lambda w: w.tiff("empty.tif", np.zeros((0, 32, 32), np.float32)), "holds no image"),
    "1x1 slices": (lambda w: w.tiff("dot.tif", np.ones((3, 1, 1), np.uint8)), "too small"),
    "complex pixels": (lambda w: w.tiff("complex.tif", np.ones((3, 8, 8), np.complex64)), "pixel type"),
    "2D NIfTI": (lambda w: w.nifti("flat.nii.gz", np.zeros((32, 32), np.float32)), "2D image"),
    "5D NIfTI": (lambda w: w.nifti("five.nii.gz", np.zeros((8, 8, 8, 1, 2), np.float32)), "5 dimensions"),
    "zero-slice NIfTI": (lambda w: w.nifti("empty.nii.gz", np.zeros((32, 32, 0), np.float32)), "no voxels"),
    "4D NIfTI with 5 unnamed channels": (lambda w: w.nifti("multi.nii.gz", np.zeros((8, 8, 4, 5), np.float32)),
                                         "5 channels and no dataset.json"),
    "case folder without FLAIR": (_case_without_flair, "no FLAIR"),
    "case with two FLAIR files": (_two_flair_files, "two FLAIR files"),
    "Kaggle folder with slices of different shapes": (_slices_of_different_shapes, "different shapes"),
    "folder without scans": (lambda w: w.folder("nothing"), "DICOM"),
    "file that is not a scan": (lambda w: w.file("notes.txt", b"hello"), "not a scan file"),
    "NIfTI whose gzip CRC fails": (_gzip_crc_fails, "gzip integrity check failed"),
    "481-byte NIfTI claiming 16 GB": (_header_claiming_16_gb, "but the file is only 477 bytes"),
    "NIfTI with a NaN sform": (lambda w: _nifti_header_patched(w, "nan.nii", 280, "<f", math.nan, by_pixdim=False),
                               "NaN or infinite"),
    "NIfTI with a zero pixdim": (lambda w: _nifti_header_patched(w, "zero.nii", 80, "<3f", 0, 0, 0, by_pixdim=True),
                                 "pixdim voxel size of 0 x 0 x 0 mm"),
    "complex NIfTI": (lambda w: w.nifti("cx.nii.gz", np.ones((8, 8, 4), np.complex64)), "pixel type complex64"),
    "RGB24 NIfTI": (_rgb24_nifti, "RGB colour voxels"),
    "TIFF with 2 series": (_two_series_tiff, "holds 2 image series"),
    "case whose T1 lies 5 km from its FLAIR": (_case_with_a_t1_5_km_away,
                                                "a_t1.nii.gz covers 0% of the FLAIR's field of view"),
    "DICOM series with a missing slice": (lambda w: _dicom_series(w, missing=True), "slice file missing"),
    "DICOM series with uneven slice steps": (lambda w: _dicom_series(w, uneven=True),
                                             "slice spacing is uneven, not a missing slice"),
    "DICOM series with a duplicate file": (lambda w: _dicom_series(w, duplicate=True),
                                           "are both at slice position 6.00 mm"),
    "DICOM series scanned twice": (lambda w: _dicom_series(w, repeated=True),
                                   "2 files at each of its 5 slice positions"),
    "DICOM series whose slices slide sideways": (lambda w: _dicom_series(w, sliding=True),
                                                 "not stacked along their normal"),
    "DICOM series of two echo times": (lambda w: _dicom_series(w, two_echoes=True), "slices of 2 echo times"),
    "RGB DICOM series": (lambda w: _dicom_series(w, colour=True), "RGB colour voxels"),
    "multi-frame DICOM file": (_multiframe_dicom, "DICOM file of 5 frames"),
    "DICOM series with a NIfTI beside": (_dicom_series_with_a_nifti_beside,
                                         "beside the volume files series_Ax_T1_MPRAGE_3.nii.gz"),
    "Kaggle root with a stray NIfTI": (_kaggle_root_with_a_stray_nifti, "holds scans both loose"),
    "NIfTI volumes with a TIFF stack beside": (_volumes_with_a_tiff_stack_beside, "holds TIFF stacks"),
    "symbolic link loop": (_symlink_loop, "cannot open"),
    "Kaggle slice linked to a drive not mounted": (
        lambda w: _kaggle_patient_with_a_file_linked_to_a_drive_not_mounted(w, "P_2.tif"),
        "unmounted/P_2.tif, which does not exist"),
    "named pipe": (_named_pipe, "pipe.nii.gz is not a regular file, a named pipe"),
    "FLAIR linked to a drive not mounted": (_case_linked_to_a_drive_not_mounted, "unmounted/CASE_flair.nii.gz, which "
                                            "does not exist"),
}

# name -> (make a scan whose manual mask cannot be used, phrase of the refusal): refused where ground truth is needed
# (train, evaluate, calibrate: load_scan(require_mask=True)); elsewhere (predict, napari's File > Open, view) the scan
# is read without its mask, with one warning that names the file and says why
BAD_MASKS: dict[str, tuple[Callable[[Workspace], Path], str]] = {
    "labels resampled with linear interpolation": (lambda w: _case_with_labels(w, 0.4),
                                                   "a_seg.nii.gz holds fractional values (such as 0.4)"),
    "NaN labels": (lambda w: _case_with_labels(w, math.nan), "a_seg.nii.gz holds NaN values"),
    "labels below 0": (lambda w: _case_with_labels(w, -1.0), "a_seg.nii.gz holds values below 0"),
    "FLAIR saved as the labels": (_case_with_its_flair_as_labels,
                                  "a_seg.nii.gz holds 900 distinct values; a tumour mask holds at most 16"),
    "labels filled with 255": (_case_with_labels_filled_with_255, "a_seg.nii.gz holds no 0 (background) anywhere"),
    "labels that miss the FLAIR": (_case_with_labels_5_km_away, "a_seg.nii.gz covers 0% of the FLAIR's field of view"),
    "labels without orientation on another grid": (
        _case_with_unoriented_labels_of_another_shape,
        "a_seg.nii.gz has no orientation (its qform_code and sform_code are 0) but the FLAIR has one"),
    "damaged labels file": (_case_with_damaged_labels, "a_seg.nii.gz is damaged: its gzip integrity check failed"),
    "labels linked to a drive not mounted": (_case_with_labels_linked_to_a_drive_not_mounted,
                                             "a_seg.nii.gz is a link to "),
    "nnU-Net labels with the ignore label": (_nnunet_case_with_the_ignore_label,
                                             "c1.nii.gz marks voxels with dataset.json's ignore label 2"),
    "Kaggle mask slice of another shape": (_kaggle_mask_slice_of_another_shape, "mask P_2_mask.tif has shape"),
    "Kaggle mask slice filled with 255": (_kaggle_mask_slice_filled_with_255,
                                          "mask P_2_mask.tif holds no 0 (background) anywhere"),
    "Kaggle mask slice whose alpha varies": (_kaggle_mask_slice_whose_alpha_varies,
                                             "mask P_2_mask.tif has 4 channels, the last of them transparency"),
    "Kaggle mask slice saved twice": (_kaggle_mask_slice_saved_twice,
                                      "P_2_mask.tif and P_2_mask.tiff are files of one slice"),
    "Kaggle mask slice linked to a drive not mounted": (
        lambda w: _kaggle_patient_with_a_file_linked_to_a_drive_not_mounted(w, "P_2_mask.tif"),
        "P_2_mask.tif is a link to "),
    "nnU-Net labels linked to a drive not mounted": (_nnunet_case_with_labels_linked_to_a_drive_not_mounted,
                                                     "c1.nii.gz is a link to "),
}


def _settings(w: Workspace, *extra: str) -> str:
    """The settings a `_train("--resume", *extra)` run records, as a matching resume state holds them."""
    args = cli.build_parser().parse_args(_train("--resume", *extra)(w))
    return json.dumps(cli.train_config(args).to_dict())


def _resume_state(w: Workspace, *, truncate: bool = False, **metadata: str | None) -> None:
    """A resume state in the run folder with the given metadata (None drops a key) and weights of no network."""
    run = w.out / "run"
    run.mkdir(exist_ok=True)
    fields = {"format": RESUME_FORMAT, "progress": json.dumps({"epochs_done": 1, "history": []}),
              "settings": _settings(w), "param_groups": "[]", "scaler": "{}", **metadata}
    path = run / RESUME_FILE
    save_file(
        {"network.unknown": torch.zeros(4)}, str(path), metadata={k: v for k, v in fields.items() if v is not None}
    )
    if truncate:
        path.write_bytes(path.read_bytes()[:-8])


def _garbage_resume_state(w: Workspace) -> None:
    (w.out / "run").mkdir()
    (w.out / "run" / RESUME_FILE).write_bytes(b"\x08\0\0\0\0\0\0\0{}garbage")


def _model_in_run_folder(w: Workspace) -> None:
    shutil.copytree(w.model, w.out / "run")


def _nan_patient(w: Workspace) -> Path:
    image = np.random.default_rng(0).random((4, 32, 32), dtype=np.float32)
    image[2, 3, 3] = np.nan
    masks = [np.eye(32, dtype=np.uint8) * 255] * 4
    return w.kaggle_patient(image, masks)


def _good_scan(w: Workspace) -> Path:
    return w.tiff("scan.tif", np.random.default_rng(0).integers(0, 999, (3, 40, 40)).astype(np.uint16))


def _predict(
    *extra: str,
    model: Callable[[Workspace], Path] = lambda w: w.model,
    scan: Callable[[Workspace], Path] = _good_scan,
    output: Callable[[Workspace], Path] = lambda w: w.out / "mask.tif",
) -> Callable[[Workspace], list[str]]:
    """`predict` with one bad option, model, scan or output (made in this order)."""
    return lambda w: ["predict", "--model", str(model(w)), "--input", str(scan(w)), "--output", str(output(w)), *extra]


def _evaluate(*extra: str, data: Callable[[Workspace], Path] | None = None) -> Callable[[Workspace], list[str]]:
    def argv(w: Workspace) -> list[str]:
        folder = data(w) if data else w.patient
        return ["evaluate", "--model", str(w.model), "--data", str(folder), "--json", str(w.out / "r.json"), *extra]

    return argv


def _train(*extra: str, data: Callable[[Workspace], Path] | None = None,
           before: Callable[[Workspace], None] | None = None) -> Callable[[Workspace], list[str]]:
    """A tiny training into out/run with one bad option or input; `before` prepares the run folder."""

    def argv(w: Workspace) -> list[str]:
        if before is not None:
            before(w)
        folder = data(w) if data else w.patient
        return ["train", "--data", str(folder), "--out", str(w.out / "run"), "--epochs", "1", "--steps-per-epoch", "1",
                "--batch-size", "2", "--image-size", "64", "--decoder-channels", "16,16,16,16,16", "--workers", "0",
                "--device", "cpu", "--no-augment", *extra]

    return argv


def _bad_model(name: str) -> Callable[[Workspace], Path]:
    return lambda w: make_bad_model(name, w.model, w.inputs)


def _folder_of_two_scans(w: Workspace) -> Path:
    folder = w.folder("cohort")
    for name in ("a", "b"):
        w.nifti(f"{name}.nii.gz", np.random.default_rng(0).random((24, 24, 3), dtype=np.float32), folder)
    return folder


def _folder_of_one_scan(w: Workspace) -> Path:
    folder = _folder_of_two_scans(w)
    (folder / "b.nii.gz").unlink()
    return folder


def _loose_tiff_stacks(w: Workspace) -> Path:
    """TIFF stacks side by side, a mask stack among them, as the packaged samples folder holds them."""
    folder = w.folder("stacks")
    for name in ("a.tif", "a_mask.tif", "b.tif"):
        tifffile.imwrite(folder / name, np.zeros((2, 32, 32), np.uint8))
    return folder


def _folder_whose_third_scan_is_corrupt(w: Workspace) -> Path:
    folder = _folder_of_two_scans(w)
    (folder / "c.nii.gz").write_bytes(b"not a NIfTI")
    return folder


def _inside_a_file(w: Workspace) -> Path:
    (w.out / "file").write_text("x")
    return w.out / "file" / "mask.tif"


def _link_loop(w: Workspace, name: str = "loop") -> Path:
    """A symbolic link to itself where an output goes: Path.resolve raised RuntimeError (an internal error)."""
    link = w.out / name
    link.symlink_to(link)
    return link


def _existing_file(w: Workspace) -> Path:
    (w.out / "masks.tif").write_text("x")
    return w.out / "masks.tif"


def _folder_with_users_mask_and_summary(w: Workspace) -> Path:
    """An output folder where the user keeps a manual mask of case A, their own summary and notes."""
    folder = w.out / "masks"
    folder.mkdir()
    w.nifti("A_mask.nii.gz", np.ones((24, 24, 3), np.uint8), folder)
    (folder / "summary.csv").write_text("my own notes\n")
    (folder / "notes.txt").write_text("mine\n")
    return folder


def _folder_with_users_summary(w: Workspace) -> Path:
    (w.out / "masks").mkdir()
    (w.out / "masks" / "summary.csv").write_text("my own notes\n")
    return w.out / "masks"


def _folder_with_a_pipe_as_summary(w: Workspace) -> Path:
    """A named pipe where summary.csv would be: opening it to read its header would wait for a writer forever."""
    (w.out / "masks").mkdir()
    os.mkfifo(w.out / "masks" / "summary.csv")
    return w.out / "masks"


def _folder_with_a_folder_as_bs_mask(w: Workspace) -> Path:
    """A folder of case B's mask name, holding a file of the user's: --overwrite segmented case A, then failed."""
    (w.out / "masks" / "B_mask.nii.gz").mkdir(parents=True)
    (w.out / "masks" / "B_mask.nii.gz" / "notes.txt").write_text("mine\n")
    return w.out / "masks"


def _brats_case(w: Workspace, name: str = "CASE", parent: Path | None = None) -> Path:
    """A BraTS-style case folder: FLAIR, T1 and a manual segmentation with labels {0, 1, 2, 4}."""
    case = (parent or w.inputs) / name
    rng = np.random.default_rng(0)
    for sequence in ("flair", "t1"):
        w.nifti(f"{name}_{sequence}.nii.gz", rng.random((24, 24, 3), dtype=np.float32), case)
    w.nifti(f"{name}_seg.nii.gz", rng.choice(np.array([0, 1, 2, 4], np.int16), (24, 24, 3)), case)
    return case


def _cohort_of_two_cases(w: Workspace) -> Path:
    root = w.folder("cohort")
    for name in ("A", "B"):
        _brats_case(w, name, root)
    return root


def _kaggle_patient_with_masks(w: Workspace) -> Path:
    rng = np.random.default_rng(0)
    return w.kaggle_patient(rng.integers(0, 255, (3, 32, 32, 3), dtype=np.uint8), [np.zeros((32, 32), np.uint8)] * 3)


def _same_name_in_two_folders(w: Workspace) -> Path:
    root = w.folder("cohort")
    for folder in ("site1", "site2"):
        w.nifti("P1.nii.gz", np.random.default_rng(0).random((24, 24, 3), dtype=np.float32), root / folder)
    return root


def _kaggle_and_nifti_of_one_name(w: Workspace) -> Path:
    root = w.folder("cohort")
    (root / "P1").mkdir()
    for number in (1, 2):
        tifffile.imwrite(root / "P1" / f"P1_{number}.tif", np.zeros((32, 32, 3), np.uint8))
    w.nifti("P1.nii.gz", np.random.default_rng(0).random((24, 24, 3), dtype=np.float32), root / "nifti")
    return root


def _case_through_a_link(w: Workspace) -> Path:
    """A BraTS case folder given by a link of another name: it is still the case's own folder, as given directly."""
    _brats_case(w)
    return _link_to_case(w).parent


def _link_to_case(w: Workspace) -> Path:
    link = w.inputs.parent / "link-to-case"
    link.symlink_to(w.inputs / "CASE", target_is_directory=True)
    return link / "new_mask.nii.gz"


def _calibrate_while_training_holds_the_folder(w: Workspace) -> list[str]:
    """calibrate on a model folder (with a validation split) whose lock a training run in this process holds."""
    run = shutil.copytree(w.model, w.out / "run")
    config = json.loads((run / "config.json").read_text())
    config["training"] = {"split": {"validation": [w.patient.name]}}
    (run / "config.json").write_text(json.dumps(config))
    w.held.enter_context(RunFolder(run).locked())
    return ["calibrate", "--model", str(run), "--data", str(w.patient), "--device", "cpu"]


# (command, its bad options, phrase of the refusal); the rest of each command line is valid
OPTION_CASES = [
    ("predict", "--batch-size -1", "batch size must be between"),
    ("predict", "--batch-size 0", "batch size must be between"),
    ("evaluate", "--batch-size -1", "batch size must be between"),
    ("evaluate", "--batch-size 0", "batch size must be between"),
    ("predict", "--batch-size many", "invalid int value"),
    ("predict", "--threshold nan", "threshold must be a finite number"),
    ("predict", "--threshold 2", "threshold must be in"),
    ("evaluate", "--threshold 0", "threshold must be in"),
    ("predict", "--min-size -3", "minimum tumour size must be between"),
    ("predict", "--min-confidence 2", "minimum confidence must be in"),
    ("evaluate", "--min-confidence inf", "minimum confidence must be a finite number"),
    ("predict", "--threads 0", "threads must be between 1 and 1024"),
    ("evaluate", "--threads 2000", "threads must be between 1 and 1024"),
    ("predict", "--device tpu", "unknown device"),
    ("predict", "--precision fp8", "precision must be one of auto, fp32, bf16, fp16, not 'fp8'"),
    ("train", "--precision fp8", "precision must be one of auto, fp32, bf16, fp16, not 'fp8'"),
    ("predict", "--backend tensorrt", "backend must be one of auto, torch, openvino, not 'tensorrt'"),
    ("evaluate", "--split test", "records no test patients"),
    ("train", "--lr nan", "learning rate must be a finite number"),
    ("train", "--lr 0", "learning rate must be in"),
    ("train", "--workers -1", "workers must be between"),
    ("train", "--steps-per-epoch -5", "steps per epoch must be between"),
    ("train", "--tumour-fraction 2", "tumour fraction must be in"),
    ("train", "--tumour-fraction nan", "tumour fraction must be a finite"),
    ("train", "--seed -1", "seed must be between"),
    ("train", "--epochs 0", "epochs must be between"),
    ("train", "--batch-size 0", "batch size must be between"),
    ("train", "--decoder-channels 0,16,16,16,16", "decoder width must be between"),
    ("train", "--decoder-channels=-8,16,16,16,16", "decoder width must be between"),
    ("train", "--decoder-channels 20000,16,16,16,16", "decoder width must be between"),
    ("train", "--decoder-channels 16,16", "number of decoder stages"),
    ("train", "--decoder-channels wide", "is not whole numbers separated by commas"),
    ("train", "--image-size 8192", "image size must be between"),
    ("train", "--image-size 100", "multiple of 32"),
    ("train", "--val-fraction 1.5", "must each be in [0, 1) and add up to less than 1"),
    ("train", "--val-fraction 0.6 --test-fraction 0.5", "add up to less than 1"),
    ("train", "--hard-negatives 2", "hard-negative share must be in"),
    ("train", "--hard-negatives-every 0", "hard-negative refresh interval"),
    ("train", "--encoder resnet9000", "unknown encoder"),
    ("train", "--threads 0", "threads must be between"),
    ("train", "--augment flair_only=2", "augment flair_only must be in"),
    ("train", "--augment nokey=1", "is not KEY=VALUE"),
    ("train", "--augment enabled=maybe", "enabled takes true or false"),
    ("train", "--augment skull_strip=lots", "skull_strip takes a number"),
    ("train", "--validate-on blurred", "validation input variants must be one or more distinct names from"),
    ("train", "--validate-on as-is,as-is", "got as-is, as-is"),
]
COMMANDS = {"predict": _predict, "evaluate": _evaluate, "train": _train}

CLI_CASES = [
    *[pytest.param(COMMANDS[command](*options.split()), phrase, id=f"{command} {options}")
      for command, options, phrase in OPTION_CASES],
    pytest.param(_predict(output=lambda w: w.inputs / "scan.tif"), "same path as --input",
                 id="predict --output equal to --input"),
    pytest.param(_predict(output=_inside_a_file), "file is a file, not a folder", id="predict --output inside a file"),
    pytest.param(_predict(output=_link_loop), "cannot write", id="predict --output a link that loops"),
    pytest.param(_predict(scan=_folder_of_two_scans, output=lambda w: _link_loop(w) / "masks"), "cannot write",
                 id="predict --output inside a link that loops"),
    pytest.param(lambda w: [*_evaluate()(w)[:-1], str(_link_loop(w, "r.json"))], "cannot write",
                 id="evaluate --json a link that loops"),
    pytest.param(lambda w: [*_evaluate()(w)[:-1], f"{w.out / 'reports'}/"], "reports/ ends in / (a folder); give a "
                 "file name", id="evaluate --json a name ending in a slash"),
    pytest.param(_train(before=lambda w: _link_loop(w, "run")), "cannot write", id="train --out a link that loops"),
    pytest.param(_predict("--read-ahead", "-1", scan=_folder_of_two_scans, output=lambda w: w.out / "masks"),
                 "--read-ahead must be 0 or more", id="predict --read-ahead -1"),
    pytest.param(_predict("--read-ahead", "-1"), "--read-ahead must be 0 or more",
                 id="predict one scan with --read-ahead -1"),  # it was taken without a word
    pytest.param(_predict(scan=_folder_of_two_scans, output=_existing_file), "give a folder as --output",
                 id="predict a folder of scans into a file"),
    pytest.param(_predict(output=lambda w: f"{_existing_file(w)}/"), "masks.tif/ ends in / (a folder), but",
                 id="predict one scan into an existing file named as a folder"),
    pytest.param(_predict(scan=_folder_of_two_scans, output=lambda w: w.out / "masks.nii.gz"),
                 "give a folder as --output, not a file name (masks.nii.gz)",
                 id="predict a folder of scans into a new file name"),
    # files predict did not make: replaced only when asked (--overwrite), or kept (--skip-existing)
    pytest.param(_predict(output=_existing_file), "masks.tif already exists; give --overwrite to replace it",
                 id="predict onto an existing file"),
    pytest.param(_predict("--skip-existing", output=_existing_file),
                 "give --overwrite to replace it (--skip-existing keeps the masks in a folder given as --output)",
                 id="predict one scan onto an existing file with --skip-existing"),
    # the hint said "--skip-existing applies to a folder of scans", which the user had given
    pytest.param(_predict("--skip-existing", scan=_folder_of_one_scan, output=_existing_file),
                 "give --overwrite to replace it (--skip-existing keeps the masks in a folder given as --output)",
                 id="predict a folder of one scan onto an existing file with --skip-existing"),
    pytest.param(_predict(scan=_brats_case, output=lambda w: _brats_case(w, "OTHER", w.out) / "OTHER_seg.nii.gz"),
                 "OTHER_seg.nii.gz already exists; give --overwrite to replace it",
                 id="predict a case onto another case's ground truth"),
    pytest.param(_predict(scan=_cohort_of_two_cases, output=_folder_with_users_mask_and_summary),
                 "already holds A_mask.nii.gz and summary.csv, which this run would write; give existing='skip' "
                 "(--skip-existing)",
                 id="predict a cohort into a folder holding a user's mask and summary"),
    pytest.param(_predict(scan=_cohort_of_two_cases, output=_folder_with_users_summary),
                 "already holds summary.csv, which this run would write",
                 id="predict a cohort into a folder holding a user's summary"),
    pytest.param(_predict(model=_bad_model("truncated weights"), output=lambda w: w.out / "mask.mhd"),
                 "cannot write a mask as mask.mhd: use", id="predict to .mhd is refused before the model loads"),
    pytest.param(_predict(model=_bad_model("truncated weights"), output=lambda w: w.out / "mask"),
                 "cannot write a mask as mask: use .tif, .tiff, .nii.gz, .nii, .nrrd, .mha, or end --output with /",
                 id="predict to a name of no mask format is refused before the model loads"),
    # one scan that is a folder (a case, a DICOM series) into a new name of no mask format: a mask file named
    # wrongly, as for a Kaggle patient or a file (a folder of masks was made since a folder holding one scan got one)
    pytest.param(_predict(scan=_brats_case, output=lambda w: w.out / "masks"),
                 "cannot write a mask as masks: use .tif, .tiff, .nii.gz, .nii, .nrrd, .mha, or end --output with /",
                 id="predict a case folder into a new name of no mask format"),
    pytest.param(_predict(scan=_dicom_series, output=lambda w: w.out / "masks"),
                 "cannot write a mask as masks: use .tif, .tiff, .nii.gz, .nii, .nrrd, .mha, or end --output with /",
                 id="predict a DICOM series folder into a new name of no mask format"),
    pytest.param(_predict(model=_bad_model("truncated weights"), output=lambda w: w.out / "mask.png"),
                 "cannot write a mask as mask.png: use", id="predict to .png is refused before the model loads"),
    pytest.param(_predict("--skip-existing", scan=_cohort_of_two_cases, output=_folder_with_users_summary),
                 "summary.csv was not written by lgg-unet (its first line is not the summary's header) and "
                 "existing='skip' (--skip-existing) would rewrite it",
                 id="predict --skip-existing into a folder holding a user's summary"),
    pytest.param(_predict("--skip-existing", scan=_cohort_of_two_cases, output=_folder_with_a_pipe_as_summary),
                 "holds summary.csv (a named pipe) where this run would write",
                 id="predict --skip-existing into a folder whose summary is a named pipe is refused unopened"),
    *[pytest.param(_predict(*choice, scan=_cohort_of_two_cases, output=_folder_with_a_folder_as_bs_mask),
                   "holds B_mask.nii.gz (a folder) where this run would write a case's mask or its summary, which is "
                   "not a file: neither existing='skip' (--skip-existing) nor existing='overwrite' (--overwrite) can "
                   "keep or replace it; move it away",
                   id=f"predict {' '.join(choice) or 'a cohort'} into a folder where a case's mask is a folder")
      for choice in [(), ("--skip-existing",), ("--overwrite",)]],
    pytest.param(_predict("--overwrite", "--skip-existing", scan=_cohort_of_two_cases,
                          output=_folder_with_users_mask_and_summary),
                 "argument --skip-existing: not allowed with argument --overwrite",
                 id="predict --overwrite --skip-existing"),
    # outputs that would land on inputs, and cases whose masks would be one
    pytest.param(_predict(scan=_brats_case, output=lambda w: w.inputs / "CASE" / "CASE_seg.nii.gz"),
                 "the manual mask read with the input (CASE_seg.nii.gz",
                 id="predict a case folder onto its own segmentation"),
    pytest.param(_predict(scan=lambda w: _brats_case(w) / "CASE_flair.nii.gz",
                          output=lambda w: w.inputs / "CASE" / "CASE_t1.nii.gz"),
                 "CASE_t1.nii.gz, which is part of the input", id="predict a FLAIR file onto the T1 of its case"),
    pytest.param(_predict(scan=_brats_case, output=_link_to_case), "which is part of the input",
                 id="predict into its case folder through a link"),
    pytest.param(_predict(scan=_case_through_a_link, output=lambda w: w.inputs / "CASE" / "new.nii.gz"),
                 "which is part of the input", id="predict a case given through a link into its case folder"),
    pytest.param(_predict(scan=_case_through_a_link, output=lambda w: w.out / "masks"),
                 "or end --output with /", id="predict a case given through a link into a new name of no mask format"),
    pytest.param(_predict(scan=_kaggle_patient_with_masks, output=lambda w: w.inputs / "P" / "P_2_mask.tif"),
                 "which is part of the input", id="predict a Kaggle folder onto one of its slice masks"),
    pytest.param(_predict(scan=lambda w: _kaggle_patient_with_masks(w) / "P_2.tif",
                          output=lambda w: w.inputs / "P" / "P_2_mask.tif"),
                 "the manual mask read with the input (P_2_mask.tif", id="predict a Kaggle slice onto its own mask"),
    pytest.param(_predict(scan=lambda w: _kaggle_patient_with_masks(w) / "P_2.tif",
                          output=lambda w: w.inputs / "P" / "edited.tif"),
                 "which is part of the input", id="predict a Kaggle slice into its patient folder"),
    pytest.param(_predict(scan=lambda w: w.tiff("X_image.tif", np.zeros((2, 8, 8), np.uint8)),
                          output=lambda w: w.tiff("X_mask.tif", np.ones((2, 8, 8), np.uint8))),
                 "the manual mask read with the input (X_mask.tif",
                 id="predict a sample-style scan onto the mask beside it"),
    pytest.param(lambda w: ["evaluate", "--model", str(w.model), "--data", str(_kaggle_patient_with_masks(w)),
                            "--json", str(w.inputs / "P" / "P_1.tif")],
                 "which is part of the input", id="evaluate --json onto a slice of the patient"),
    pytest.param(lambda w: ["evaluate", "--model", str(w.model), "--data", str(w.patient),
                            "--json", str(w.model / "config.json")],
                 "which is part of a model folder", id="evaluate --json into the model's folder"),
    pytest.param(lambda w: ["calibrate", "--model", str(default_model_path()), "--data", str(w.patient)],
                 "default model is part of the installed package",
                 id="calibrate the installed default model by its path"),
    pytest.param(lambda w: [str(default_model_path()) if a == str(w.out / "run") else a for a in _train()(w)],
                 "default model is part of the installed package",
                 id="train into the installed default model's folder"),
    pytest.param(_predict(scan=_cohort_of_two_cases, output=lambda w: w.inputs / "cohort" / "A"),
                 "which is part of the input", id="predict a cohort into one of its case folders"),
    pytest.param(_predict(scan=_same_name_in_two_folders, output=lambda w: w.out / "masks"),
                 "two cases are named P1", id="predict a cohort with one case name in two folders"),
    pytest.param(_predict(scan=_kaggle_and_nifti_of_one_name, output=lambda w: w.out / "masks"),
                 "two cases are named P1", id="predict a cohort with a Kaggle P1 and a NIfTI P1"),
    pytest.param(_calibrate_while_training_holds_the_folder, "in use by another training run",
                 id="calibrate a model folder a training holds"),
    pytest.param(_evaluate(data=lambda w: w.inputs / "absent"), "not found", id="evaluate --data missing"),
    pytest.param(lambda w: [*_evaluate()(w)[:-1], str(_existing_file(w))],
                 "masks.tif already exists; give --overwrite to replace it",
                 id="evaluate --json onto an existing file"),
    pytest.param(lambda w: [*_evaluate()(w)[:-1], str(_inside_a_file(w))], "file is a file, not a folder",
                 id="evaluate --json inside a file"),
    # loose TIFF stacks are segmented one at a time, and carry no masks to evaluate or train on
    pytest.param(_predict(scan=_loose_tiff_stacks), "which are read one file at a time: give one of them",
                 id="predict a folder of TIFF stacks"),
    pytest.param(_evaluate(data=_loose_tiff_stacks), "which carry no masks; to train or evaluate, use Kaggle patient",
                 id="evaluate a folder of TIFF stacks"),
    pytest.param(_train(data=_loose_tiff_stacks), "which carry no masks; to train or evaluate, use Kaggle patient",
                 id="train on a folder of TIFF stacks"),
    pytest.param(_evaluate(data=lambda w: w.kaggle_patient(np.zeros((2, 32, 32, 3), np.uint8), None)),
                 "P has no manual mask to score against: a Kaggle patient needs a <patient>_<n>_mask.tif beside "
                 "every slice", id="evaluate a patient without masks"),
    pytest.param(_evaluate(data=lambda w: w.kaggle_patient(np.zeros((2, 32, 32, 3), np.uint8),
                                                           [np.zeros((32, 40), np.uint8)] * 2)),
                 "does not match", id="evaluate masks of another shape"),
    pytest.param(_train(data=lambda w: _case_with_labels(w, -1.0)), "a_seg.nii.gz holds values below 0",
                 id="train on labels below 0"),
    pytest.param(_train(data=lambda w: _case_with_labels(w, math.nan)), "a_seg.nii.gz holds NaN values",
                 id="train on NaN labels"),
    pytest.param(_train(data=_kaggle_mask_slice_filled_with_255),
                 "mask P_2_mask.tif holds no 0 (background) anywhere", id="train on a mask slice filled with 255"),
    pytest.param(_train(data=_kaggle_patient_missing_a_slice), "1 slice missing (P_2), so the slices either side",
                 id="train on a Kaggle patient missing a slice"),
    pytest.param(_train(data=_kaggle_mask_slice_of_another_shape), "mask P_2_mask.tif has shape",
                 id="train on a Kaggle mask slice of another shape"),
    pytest.param(_train(data=_kaggle_slices_of_two_patients), "holds the slices of 2 patients (P and Q)",
                 id="train on a folder of two patients' slices"),
    pytest.param(lambda w: ["calibrate", "--model", "default", "--data", str(w.patient)],
                 "default model is part of the installed package", id="calibrate --model default"),
    pytest.param(lambda w: ["view", str(BAD_SCANS["corrupt TIFF"][0](w))], "empty or corrupt",
                 id="view a corrupt TIFF"),
    # training inputs and run folders
    pytest.param(_train(data=lambda w: w.inputs / "absent"), "not found", id="train --data missing"),
    pytest.param(_train(data=lambda w: w.kaggle_patient(np.zeros((2, 32, 32, 3), np.uint8), None)),
                 "P has no manual mask to learn from: a Kaggle patient needs a <patient>_<n>_mask.tif beside every "
                 "slice", id="train on a patient without masks"),
    pytest.param(_train(data=_nan_patient), "NaN", id="train on a NaN slice"),
    pytest.param(_train("--init", "/nonexistent/model"), "model folder not found", id="train --init missing"),
    pytest.param(_train(before=lambda w: (w.out / "run").write_text("x")), "is a file, not a folder",
                 id="train --out is a file"),
    pytest.param(_train(before=_model_in_run_folder), "already holds a model", id="train over a model"),
    pytest.param(_train("--resume"), "no run to resume", id="train --resume without a run"),
    pytest.param(_train("--resume", before=_model_in_run_folder), "a model but no resume state",
                 id="train --resume on a model without resume state"),
    pytest.param(_train("--resume", before=lambda w: _resume_state(w, format="napari-lgg-unet-resume/1")),
                 "not a napari-lgg-unet-resume/2 state", id="train --resume from another format"),
    pytest.param(_train("--resume", before=_garbage_resume_state), "corrupt",
                 id="train --resume from a garbage resume state"),
    pytest.param(_train("--resume", before=lambda w: _resume_state(w, param_groups=None)),
                 "param_groups is missing or corrupt", id="train --resume without optimizer groups"),
    pytest.param(_train("--resume", before=lambda w: _resume_state(w, progress='{"history": "none"}')),
                 "history must be a list", id="train --resume with a history that is not a list"),
    pytest.param(_train("--resume", before=lambda w: _resume_state(w, settings=_settings(w, "--lr", "0.5"))),
                 "with other settings: lr 0.5 -> 0.0001", id="train --resume with other settings"),
    pytest.param(_train("--resume", before=lambda w: _resume_state(w, truncate=True)), "corrupt",
                 id="train --resume from a truncated resume state"),
    pytest.param(_train("--resume", "--epochs", "2", before=_resume_state), "does not match this run",  # 1 left
                 id="train --resume with weights of another network"),
    *[pytest.param(_predict(scan=make), phrase, id=f"predict {name}") for name, (make, phrase) in BAD_SCANS.items()],
    pytest.param(_predict(scan=_kaggle_root_with_a_stray_tiff_stack), "holds TIFF stacks (stray.tif) beside P",
                 id="predict a Kaggle root with a stray TIFF stack"),  # load_scan refuses any root: not in BAD_SCANS
    *[pytest.param(_evaluate(data=make), phrase, id=f"evaluate {name}") for name, (make, phrase) in BAD_MASKS.items()],
    *[pytest.param(_predict(model=_bad_model(name)), phrase, id=f"predict with model: {name}")
      for name, (_, phrase, _) in BAD_MODELS.items()],
]


def _files(folder: Path) -> dict[str, str]:
    """Every file under `folder` with a hash of its bytes (the run folder's lock file is not output)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != LOCK_FILE}


def _installed_default_model() -> dict[str, str]:
    return _files(default_model_path())


@pytest.mark.parametrize("make_argv, phrase", CLI_CASES)
def test_cli_refuses_with_one_line_exit_2_and_leaves_no_output(make_argv, phrase, w, capsys, monkeypatch):
    monkeypatch.setattr(launch, "run", lambda *_: pytest.fail("a napari window was opened"))
    argv = make_argv(w)
    capsys.readouterr()
    before, installed = _files(w.out), _installed_default_model()
    inputs = _files(w.inputs)
    try:
        code = cli.main(argv)
    except SystemExit as usage_error:  # argparse's one-line usage errors
        code = usage_error.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.endswith("\n") and "Traceback" not in err, err
    assert phrase in err, err
    assert _files(w.out) == before  # nothing new, nothing changed, nothing half-written
    assert not [p for p in w.out.parent.rglob("*") if ".tmp" in p.name]
    assert _files(w.inputs) == inputs and _installed_default_model() == installed
    assert not (default_model_path() / LOCK_FILE).exists()


_FOLDER_HINT = "empty; give a file or folder name (. for the working folder)"


@pytest.mark.parametrize(("make_argv", "phrase"), [
    (_predict(output=lambda w: ""), _FOLDER_HINT),
    (_predict(scan=_cohort_of_two_cases, output=lambda w: " "), _FOLDER_HINT),
    (lambda w: [*_evaluate()(w)[:-1], ""], "empty; give a file name\n"),
    (lambda w: [*_train()(w)[:4], "", *_train()(w)[5:]], _FOLDER_HINT),
], ids=["predict --output of a scan", "predict --output ' ' of a cohort", "evaluate --json", "train --out"])
def test_an_empty_output_name_is_refused_not_taken_as_the_working_folder(make_argv, phrase, w, capsys, monkeypatch):
    """Path("") is ".": `predict --output ""` wrote a cohort's masks and summary.csv into the working folder. A JSON
    report is a file, so its refusal does not offer "." (the working folder) as a way out."""
    argv = make_argv(w)
    monkeypatch.chdir(w.out)
    with pytest.raises(SystemExit) as refused:
        cli.main(argv)
    assert refused.value.code == 2
    assert phrase in capsys.readouterr().err
    assert _files(w.out) == {}


def test_cli_leaves_no_mask_or_summary_row_when_a_later_scan_of_a_folder_is_corrupt(w, capsys):
    """The first two scans are segmented (and logged on stderr) before the third fails: all or nothing."""
    argv = _predict(scan=_folder_whose_third_scan_is_corrupt, output=lambda w: w.out / "masks")(w)
    assert cli.main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["a", "b", "lgg-unet"] and "cannot read" in lines[-1]
    assert _files(w.out) == {}


def _cohort_argv(w: Workspace, root: Path, out: Path, *extra: str) -> list[str]:
    return ["predict", "--model", str(w.model), "--input", str(root), "--output", str(out), "--device", "cpu", *extra]


def test_a_cohort_run_again_into_a_folder_inside_its_input_root_skips_that_folder(w, capsys):
    root = _cohort_of_two_cases(w)
    argv = _cohort_argv(w, root, root / "masks")
    assert cli.main(argv) == 0
    first = _files(root / "masks")
    assert cli.main([*argv, "--overwrite"]) == 0, capsys.readouterr().err
    assert sorted(_files(root / "masks")) == sorted(first) == ["A_mask.nii.gz", "B_mask.nii.gz", "summary.csv"]
    assert "masks of 2 cases" in capsys.readouterr().out


def test_a_failed_cohort_run_keeps_the_masks_an_earlier_run_finished(w, capsys):
    root = _cohort_of_two_cases(w)
    argv = _cohort_argv(w, root, w.out / "masks")
    assert cli.main(argv) == 0
    (root / "C").mkdir()
    (root / "C" / "C_flair.nii.gz").write_bytes(b"not a NIfTI")
    assert cli.main([*argv, "--overwrite"]) == 2 and "cannot read" in capsys.readouterr().err
    # the journal keeps the rows of the masks the failed run replaced, for the summary of the next run
    assert sorted(_files(w.out / "masks")) == [".summary.rank0.csv", "A_mask.nii.gz", "B_mask.nii.gz", "summary.csv"]
    for name in ("A", "B"):
        assert nib.load(w.out / "masks" / f"{name}_mask.nii.gz").shape == (24, 24, 3)


def test_skip_existing_refuses_masks_that_do_not_fit_their_scans_before_any_case_and_replaces_none(
        w, capsys, monkeypatch):
    """Our masks are written whole, so a file of a mask's name that does not read back on its scan's grid is
    someone's (a hand-drawn mask on another grid, a file of another program): it was silently replaced."""
    root = w.folder("cohort")
    for name in ("A", "B", "C", "D"):
        w.nifti(f"{name}.nii.gz", np.random.default_rng(0).random((24, 24, 3), dtype=np.float32), root)
    out = w.out / "masks"
    assert cli.main(_cohort_argv(w, root, out)) == 0
    truncated, empty, other_grid = (out / f"{name}_mask.nii.gz" for name in "ABC")
    truncated.write_bytes(truncated.read_bytes()[:40])
    empty.write_bytes(b"")
    nib.save(nib.Nifti1Image(np.ones((12, 12, 3), np.uint8), np.diag([2.0, 2.0, 1.0, 1.0])), other_grid)
    (out / "D_mask.nii.gz").unlink()
    capsys.readouterr()
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    monkeypatch.setattr(batch_predict, "segment_scan", lambda *_: pytest.fail("a case was segmented"))
    assert cli.main(_cohort_argv(w, root, out, "--skip-existing")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert (f"{out} holds A_mask.nii.gz, B_mask.nii.gz and 1 more, not masks that fit their cases' scans" in err
            and "move them away, or give existing='overwrite' (--overwrite) to replace them" in err)
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def test_a_cohort_with_overwrite_replaces_its_masks_and_summary_and_keeps_other_files(w, capsys):
    root = _cohort_of_two_cases(w)
    out = _folder_with_users_mask_and_summary(w)
    notes = (out / "notes.txt").stat().st_mtime_ns
    assert cli.main(_cohort_argv(w, root, out, "--overwrite")) == 0, capsys.readouterr().err
    assert sorted(_files(out)) == ["A_mask.nii.gz", "B_mask.nii.gz", "notes.txt", "summary.csv"]
    assert (out / "notes.txt").stat().st_mtime_ns == notes
    with open(out / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    mask = np.asanyarray(nib.load(out / "A_mask.nii.gz").dataobj)
    assert [row["case"] for row in rows] == ["A", "B"] and int(rows[0]["tumour_voxels"]) == np.count_nonzero(mask)


def test_a_failed_overwrite_run_keeps_the_summary_rows_of_the_masks_it_replaced(w, capsys):
    """The replaced masks stay (new); their rows must too, or a later --skip-existing summary describes the old
    masks."""
    root = _cohort_of_two_cases(w)
    out = w.out / "masks"
    assert cli.main(_cohort_argv(w, root, out)) == 0
    # rows no mask on disk agrees with: they stand for the masks the --overwrite run below replaces
    (out / "summary.csv").write_text("case,slices,tumour_voxels,tumour_mm3,seconds\nA,3,99999,,1.0\nB,3,99999,,1.0\n")
    (root / "C").mkdir()
    (root / "C" / "C_flair.nii.gz").write_bytes(b"not a NIfTI")
    assert cli.main(_cohort_argv(w, root, out, "--overwrite")) == 2
    shutil.rmtree(root / "C")
    assert cli.main(_cohort_argv(w, root, out, "--skip-existing")) == 0, capsys.readouterr().err
    with open(out / "summary.csv", newline="") as handle:
        rows = {row["case"]: row for row in csv.DictReader(handle)}
    for name in ("A", "B"):
        mask = np.asanyarray(nib.load(out / f"{name}_mask.nii.gz").dataobj)
        assert int(rows[name]["tumour_voxels"]) == np.count_nonzero(mask)


def test_predict_with_overwrite_replaces_an_existing_output_file(w, capsys):
    scan = _good_scan(w)
    (w.out / "mask.tif").write_text("x")
    argv = ["predict", "--model", str(w.model), "--input", str(scan), "--output", str(w.out / "mask.tif")]
    assert cli.main([*argv, "--overwrite"]) == 0, capsys.readouterr().err
    assert tifffile.imread(w.out / "mask.tif").shape == (3, 40, 40)


def test_a_nan_in_one_case_of_a_cohort_names_that_case(w, capsys):
    root = w.folder("cohort")
    image = np.random.default_rng(0).random((24, 24, 3), dtype=np.float32)
    w.nifti("good.nii.gz", image, root)
    image[3, 3, 1] = np.nan
    w.nifti("spoilt.nii.gz", image, root)
    assert cli.main(_cohort_argv(w, root, w.out / "masks")) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("lgg-unet: error: spoilt: the scan contains NaN")


def test_a_failed_first_training_leaves_no_folder_behind(w, capsys):
    assert cli.main(_train(data=_nan_patient)(w)) == 2
    assert "P: the scan contains NaN" in capsys.readouterr().err
    assert not (w.out / "run").exists()


def test_a_first_save_killed_between_its_two_renames_loads_as_the_new_model(w, monkeypatch):
    """save_model's docstring: weights are renamed first and carry their config, so the folder loads as the new model
    both over an older model and on a first save (where no config.json is there yet)."""
    network = load_model(w.model).network
    config = load_model(w.model).config

    def killed(*_):
        raise KeyboardInterrupt  # the process dies here, after the weights' rename

    older = model_module.save_model(network, config, w.out / "older")
    monkeypatch.setattr(model_module, "_write_config", killed)  # save_model's config write
    for folder in (w.out / "first", older):
        with pytest.raises(KeyboardInterrupt):
            model_module.save_model(network, config, folder)
        loaded = load_model(folder)
        weights_id = model_module.safe_open(str(folder / model_module.WEIGHTS_FILE), "pt").metadata()["weights_id"]
        assert loaded.config.weights_id == weights_id
    assert not (w.out / "first" / model_module.CONFIG_FILE).exists()


@pytest.mark.parametrize("name", BAD_SCANS)
def test_api_refuses_a_bad_scan_with_an_input_error(name, w):
    make, phrase = BAD_SCANS[name]
    with pytest.raises(InputError, match=phrase):
        scan = load_scan(make(w))
        segment_volume(load_model(w.model), scan.image, rgb=scan.rgb)


def _one_input_warning(told: pytest.WarningsRecorder) -> str:
    [warning] = [str(w.message) for w in told if issubclass(w.category, InputWarning)]
    return warning


@pytest.mark.parametrize("name", BAD_MASKS)
def test_api_reads_a_scan_whose_manual_mask_is_broken_without_it_unless_the_mask_is_required(name, w):
    make, phrase = BAD_MASKS[name]
    source = make(w)
    with pytest.raises(InputError, match=re.escape(phrase)):
        load_scan(source, require_mask=True)
    with pytest.warns(InputWarning) as told:
        scan = load_scan(source)
    assert scan.mask is None and not scan.fully_labelled and scan.image.size
    warning = _one_input_warning(told)
    assert warning.startswith(f"{scan.name} is read without its manual mask") and phrase in warning


@pytest.mark.parametrize("name", BAD_MASKS)
def test_predict_segments_a_scan_whose_manual_mask_is_broken_and_says_once_why_it_is_left_out(name, w, capsys):
    """A 0.4 voxel in A_seg.nii.gz refused the whole case to predict, which never reads the mask."""
    make, phrase = BAD_MASKS[name]
    source, out = make(w), w.out / "masks"
    out.mkdir()  # a folder of masks, with summary.csv, for one scan too
    inputs = _files(w.inputs)
    assert cli.main(_cohort_argv(w, source, out)) == 0, capsys.readouterr().err
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lgg-unet: warning:")]
    assert len(warned) == 1 and "is read without its manual mask" in warned[0] and phrase in warned[0], warned
    [mask] = out.glob("*_mask.*")
    with open(out / "summary.csv", newline="") as handle:
        [row] = list(csv.DictReader(handle))
    assert mask.name.startswith(row["case"]) and int(row["slices"]) > 0  # the row of a scan without a mask
    assert _files(w.inputs) == inputs  # the broken mask stays as the user left it


@pytest.mark.parametrize("name", BAD_MASKS)
def test_file_open_shows_a_scan_whose_manual_mask_is_broken_without_a_labels_layer(name, w):
    make, phrase = BAD_MASKS[name]
    source = str(make(w))
    with pytest.warns(InputWarning) as told:
        layers = get_reader(source)(source)
    assert layers and [kind for _, _, kind in layers] == ["image"] * len(layers)
    assert phrase in _one_input_warning(told)


def test_view_opens_a_scan_whose_manual_mask_is_broken_with_one_warning(w, capsys, monkeypatch):
    """`view` reads the scan twice, to refuse a bad one before a window opens and then in the window: its warning
    came twice, word for word. (Python shows a warning once per place only until any `warnings.catch_warnings` runs,
    as pydantic's do while napari builds the viewer.)"""

    def open_in_napari(path: Path, segment: bool) -> int:
        with warnings.catch_warnings():
            pass
        get_reader(str(path))(str(path))
        return 0

    monkeypatch.setattr(launch, "run", open_in_napari)
    make, phrase = BAD_MASKS["labels resampled with linear interpolation"]
    assert cli.main(["view", str(make(w))]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lgg-unet: warning:")]
    assert len(warned) == 1 and phrase in warned[0], warned


@pytest.mark.parametrize("name", BAD_MODELS)
def test_api_refuses_a_bad_model_folder_with_a_model_error_before_building_it(name, w, monkeypatch):
    make, phrase, before_building = BAD_MODELS[name]
    if before_building:
        build = model_module.build_network

        def meta_only(config):
            if torch.get_default_device().type != "meta":
                pytest.fail("a network was built")
            return build(config)

        monkeypatch.setattr(model_module, "build_network", meta_only)
    folder = make_bad_model(name, w.model, w.inputs)
    with pytest.raises(ModelError, match=phrase):
        load_model(folder)


nan = math.nan
API_CASES = [
    pytest.param(lambda: SegmentOptions(batch_size=-1), InputError, id="SegmentOptions batch_size -1"),
    pytest.param(lambda: SegmentOptions(batch_size=0), InputError, id="SegmentOptions batch_size 0"),
    pytest.param(lambda: SegmentOptions(batch_size=2.5), InputError, id="SegmentOptions batch_size 2.5"),
    pytest.param(lambda: SegmentOptions(tta="yes"), InputError, id="SegmentOptions tta as text"),
    pytest.param(lambda: SegmentOptions(precision="fp8"), InputError, id="SegmentOptions precision fp8"),
    pytest.param(lambda: PostprocessConfig(threshold=nan), InputError, id="PostprocessConfig threshold nan"),
    pytest.param(lambda: PostprocessConfig(threshold=2), InputError, id="PostprocessConfig threshold 2"),
    pytest.param(lambda: PostprocessConfig(threshold="0.5"), InputError, id="PostprocessConfig threshold as text"),
    pytest.param(lambda: PostprocessConfig(threshold=10**400), InputError, id="PostprocessConfig threshold 10**400"),
    pytest.param(lambda: PostprocessConfig(threshold=np.True_), InputError, id="PostprocessConfig threshold np.True_"),
    pytest.param(lambda: PostprocessConfig(min_size=np.float64(500)), InputError, id="PostprocessConfig min_size 500."),
    pytest.param(lambda: PostprocessConfig(min_size=-3), InputError, id="PostprocessConfig min_size -3"),
    pytest.param(lambda: PostprocessConfig(min_size="abc"), InputError, id="PostprocessConfig min_size as text"),
    pytest.param(lambda: PostprocessConfig(min_confidence=2), InputError, id="PostprocessConfig min_confidence 2"),
    pytest.param(lambda: TrainConfig(lr=nan), InputError, id="TrainConfig lr nan"),
    pytest.param(lambda: TrainConfig(lr=10**400), InputError, id="TrainConfig lr 10**400"),
    pytest.param(lambda: TrainConfig(workers=-1), InputError, id="TrainConfig workers -1"),
    pytest.param(lambda: TrainConfig(steps_per_epoch=-5), InputError, id="TrainConfig steps_per_epoch -5"),
    pytest.param(lambda: TrainConfig(tumour_fraction=2), InputError, id="TrainConfig tumour_fraction 2"),
    pytest.param(lambda: TrainConfig(tumour_fraction=nan), InputError, id="TrainConfig tumour_fraction nan"),
    pytest.param(lambda: TrainConfig(seed=-1), InputError, id="TrainConfig seed -1"),
    pytest.param(lambda: TrainConfig(image_size=8192), InputError, id="TrainConfig image_size 8192"),
    pytest.param(lambda: TrainConfig(image_size=256.0), InputError, id="TrainConfig image_size 256.0"),
    pytest.param(lambda: TrainConfig(decoder_channels=(0, 16, 16, 16, 16)), InputError, id="TrainConfig decoder 0"),
    pytest.param(lambda: TrainConfig(decoder_channels=(-8, 16, 16, 16, 16)), InputError,
                 id="TrainConfig decoder negative"),
    pytest.param(lambda: TrainConfig(validation_variants=("blurred",)), InputError, id="TrainConfig variant blurred"),
    pytest.param(lambda: TrainConfig(validation_variants="as-is"), InputError, id="TrainConfig variants as text"),
    pytest.param(lambda: TrainConfig(validation_variants=None), InputError, id="TrainConfig variants None"),
    pytest.param(lambda: TrainConfig(decoder_channels=None), InputError, id="TrainConfig decoder None"),
    pytest.param(lambda: TrainConfig(decoder_channels=128), InputError, id="TrainConfig decoder 128"),
    pytest.param(lambda: TrainConfig(decoder_channels="128,64,32"), InputError, id="TrainConfig decoder as text"),
    pytest.param(lambda: TrainConfig(device="tpu"), InputError, id="TrainConfig device tpu"),
    pytest.param(lambda: AugmentConfig(flair_only=2), InputError, id="AugmentConfig flair_only 2"),
    pytest.param(lambda: AugmentConfig(enabled="maybe"), InputError, id="AugmentConfig enabled maybe"),
    pytest.param(lambda: AugmentConfig(rotation_degrees=nan), InputError, id="AugmentConfig rotation nan"),
    pytest.param(lambda: AugmentConfig(rotation_degrees=10**400), InputError, id="AugmentConfig rotation 10**400"),
]


def test_api_segments_a_nested_list_like_the_array_and_refuses_a_ragged_one(tiny_model_dir):
    model, image = load_model(tiny_model_dir), np.random.default_rng(0).random((2, 32, 32), dtype=np.float32)
    from_list = segment_volume(model, image.tolist(), SegmentOptions(precision="fp32"))
    np.testing.assert_array_equal(from_list.mask, segment_volume(model, image, SegmentOptions(precision="fp32")).mask)
    with pytest.raises(InputError, match="must be arrays of numbers"):
        segment_volume(model, [image[0].tolist(), image[1, :20].tolist()])


def test_api_write_mask_where_it_cannot_write_is_an_input_error_naming_the_target(w):
    scan = load_scan(_good_scan(w))
    (w.out / "a-file").write_text("x")
    target = w.out / "a-file" / "mask.tif"
    with pytest.raises(InputError, match=f"cannot write {target}"):
        write_mask(target, np.zeros(scan.image.shape, np.uint8), scan)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_api_write_mask_into_a_read_only_folder_is_an_input_error(w):
    scan = load_scan(_good_scan(w))
    w.out.chmod(0o500)
    try:
        with pytest.raises(InputError, match="cannot write .*Permission denied"):
            write_mask(w.out / "mask.tif", np.zeros(scan.image.shape, np.uint8), scan)
    finally:
        w.out.chmod(0o700)


@pytest.mark.parametrize("make, error", API_CASES)
def test_api_refuses_a_bad_setting_with_our_error(make, error):
    with pytest.raises(error) as raised:
        make()
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("name", BAD_IMAGES)
def test_api_refuses_a_bad_image_array_with_an_input_error(name, tiny_model_dir):
    make, phrase = BAD_IMAGES[name]
    with pytest.raises(InputError, match=phrase):
        segment_volume(load_model(tiny_model_dir), make())


TRAIN_API_CASES = [
    pytest.param(lambda w: train_model(
        [load_scan(w.patient)], TrainConfig(resume=True, workers=0, device="cpu"), w.out / "run"),
        "no run to resume", id="train_model resume without a run"),
    pytest.param(lambda w: train_model(
        [load_scan(_nan_patient(w), require_mask=True)], TrainConfig(workers=0, device="cpu"), w.out / "run"),
        "P: the scan contains NaN", id="train_model on a NaN slice"),
    pytest.param(lambda w: train_model([], TrainConfig(workers=0, device="cpu"), w.out / "run"),
                 "no scans", id="train_model without scans"),
    pytest.param(lambda w: train_model(
        [Scan("P", np.ones((2, 32, 32), np.float32), "tumour", rgb=False)], TrainConfig(workers=0, device="cpu"),
        w.out / "run"),
        "P: masks must hold numbers", id="train_model with a mask given as text"),
    pytest.param(lambda w: train_model([load_scan(w.patient)], None, w.out / "run"),
                 "config must be a TrainConfig, not NoneType", id="train_model without a config"),
    pytest.param(lambda w: train_model([load_scan(w.patient)], {"epochs": 1}, w.out / "run"),
                 "config must be a TrainConfig, not dict", id="train_model with settings as a dict"),
    pytest.param(lambda w: train_model(load_scan(w.patient), TrainConfig(), w.out / "run"),
                 r"scans must be a list of Scans \(\[scan\] for one\)", id="train_model on one Scan, not a list"),
    pytest.param(lambda w: train_model([w.patient], TrainConfig(), w.out / "run"),
                 "scans must be loaded first", id="train_model on paths"),
    pytest.param(lambda w: train_model([load_scan(w.patient)], TrainConfig(), None),
                 "the output folder is given as a path", id="train_model without an output folder"),
    pytest.param(lambda w: train_model([load_scan(w.patient)], TrainConfig(), w.out / "run", stop=True),
                 "stop must be a function", id="train_model with stop=True"),
]


@pytest.mark.parametrize("start, phrase", TRAIN_API_CASES)
def test_api_training_refuses_bad_runs_and_writes_no_model(start, phrase, w):
    with pytest.raises(LggUnetError, match=phrase):
        list(start(w))
    assert not RunFolder(w.out / "run").holds_model()
