"""Checks a scan file passes before its voxels are trusted, and the pixel types the engine keeps.

A file's header is checked before any voxel is read: the size it claims against the file's own size (a 481-byte file
cannot hold 16 GB) and against the memory this machine has free, its pixel type (complex or RGB colour voxels are
not MRI intensities) and its geometry (a NaN or singular affine places voxels nowhere). A gzip-compressed file is
read to its end so its CRC is checked: a damaged file is refused, not read as garbage. A manual mask that fails its
checks refuses its scan only where ground truth is needed (`optional_mask`).
"""

from __future__ import annotations

import math
import os
import warnings
import zlib
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from .errors import InputError, InputWarning
from .units import voxel_volume

KEPT_DTYPES = (np.uint8, np.uint16, np.int16, np.float32)  # kept as read; other numbers become float32
MAX_DEFLATE_RATIO = 1032  # deflate cannot expand data more than this, so a .gz file bounds the size it holds
MEMORY_HEADROOM = 2  # a volume must fit this many times in free memory: the engine makes at least one more copy
# A label read within this fraction of a whole number is that number: float rounding (1 as 0.99999994) and NIfTI
# scl_slope (0/255 scaled by a rounded 1/255, 0.00392: 0.9996) move a label by far less; a blurred edge moves it more.
LABEL_ROUNDING = 1e-3
# A tumour label map holds a few labels: the LGG masks 2 (0/255), BraTS 4 ({0, 1, 2, 4} or {0, 1, 2, 3}), BraTS 2024's
# post-treatment maps 5. An MRI image holds many more: any one channel of any of the 81 LGG patients 96 or more over
# its slices, half the LGG FLAIR slices 169 or more each; the BraTS sample's volumes 868 or more. Only slices at the
# very top or bottom of the head (3 % of the LGG slices), black but for a little noise, hold 16 or fewer.
MAX_LABELS = 16


def check_pixel_type(label: str, dtype: np.dtype) -> None:
    """Refuse voxels that are not real numbers: complex (its imaginary part would be dropped) or RGB colour."""
    dtype = np.dtype(dtype)
    if dtype.names is not None:
        if set(dtype.names) >= {"R", "G", "B"}:
            raise colour_refusal(label)
        raise InputError(f"{label} holds structured {dtype.names} voxels; the model needs grey MRI intensities "
                         "(one number per voxel)")
    if dtype == bool or np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating):
        return
    raise InputError(f"{label}: unsupported pixel type {dtype}; the model needs real-valued intensities")


def colour_refusal(label: str) -> InputError:
    """The refusal of colour voxels (an RGB24 NIfTI, an RGB / YBR / palette DICOM series): its channels are colours of
    a picture, not the MRI sequences the model's channels are, so splitting them into channels would be wrong."""
    return InputError(f"{label} holds RGB colour voxels; the model needs grey MRI intensities (one number per voxel)")


def kept_pixels(data: np.ndarray) -> np.ndarray:
    """`data` in a pixel type the engine works with: booleans as uint8, KEPT_DTYPES unchanged, other numbers float32."""
    if data.dtype == bool:
        return data.astype(np.uint8)
    return data if data.dtype in KEPT_DTYPES else data.astype(np.float32)


def common_dtype(arrays: list[np.ndarray]) -> np.dtype:
    """The kept pixel type that holds every array's values (for stacking sequences as channels)."""
    dtype = np.result_type(*arrays)
    return dtype if dtype in KEPT_DTYPES else np.dtype(np.float32)


def available_memory() -> int | None:
    """Bytes of memory free for new allocations (Linux MemAvailable, else all physical memory); None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{int(n)} bytes"


def check_claimed_size(label: str, shape: tuple[int, ...], dtype: np.dtype, file_bytes: int | None = None,
                       data_offset: int = 0, compressed: bool = False) -> None:
    """Refuse a header whose voxels the file cannot hold or memory cannot take, before anything is allocated.

    `file_bytes` is the size of the file holding the voxels (None when unknown, e.g. a detached data file);
    `compressed` files are bounded by deflate's largest expansion instead of their length.
    """
    dtype = np.dtype(dtype)
    need = math.prod(int(n) for n in shape) * dtype.itemsize
    claim = f"its header claims {' x '.join(map(str, shape))} {dtype.name} voxels ({_size(need)})"
    if file_bytes is not None:
        room = file_bytes * MAX_DEFLATE_RATIO if compressed else file_bytes - data_offset
        if need > room:
            raise InputError(f"{label}: {claim} but the file is only {_size(file_bytes)}; it is truncated or its "
                             "header is corrupt")
    kept = math.prod(int(n) for n in shape) * kept_pixels(np.zeros(0, dtype)).dtype.itemsize
    free = available_memory()
    if free is not None and kept * MEMORY_HEADROOM > free:
        raise InputError(f"{label}: {claim}, more than the {_size(free)} of memory free can hold "
                         f"({MEMORY_HEADROOM} copies are needed); free memory or crop the volume")


def check_gzip_end(stream: BinaryIO, path: Path) -> None:
    """Read a gzip stream to its end, which makes Python's gzip check the CRC and length of what was decompressed;
    refuse a damaged file (its voxels would otherwise be used as read)."""
    try:
        while stream.read(1 << 24):
            pass
    except (OSError, EOFError, zlib.error) as error:
        reason = " ".join(str(error).split()) or error.__class__.__name__
        raise InputError(
            f"{path} is damaged: its gzip integrity check failed ({reason}); copy the file again"
        ) from None


def check_affine(label: str, affine: np.ndarray) -> None:
    """Refuse a voxel-to-world affine with NaN or infinite values or a zero voxel size (no invertible mapping)."""
    matrix = np.asarray(affine, dtype=float)
    if not np.isfinite(matrix).all():
        raise InputError(f"{label}: its voxel-to-mm geometry holds NaN or infinite values (sform / qform / pixdim "
                         "or spacing / direction); fix the header")
    linear = matrix[:3, :3]
    spacing = np.sqrt((linear**2).sum(axis=0))
    if (spacing <= 0).any() or voxel_volume(linear) <= 1e-12 * max(float(spacing.prod()), 1e-300):
        raise InputError(f"{label}: its voxel-to-mm geometry is not invertible (voxel size "
                         f"{' x '.join(f'{s:g}' for s in spacing)} mm, or axes that coincide); fix the header")


def tumour_of_labels(label: str, labels: np.ndarray) -> np.ndarray:
    """A label file's voxels as the whole tumour: every label above 0 (BraTS {0, 1, 2, 4}, masks 0/1 or 0/255, whole
    numbers stored as floats alike).

    A label map holds whole numbers of 0 and above; anything else `> 0` would read wrong without a word, so it is
    refused, naming `label` (the file): NaN (no label at all, read as background), values below 0 (a mask stored as
    -1 / 0 would be read as no tumour, and a model trained or scored on none) and fractions (a mask resampled with
    linear interpolation: `> 0` would grow its tumour by the width of the blur all round). A whole label off by a
    float's rounding or a NIfTI header's scaling (within LABEL_ROUNDING of it: 1 stored as 0.99999994 or 1.0000001,
    0/255 with scl_slope 0.00392 read as 0 / 0.9996) is that label; 0 has no such margin, so a blur's faint tail
    (0.0004) is still a fraction, never background.

    An image saved under a mask's name (a FLAIR copied as `_seg.nii.gz`) would be all or mostly tumour, so it is
    refused too: more than MAX_LABELS distinct values (floats counted as the whole numbers they stand for), or no 0
    anywhere (a real mask is background almost everywhere: at most 12 % of an LGG slice is tumour, 3.5 % of a patient).
    A patient's FLAIR saved as its slice masks is refused by its first slice that is not black. So is an atlas of
    many structures, rightly (read `> 0`, each would be tumour): the message names both, and what to give instead."""
    values = np.asarray(labels)
    check_label_values(label, values, "fix or re-export the labels",
                       "resample it with nearest neighbour, or threshold it yourself")
    if (count := len(np.unique(np.round(values) if values.dtype.kind == "f" else values))) > MAX_LABELS:
        raise InputError(f"{label} holds {count} distinct values; a tumour mask holds at most {MAX_LABELS} (0 for "
                         "background, and every label above 0 is read as tumour: 0/255, 0/1, BraTS 0/1/2/4). So many "
                         "are an image saved as a mask (give the mask drawn on the scan), or a label map of many "
                         "structures (an atlas), each of which would be read as tumour (give a mask of the tumour's "
                         "labels alone, 0 elsewhere)")
    tumour = values > 0
    if tumour.all():
        raise InputError(f"{label} holds no 0 (background) anywhere, so every voxel would be tumour, as an image or a "
                         "mask filled with 255 gives; a tumour mask is 0 wherever there is no tumour: give the mask "
                         "drawn on the scan")
    return tumour


def check_label_values(label: str, values: np.ndarray, fix: str, fraction_fix: str) -> None:
    """Refuse, naming `label`, what no label map holds: NaN, fractions, values below 0 (why: `tumour_of_labels`);
    `fraction_fix` says how to mend fractions, `fix` the others. The one rule for masks read (`tumour_of_labels`) and
    written (formats.ScanFormat.write_mask): a probability map of 0.7 was written as all tumour and -1 as background,
    masks that reading refuses or reads otherwise than meant."""
    if values.dtype.kind == "f":
        if np.isnan(values).any():
            raise InputError(f"{label} holds NaN values; a label map holds whole numbers (0 background, above 0 "
                             f"tumour): {fix}")
        whole = np.round(values)
        if (fraction := values[np.abs(values - whole) > LABEL_ROUNDING * np.abs(whole)]).size:
            raise InputError(f"{label} holds fractional values (such as {float(fraction.flat[0]):.7g}), as a "
                             "probability map or a mask resampled with linear interpolation has; a label map holds "
                             f"whole numbers (0 background, above 0 tumour): {fraction_fix}")
    refuse_negative_labels(label, values, fix)


def refuse_negative_labels(label: str, values: np.ndarray, fix: str) -> None:
    """Refuse labels below 0, naming `label` and saying how to `fix` them: every reader of labels takes `> 0` as
    tumour (`tumour_of_labels`, the widgets' training labels and ground truth), so a mask stored or painted as -1 / 0
    would be read as no tumour without a word, and a model trained or scored on none."""
    if values.dtype.kind in "fi" and (values < 0).any():
        raise InputError(f"{label} holds values below 0 (such as {values.min():g}); a label map holds 0 for background "
                         f"and labels above 0 for tumour: {fix}")


def optional_mask(scan: str, read: Callable[[], np.ndarray], required: bool) -> np.ndarray | None:
    """The manual mask `read` gives the scan named `scan`, where masks are attached to scans (a Kaggle patient's
    `_mask.tif` slices, a case's labels file). Where ground truth is `required` (training, evaluate, calibrate) a mask
    that cannot be used is refused as `read` refuses it. Elsewhere (segmenting, viewing: neither reads it) the scan is
    read as one without a mask, and the user told once, by an InputWarning naming the file and the reason: a 0.4 voxel
    in `A_seg.nii.gz` refused the whole case to `predict`, napari's File > Open and `lgg-unet view`."""
    try:
        return read()
    except InputError as refusal:
        if required:
            raise
        warnings.warn(InputWarning(f"{scan} is read without its manual mask (segmenting and viewing need none): "
                                   f"{refusal}"), stacklevel=1)
        return None
