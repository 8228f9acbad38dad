"""Read Kaggle LGG patient folders and TIFF stacks; write masks.

A patient folder holds `<id>_<n>.tif` (256x256x3 uint8) and `<id>_<n>_mask.tif` (0/255) per slice;
slices are ordered by the integer `n`, not by the file name as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from .atomic import atomic_path
from .errors import InputError
from .preprocess import resolve_rgb

_SLICE = re.compile(r"^(?P<stem>.+)_(?P<index>\d+)(?P<mask>_mask)?\.tiff?$", re.IGNORECASE)
SUPPORTED_DTYPES = (np.uint8, np.uint16, np.int16, np.float32)


@dataclass
class Scan:
    """One scan: `image` as read, `mask` (bool, image's spatial shape) when known."""

    name: str
    image: np.ndarray
    mask: np.ndarray | None = None
    rgb: bool = True


def read_tiff(path: str | Path) -> np.ndarray:
    """Read a TIFF, turning every failure into an InputError that names the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    try:
        data = tifffile.imread(path)
    except Exception as error:  # tifffile raises many types for broken files
        raise InputError(f"cannot read {path} as a TIFF image ({error.__class__.__name__}: {error})") from None
    if data.dtype not in SUPPORTED_DTYPES and data.dtype != bool:
        if np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating):
            data = data.astype(np.float32)
        else:
            raise InputError(f"{path}: unsupported pixel type {data.dtype}")
    return data


def _slice_files(folder: Path) -> tuple[list[tuple[int, Path]], dict[int, Path]]:
    images, masks = [], {}
    for file in folder.iterdir():
        match = _SLICE.match(file.name)
        if not match or not file.is_file():
            continue
        index = int(match["index"])
        if match["mask"]:
            masks[index] = file
        else:
            images.append((index, file))
    images.sort()
    return images, masks


def is_patient_folder(folder: str | Path) -> bool:
    folder = Path(folder)
    return folder.is_dir() and bool(_slice_files(folder)[0])


def load_patient(folder: str | Path, require_masks: bool = False) -> Scan:
    """A Kaggle patient folder as image (Z, H, W, 3) and, if every slice has one, mask (Z, H, W) bool."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"folder not found: {folder}")
    images, masks = _slice_files(folder)
    if not images:
        raise InputError(f"{folder} holds no slice images named like <patient>_<n>.tif")
    slices = [read_tiff(path) for _, path in images]
    shapes = {s.shape for s in slices}
    if len(shapes) != 1:
        raise InputError(f"{folder}: slices have different shapes {sorted(shapes)}")
    image = np.stack(slices)
    mask = None
    have = [index in masks for index, _ in images]
    if all(have):
        mask = np.stack([read_tiff(masks[index]) > 0 for index, _ in images])
        if mask.ndim == 4:  # masks saved with a channel axis
            mask = mask.any(axis=-1)
        if mask.shape != image.shape[:3]:
            raise InputError(f"{folder}: mask shape {mask.shape} does not match image shape {image.shape[:3]}")
    elif require_masks:
        raise InputError(f"{folder}: {have.count(False)} of {len(have)} slices have no _mask.tif")
    rgb = image.ndim == 4
    return Scan(name=folder.name, image=image, mask=mask, rgb=rgb)


def patient_folders(root: str | Path) -> list[Path]:
    """The patient folders in `root`, or `[root]` when root is itself a patient folder."""
    root = Path(root)
    if not root.exists():
        raise InputError(f"path not found: {root}")
    if not root.is_dir():
        raise InputError(f"{root} is not a folder")
    if is_patient_folder(root):
        return [root]
    folders = sorted(p for p in root.iterdir() if is_patient_folder(p))
    if not folders:
        raise InputError(f"{root} holds no patient folders with <patient>_<n>.tif slices")
    return folders


def load_patients(root: str | Path, require_masks: bool = True) -> list[Scan]:
    return [load_patient(folder, require_masks=require_masks) for folder in patient_folders(root)]


def load_scan(path: str | Path) -> Scan:
    """A patient folder or a TIFF stack (2D, 2D RGB, 3D, 3D RGB)."""
    path = Path(path)
    if path.is_dir():
        return load_patient(path)
    image = read_tiff(path)
    return Scan(name=path.stem, image=image, mask=None, rgb=resolve_rgb(image, None))


def write_mask_tiff(path: str | Path, mask: np.ndarray) -> None:
    """Save a mask as uint8 0/255 (the dataset's convention), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, (np.asarray(mask) > 0).astype(np.uint8) * 255, photometric="minisblack", compression="zlib")
