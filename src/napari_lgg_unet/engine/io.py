"""Read any supported scan (Kaggle LGG patient folders, TIFF stacks, NIfTI / NRRD / MHA / DICOM cases); write masks.

A patient folder holds `<id>_<n>.tif` (256x256x3 uint8) and `<id>_<n>_mask.tif` (0/255) per slice;
slices are ordered by the integer `n`, not by the file name as text. Medical volumes and their case folders are
read by volumes.py, dicom.py and cases.py (imported on first use: TIFF-only work never loads nibabel or SimpleITK).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
import tifffile

from .atomic import atomic_path
from .errors import InputError, describe
from .preprocess import resolve_rgb

if TYPE_CHECKING:
    from .cases import Case
    from .volumes import Geometry

_SLICE = re.compile(r"^(?P<stem>.+)_(?P<index>\d+)(?P<mask>_mask)?\.tiff?$", re.IGNORECASE)
SUPPORTED_DTYPES = (np.uint8, np.uint16, np.int16, np.float32)


@dataclass
class Scan:
    """One scan: `image` as read, `mask` (bool, image's spatial shape) when known.

    `geometry` is set for medical volumes: where the (Z, H, W) voxels sit, so a mask can be written onto the
    source grid; None for TIFFs and Kaggle folders, whose slices are already in the engine's layout.
    """

    name: str
    image: np.ndarray
    mask: np.ndarray | None = None
    rgb: bool = True
    geometry: Geometry | None = None

    @property
    def spacing(self) -> tuple[float, float, float] | None:
        """Voxel size in mm per (Z, H, W) axis, when known (napari's layer `scale`)."""
        return self.geometry.spacing if self.geometry is not None else None


ScanSource = Union[str, Path, "Case"]  # what load_scan reads; find_scans lists these


def read_tiff(path: str | Path) -> np.ndarray:
    """Read a TIFF, turning every failure into an InputError that names the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    try:
        data = tifffile.imread(path)
    except Exception as error:  # tifffile raises many types for broken files
        raise InputError(f"cannot read {path} as a TIFF image ({describe(error)})") from None
    if data.ndim < 2 or data.size == 0:  # tifffile reads some broken files as an empty array
        raise InputError(f"{path} holds no image (shape {data.shape}); it is empty or corrupt")
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
    """Every scan of a root of any kind (see `find_scans`), for training."""
    return [load_scan(source, require_mask=require_masks) for source in find_scans(root)]


def load_scan(source: ScanSource, require_mask: bool = False) -> Scan:
    """Any supported scan: a Kaggle patient folder, a TIFF stack (2D, 2D RGB, 3D, 3D RGB), a NIfTI / NRRD / MHA
    file, a case folder (BraTS, nnU-Net, sequence-named files), a DICOM series or study folder, or a listed Case.

    A volume file brings the case it belongs to (its sibling sequences and labels). `require_mask` refuses a scan
    without ground truth.
    """
    from .cases import Case, load_case

    if not isinstance(source, Case):
        path = Path(source)
        if not path.exists():
            raise InputError(f"path not found: {path}")
        if path.is_dir() and is_patient_folder(path):
            return load_patient(path, require_masks=require_mask)
        if path.is_file() and path.suffix.lower() in (".tif", ".tiff"):
            if require_mask:
                raise InputError(f"{path}: a TIFF stack carries no mask; use a patient folder with _mask.tif slices")
            image = read_tiff(path)
            return Scan(name=path.stem, image=image, mask=None, rgb=resolve_rgb(image, None))
        source = case_at(path)
    loaded = load_case(source, require_mask)
    return Scan(source.name, loaded.image, loaded.mask, loaded.rgb, loaded.geometry)


def case_at(path: Path) -> Case:
    """The one case a volume file belongs to, or that a case / DICOM folder holds."""
    from .cases import cases_in_folder, dicom_case
    from .sequences import split_sequence
    from .volumes import strip_volume_suffix, volume_suffix

    if path.is_file():
        if not volume_suffix(path):
            raise InputError(f"{path}: not a scan file (.tif, .nii, .nii.gz, .nrrd, .mha or .mhd)")
        key = split_sequence(strip_volume_suffix(path.name))[0]
        cases = [c for c in cases_in_folder(path.parent, key)
                 if path in [s.path for _, s in c.sequences] or (c.labels and c.labels.path == path)]
        if not cases:  # e.g. an nnU-Net channel file beyond dataset.json's channels
            raise InputError(f"{path}: no scan of its folder uses this file")
        return cases[0]
    cases = cases_in_folder(path)
    if len(cases) == 1:
        return cases[0]
    if cases:
        raise InputError(f"{path} holds {len(cases)} cases ({', '.join(c.name for c in cases[:3])}, ...); "
                         "give one of them, or give the folder as a folder of cases")
    if any(p.is_dir() for p in path.iterdir()) and not list_dicom(path):
        raise InputError(f"{path} holds no scan of its own; give it as a folder of cases, or one case inside it")
    return dicom_case(path)


def list_dicom(folder: Path) -> bool:
    from .dicom import list_series

    return bool(list_series(folder))


def find_scans(root: str | Path) -> list[ScanSource]:
    """Every scan in `root`: root itself when it is one scan, else the scans in it and in its direct subfolders.

    Roots: a Kaggle root, a folder of BraTS / plain case folders, an nnU-Net dataset (its imagesTr) or images
    folder, a folder of NIfTI files, a folder of DICOM folders. Items are Paths (Kaggle folders, files) or Cases;
    load_scan reads each, and each has a `.name`.
    """
    from .cases import cases_in_folder, dicom_case, nnunet_cases

    root = Path(root)
    if not root.exists():
        raise InputError(f"path not found: {root}")
    if root.is_file() or is_patient_folder(root):
        return [root]
    if (cases := nnunet_cases(root)) is not None:
        return list(cases)
    found: list[ScanSource] = list(cases_in_folder(root))
    if found:
        return found
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if is_patient_folder(folder):
            found.append(folder)
        elif cases := cases_in_folder(folder):
            found.extend(cases)
        elif list_dicom(folder):
            found.append(dicom_case(folder))
    if not found and list_dicom(root):
        found.append(dicom_case(root))
    if not found:
        raise InputError(f"{root} holds no scans (no patient folders with <patient>_<n>.tif slices, "
                         "NIfTI / NRRD / MHA volumes, case folders or DICOM series)")
    return found


def write_mask_tiff(path: str | Path, mask: np.ndarray) -> None:
    """Save a mask as uint8 0/255 (the dataset's convention), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, (np.asarray(mask) > 0).astype(np.uint8) * 255, photometric="minisblack", compression="zlib")


def mask_file_name(scan: Scan) -> str:
    """`<scan>_mask.nii.gz` for medical volumes (their geometry kept), `<scan>_mask.tif` for TIFF inputs."""
    return f"{scan.name}_mask.nii.gz" if scan.geometry is not None else f"{scan.name}_mask.tif"


def write_mask(path: str | Path, mask: np.ndarray, scan: Scan) -> None:
    """Save `mask` (the scan's (Z, H, W)) in the format `path` names: .nii / .nii.gz / .nrrd / .mha on the scan's
    source grid (a scan without geometry gets the engine's axes and unit spacing), anything else TIFF 0/255."""
    from .volumes import engine_geometry, volume_suffix, write_mask_volume

    if volume_suffix(path) is None:
        write_mask_tiff(path, mask)
        return
    mask = np.asarray(mask)
    if mask.ndim == 2:
        mask = mask[None]
    write_mask_volume(path, mask, scan.geometry or engine_geometry(mask.shape))
