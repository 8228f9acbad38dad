"""Scans from any supported path (formats.py says which format a path is), TIFF stacks and Kaggle LGG patient
folders, and masks written back.

A patient folder holds `<id>_<n>.tif` (256x256x3 uint8) and `<id>_<n>_mask.tif` (0/255) per slice;
slices are ordered by the integer `n`, not by the file name as text, and their numbers run without gaps. Medical
volumes and their case folders are read by volumes.py, dicom.py and cases.py (imported on first use: TIFF-only work
never loads nibabel or SimpleITK).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np
import tifffile

from .atomic import atomic_path
from .errors import InputError, InputWarning, describe, few_names
from .formats import (TIFF, ScanSource, case_scan, check_mask_name, default_mask_suffix, file_entry, file_format,
                      format_of, not_a_file, not_a_scan, scan_name, source_mask_suffix)
from .listing import listing
from .scan_checks import check_claimed_size, check_pixel_type, kept_pixels, optional_mask, tumour_of_labels
from .stopping import unless_stopped
from .validate import check_bool

if TYPE_CHECKING:
    from .volumes import Geometry

_TIFF_SUFFIX = "|".join(re.escape(s) for s in TIFF.suffixes)
MASK_WORD = "_mask"  # what a scan's mask adds to the scan's name (`mask_file_name`), and how `find_scans` knows one
_SLICE = re.compile(rf"^(?P<stem>.+)_(?P<index>\d+)(?P<mask>_mask)?(?:{_TIFF_SUFFIX})$", re.IGNORECASE)


@dataclass
class Scan:
    """One scan: `image` as read, `mask` (bool, image's spatial shape) when known.

    `geometry` is set for medical volumes: where the (Z, H, W) voxels sit, so a mask can be written onto the
    source grid; None for TIFFs and Kaggle folders, whose slices are already in the engine's layout.

    `fully_labelled` says the mask labels every slice, as a mask read from files does: a slice without tumour is known
    to hold none. Training's `skip_unlabelled` (meant for labels painted on a few slices) keeps such a scan's empty
    slices, which are what teaches the model where there is no tumour.
    """

    name: str
    image: np.ndarray
    mask: np.ndarray | None = None
    rgb: bool = True
    geometry: Geometry | None = None
    files: tuple[Path, ...] = ()  # what image and mask were read from (files, folders): write_mask spares them
    fully_labelled: bool = False

    @property
    def spacing(self) -> tuple[float, float, float] | None:
        """Voxel size in mm per (Z, H, W) axis, when known (napari's layer `scale`)."""
        return self.geometry.spacing if self.geometry is not None else None

    @property
    def voxel_volume(self) -> float | None:
        """One voxel's volume in mm³, when known (`Geometry.voxel_volume`)."""
        return self.geometry.voxel_volume if self.geometry is not None else None


def as_path(source: str | Path, what: str = "a scan") -> Path:
    """`source` (a str or any path-like object) as a Path; anything else (None, a number, bytes) is an InputError
    that says `what` the path was for."""
    try:
        return Path(source)
    except TypeError:
        raise InputError(f"{what} is given as a path (str or pathlib.Path), not {type(source).__name__} "
                         f"{source!r:.60}") from None


def existing_path(source: str | Path) -> Path:
    """`source` as a Path that exists; a missing path or a symbolic link that loops is refused by name. `.` and `..`
    come back resolved: a scan is named after its folder (`<name>_mask.*`, the summary's row, a training split), and
    they name none (`--input .` in a case folder wrote `_mask.nii.gz`)."""
    path = as_path(source)
    try:
        path.stat()
    except FileNotFoundError:  # a link to nothing says where it leads (a drive or share not mounted)
        raise InputError(not_a_file(path) if path.is_symlink() else f"path not found: {path}") from None
    except OSError as error:  # ELOOP: a link that points back to itself; EACCES; ...
        raise InputError(f"cannot open {path}: {error.strerror or error}") from None
    return path.resolve() if path.name in ("", "..") else path


def read_tiff(path: str | Path) -> np.ndarray:
    """Read a one-series TIFF, its header checked before its pixels are read; every failure is an InputError that
    names the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(not_a_file(path))
    try:
        with _tifffile_errors() as errors, tifffile.TiffFile(path) as tiff:
            series = tiff.series
            if len(series) > 1:
                shapes = ", ".join(str(s.shape) for s in series[:4])
                raise InputError(f"{path} holds {len(series)} image series ({shapes}); save each as its own TIFF")
            if not series or 0 in series[0].shape or len(series[0].shape) < 2:
                raise InputError(f"{path} holds no image; it is empty or corrupt")
            check_pixel_type(str(path), series[0].dtype)
            check_claimed_size(str(path), series[0].shape, series[0].dtype)
            data = series[0].asarray()
    except InputError:
        raise
    except Exception as error:  # tifffile raises many types for broken files
        raise InputError(f"cannot read {path} as a TIFF image ({describe(error)})") from None
    if errors:
        raise InputError(f"{path} is truncated or corrupt ({errors[0]})")
    return kept_pixels(data)


class _TifffileLog(logging.Filter):
    """tifffile logs, instead of raising, that a stack is cut short: it then reads its first pages alone (a 24-slice
    scan as one slice) with only 'invalid page offset' or 'failed to reshape' logged. While a thread reads a TIFF,
    this collects those messages for it and keeps all of tifffile's messages off stderr (a CLI error is one line);
    other threads' logging is untouched."""

    BROKEN = re.compile(r"invalid page offset|failed to reshape|truncat|corrupt", re.IGNORECASE)

    def __init__(self) -> None:
        super().__init__()
        self.reading = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        errors = getattr(self.reading, "errors", None)
        if errors is None:
            return True
        if record.levelno >= logging.ERROR and self.BROKEN.search(record.getMessage()):
            errors.append(record.getMessage())
        return False


_TIFFFILE_LOG = _TifffileLog()
logging.getLogger("tifffile").addFilter(_TIFFFILE_LOG)


@contextlib.contextmanager
def _tifffile_errors() -> Iterator[list[str]]:
    """The messages of a cut-short TIFF that tifffile logs while this thread reads one (see _TifffileLog)."""
    _TIFFFILE_LOG.reading.errors = errors = []
    try:
        yield errors
    finally:
        _TIFFFILE_LOG.reading.errors = None


SliceKey = tuple[str, int]  # (patient stem, slice number): what pairs a slice with its mask


def _slice_files(folder: Path) -> tuple[dict[SliceKey, list[Path]], dict[SliceKey, list[Path]]]:
    """The folder's slice images and slice masks, each listed under (stem, number) as its name says."""
    images: dict[SliceKey, list[Path]] = {}
    masks: dict[SliceKey, list[Path]] = {}
    for file in sorted(folder.iterdir()):
        match = _SLICE.match(file.name)
        if match and file_entry(file):  # a link to nothing too, refused by name when read
            (masks if match["mask"] else images).setdefault((match["stem"], int(match["index"])), []).append(file)
    return images, masks


def is_patient_folder(folder: str | Path) -> bool:
    folder = Path(folder)
    return folder.is_dir() and bool(_slice_files(folder)[0])


def _paired_slices(folder: Path, require_masks: bool) -> list[tuple[Path, list[Path]]]:
    """Each slice in number order with its own mask files (`<stem>_<n>_mask.tif` beside `<stem>_<n>.tif`: none, one,
    or several, which `_read_masks` refuses).

    Pairing is by the whole name, never by number alone, so one patient's mask never lands on another's slice: a
    folder of two patients' slices, two slice files of one number (`P_1.tif`, `P_01.tif`, `P_1.tiff`) and, when masks
    are needed, a mask without its slice (ground truth that would silently be left out) are refused by name."""
    found, masks = _slice_files(folder)
    if not found:
        raise InputError(f"{folder} holds no slice images named like <patient>_<n>.tif")
    stems = sorted({stem for stem, _ in found})
    if len(stems) > 1:
        raise InputError(f"{folder} holds the slices of {len(stems)} patients ({few_names(stems)}); give each "
                         "patient its own folder")
    images = {key: _one_file(folder, files) for key, files in found.items()}
    _check_no_missing_slices(folder, stems[0], sorted(number for _, number in images))
    if require_masks and (alone := sorted(files[0].name for key, files in masks.items() if key not in images)):
        raise InputError(f"{folder}: no slice image beside the mask{'s' if len(alone) > 1 else ''} "
                         f"{few_names(alone)}; add the slice or remove the mask")
    return [(images[key], masks.get(key, [])) for key in sorted(images, key=lambda key: key[1])]


def _one_file(folder: Path, files: list[Path]) -> Path:
    """The one file of a slice, or of its mask: two of one name and number (`P_1.tif`, `P_01.tif`, `P_1.tiff`) are
    refused by name, as either could be the one meant."""
    if len(files) > 1:
        raise InputError(f"{folder}: {few_names([f.name for f in files])} are files of one slice (one name and "
                         "number); keep one")
    return files[0]


def _check_no_missing_slices(folder: Path, stem: str, numbers: list[int]) -> None:
    """Refuse slice numbers with a gap (`P_11`, `P_13` without `P_12`), naming the missing slices: stacked, the slices
    either side of it become neighbours, yet the model's neighbouring-slice input, the 3D tumour pieces and a mask
    written back take stacked slices as adjacent, and a missing number is most often a lost file. Refused, not
    repaired, as a DICOM series with a gap is (dicom.py): only the user knows whether a file is lost or the slices are
    adjacent. Numbers need not start at 1: a patient cropped to some slices has no gap."""
    gaps = [(before, after) for before, after in zip(numbers, numbers[1:]) if after - before > 1]
    if gaps:
        missing = sum(after - before - 1 for before, after in gaps)
        names = [f"{stem}_{before + 1}" + (f" to {stem}_{after - 1}" if after - before > 2 else "")
                 for before, after in gaps]
        raise InputError(f"{folder}: {missing} slice{'s' if missing > 1 else ''} missing ({few_names(names)}), so "
                         "the slices either side of a gap would be stacked as neighbours; restore the missing files, "
                         "or, if the slices are adjacent, number them without gaps")


def _read_slices(folder: Path, files: list[Path]) -> np.ndarray:
    """The slice images stacked; a slice of another shape than the first is refused by name."""
    slices = [read_tiff(file) for file in files]
    for file, data in zip(files, slices):
        if data.shape != slices[0].shape:
            raise InputError(f"{folder}: slices have different shapes ({files[0].name} {slices[0].shape}, "
                             f"{file.name} {data.shape}); every slice of a patient must have one shape")
    return np.stack(slices)


def _read_masks(folder: Path, files: list[list[Path]], shape: tuple[int, int]) -> np.ndarray:
    """The slice masks (each slice's mask files, see `_paired_slices`) as bool (Z, H, W); a mask saved in colour (a
    channel axis of 3) counts any channel; a mask of another shape than its slice is refused by name. A mask with 2 or
    4 channels has transparency (alpha) last: counted as a channel, opaque over the whole slice as paint programs and
    image converters save it, it made every pixel tumour. One alpha over the whole slice says nothing, so its colour is
    the mask; an alpha that varies (or is transparent everywhere) may hold the painted tumour itself, so that mask is
    refused."""
    masks = []
    for file in (_one_file(folder, slice_files) for slice_files in files):
        mask = read_tiff(file)
        if mask.ndim == 3 and mask.shape[:2] == shape and mask.shape[2] in (2, 4):
            alpha = mask[..., -1]
            if not alpha.min() == alpha.max() > 0:
                raise InputError(f"{folder}: mask {file.name} has {mask.shape[2]} channels, the last of them "
                                 "transparency (alpha) that is not opaque all over, so it may hold the tumour; save "
                                 "the mask as one grey channel (0 background, 255 tumour)")
            mask = mask[..., :-1]
        mask = tumour_of_labels(f"{folder}: mask {file.name}", mask)
        mask = mask.any(axis=-1) if mask.ndim == 3 else mask
        if mask.shape != shape:
            raise InputError(f"{folder}: mask {file.name} has shape {mask.shape}, which does not match its slice's "
                             f"{shape}")
        masks.append(mask)
    return np.stack(masks)


def every_slice_masked(folder: Path) -> bool:
    """Whether each slice of the patient `folder` has its mask file beside it, told by the names alone."""
    return all(masks for _, masks in _paired_slices(folder, require_masks=True))


def load_patient(folder: str | Path, require_masks: bool = False) -> Scan:
    """A Kaggle patient folder as image (Z, H, W, 3) and, if every slice has one, mask (Z, H, W) bool. Masks that
    cannot be used are refused when `require_masks`, else left out with a warning (see `optional_mask`)."""
    require_masks = check_bool("require_masks", require_masks)  # bool("no") is True
    folder = as_path(folder)
    if not folder.is_dir():
        raise InputError(f"folder not found: {folder}")
    slices = _paired_slices(folder, require_masks)
    image = _read_slices(folder, [image for image, _ in slices])
    masks = [files for _, files in slices]
    mask = None
    if all(masks):
        mask = optional_mask(folder.name, lambda: _read_masks(folder, masks, image.shape[1:3]), require_masks)
    elif require_masks:
        raise InputError(f"{folder}: {masks.count([])} of {len(slices)} slices have no _mask.tif")
    return Scan(name=folder.name, image=image, mask=mask, rgb=image.ndim == 4, files=(folder,),  # its slices
                fully_labelled=mask is not None)


def patient_folders(root: str | Path) -> list[Path]:
    """The patient folders in `root`, or `[root]` when root is itself a patient folder."""
    root = existing_path(root)
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
    require_masks = check_bool("require_masks", require_masks)
    return [load_scan(source, require_mask=require_masks) for source in find_scans(root, require_masks)]


def check_masks(sources: Sequence[ScanSource], purpose: str = "to score against") -> None:
    """Refuse, naming every one of them, the scans of `sources` that have no manual mask (see ScanFormat.has_mask),
    before any is read: evaluation and calibration score every scan against its mask (`purpose` says so), training
    learns from it, and `load_scan(require_mask=True)` refused the first without one only after the model had
    segmented (or the training loaded) those before it, naming that one alone. What the names cannot tell (a mask
    that is there but cannot be used) is refused when the scan is read."""
    missing = [scan_name(source) for source in sources if not _has_mask(source)]
    if not missing:
        return
    one = len(missing) == 1
    which = missing[0] if len(sources) == 1 else f"{len(missing)} of the {len(sources)} patients ({few_names(missing)})"
    them = "it" if one else "them"
    raise InputError(f"{which} {'has' if one else 'have'} no manual mask {purpose}: a Kaggle patient needs a "
                     "<patient>_<n>_mask.tif beside every slice, a case a labels file (*_seg or *_mask beside its "
                     f"scans, or labelsTr/<case> for nnU-Net); add {them}, or leave {them} out")


def _has_mask(source: ScanSource) -> bool:
    """`ScanFormat.has_mask` of a path, as `load_scan` reads it; a listed Case's own labels."""
    if not isinstance(source, (str, os.PathLike)):
        return source.labels is not None
    path = existing_path(source)
    found = format_of(path)
    if found is None:
        raise not_a_scan(path, require_mask=True)
    return found.has_mask(path)


@listing()
def load_scan(source: ScanSource, require_mask: bool = False) -> Scan:
    """Any supported scan (see formats.FORMATS): a Kaggle patient folder, a TIFF stack (2D, 2D RGB, 3D, 3D RGB), a
    NIfTI / NRRD / MHA file, a case folder (BraTS, nnU-Net, sequence-named files), a DICOM series or study folder,
    or a listed Case.

    A volume file brings the case it belongs to (its sibling sequences and labels). `require_mask` refuses a scan
    without ground truth, or whose manual mask cannot be used; without it, such a mask is left out with a warning
    (`scan_checks.optional_mask`). It is one listing (listing.py): a DICOM folder is asked which format claims it
    and then read as a case, and GDCM read every file's header for each question.
    """
    require_mask = check_bool("require_mask", require_mask)  # bool("no") is True
    if not isinstance(source, (str, os.PathLike)):
        from .cases import Case

        if isinstance(source, Case):
            return case_scan(source, require_mask)
    path = existing_path(source)  # what is neither a case nor a path is refused there (as_path)
    found = format_of(path)
    if found is None:
        raise not_a_scan(path, require_mask)
    if path.is_dir() and not found.whole_folder:  # a folder may hold several cases, or stray files beside them
        sources = find_scans(path)
        if len(sources) > 1:
            raise InputError(f"{path} holds {len(sources)} scans ({_names(sources)}); give one of them, or give the "
                             "folder as a folder of scans")
        return case_scan(sources[0], require_mask)
    return found.read(path, require_mask)


@listing()
def is_one_scan(path: Path) -> bool:
    """Whether `path` is itself one scan (a file, a Kaggle patient, a case folder, a DICOM series or study; see
    ScanFormat.one_scan), not a folder of scans: a folder of scans gets a folder of masks even when it holds only one.
    An nnU-Net dataset of one case is such a folder; a BraTS case folder is a scan, as a Kaggle patient is."""
    found = format_of(path)
    return path.is_file() or (found is not None and found.one_scan(path))


@listing()
def find_scans(root: str | Path, require_masks: bool = False, output: str | Path | None = None,
               stop: Callable[[], bool] | None = None) -> list[ScanSource]:
    """Every scan in `root`: root itself when it is one scan, else the scans in it or in its direct subfolders.

    Roots: a Kaggle root, a folder of BraTS / plain case folders, an nnU-Net dataset (its imagesTr) or images
    folder, a folder of NIfTI files, a folder of DICOM folders. Items are Paths (Kaggle folders, files) or Cases;
    load_scan reads each, and formats.scan_name names its scan (a file's `.name` does not: `scan.tif` is
    `scan`). A root holding scans both loose and in subfolders is refused, so a stray file never hides the cases
    beside it; so is a folder of scans with a TIFF stack beside them, which would be left out unsaid.
    `require_masks` says the caller will read ground truth (training, evaluation), for the advice given when `root`
    holds no scans. `output`, a cohort's output folder that may lie inside `root`: the masks an earlier run left in it
    are no scans (outputs.outside), neither listed nor counted as a subfolder's scans beside loose ones, so a root of
    loose files can be segmented again into ROOT/masks. `stop` is asked before each subfolder is looked into (raising
    `stopping.Stopped`): a DICOM study's every file header is read, about a second for 3 series of 155 slices.
    """
    root = _listable(root, require_masks)
    found = format_of(root)
    if root.is_file() or (found is not None and found.whole_folder):  # no subfolders to look into
        return found.sources(root) if found is not None else [root]
    loose = found.sources(root) if found is not None else []
    used = {source.path for case in loose if not isinstance(case, Path) for _, source in case.sequences}
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p not in used)
    inside = [scan for folder in unless_stopped(folders, stop)
              if (kind := format_of(folder)) is not None for scan in kind.sources(folder)]
    if not (loose or inside):
        raise not_a_scan(root, require_masks)
    if output is not None:
        from .outputs import outside  # it reads this module's Scan types

        loose, inside = outside(loose, output), outside(inside, output)
    if ours := _masks_beside_cases(root, inside):
        loose = [s for s in loose if isinstance(s, Path) or s.sequences or not s.labels or s.labels.path not in ours]
    if loose and inside:
        raise InputError(f"{root} holds scans both loose ({_names(loose)}) and in subfolders ({_names(inside)}); "
                         "move the loose files into a folder of their own, or give one of the two")
    stacks = [] if is_one_scan(root) else sorted(p.name for p in root.iterdir() if TIFF.claims(p) and p not in ours)
    if stacks:  # a folder of scans left them out without a word; a case folder's stray TIFF is no scan of it
        raise InputError(f"{root} holds TIFF stacks ({few_names(stacks, shown=2)}) beside {_names(loose or inside)}; "
                         "a TIFF stack is read only when given by itself: give it alone, or move it out")
    return loose or inside


def _listable(root: str | Path, require_masks: bool) -> Path:
    """`root` as a path that exists and is a file or a folder: a named pipe, socket or device holds nothing to list
    (listed as a folder, it was refused as "Not a directory")."""
    path = existing_path(root)
    if not (path.is_file() or path.is_dir()):
        raise not_a_scan(path, require_masks)
    return path


def _masks_beside_cases(root: Path, cases: list[ScanSource]) -> list[Path]:
    """The files of `root` named as the mask of one of `cases` (its subfolders' scans): `P1_mask.nii.gz` or
    `P1_mask.tif` beside `P1/`, where `predict --input root/P1 --output root/P1_mask.nii.gz` puts it. Such a file is
    neither a scan nor a case (alone it is labels without an image), so the folder is read without it; the user is
    told, once per listing, so a file left out is never left out unsaid. Only that name is known as ours: any other
    file beside the cases is still refused by `find_scans`, naming it (it may be a scan the user means to use)."""
    names = {f"{scan_name(case)}{MASK_WORD}" for case in cases}
    ours = sorted(p for p in root.iterdir() if p.is_file() and _named_as_mask_of(p, names))
    if ours:
        one = len(ours) == 1
        warnings.warn(InputWarning(
            f"{root}: left out {few_names([p.name for p in ours])}, {'a mask' if one else 'masks'} named after the "
            f"case{'' if one else 's'} beside {'it' if one else 'them'} (<case>{MASK_WORD}, as lgg-unet predict names "
            f"one), not {'a scan' if one else 'scans'}; a case's manual mask goes inside its folder. Move "
            f"{'it' if one else 'them'} out of {root.name} to silence this"))
    return ours


def _named_as_mask_of(path: Path, stems: set[str]) -> bool:
    """Whether `path` is one of `stems` (`<scan>_mask`) with a suffix a mask can be written as."""
    found = file_format(path)
    suffix = found.suffix_of(path) if found is not None else None
    return suffix in (found.mask_suffixes if found else ()) and path.name[:-len(suffix)] in stems


def _names(sources: list[ScanSource]) -> str:
    return few_names([source.name for source in sources])


def write_mask_tiff(path: str | Path, mask: np.ndarray) -> None:
    """Save a mask as uint8 0/255 (the dataset's convention), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp, (np.asarray(mask) > 0).astype(np.uint8) * 255, photometric="minisblack", compression="zlib"
        )


def mask_file_name(scan: Scan) -> str:
    """`<scan>_mask.nii.gz` for medical volumes (`.nrrd` / `.mha` for NRRD / MHA ones: `default_mask_suffix`), their
    geometry kept, `<scan>_mask.tif` for TIFF inputs."""
    return f"{scan.name}{MASK_WORD}{default_mask_suffix(scan.geometry)}"


def source_mask_name(source: ScanSource) -> str:
    """`mask_file_name` of `source`'s scan, known before it is read (`source_mask_suffix`): a cohort run checks the
    very files it will replace before it segments any case, and reads no scan twice for it."""
    return f"{scan_name(source)}{MASK_WORD}{source_mask_suffix(source)}"


def check_mask_target(path: str | Path, scan: Scan) -> None:
    """Refuse what `write_mask` refuses of `path` as `scan`'s mask, all known before the mask is: a file (or a DICOM
    folder) that fed the scan or its mask (`scan.files`; `geometry.sources` for a scan rebuilt from a layer), a name
    of no mask format, a format that cannot place the mask where tools place the scan (ScanFormat.check_mask). A
    caller that checks this once the scan is read, before the model runs, spends no segmentation on a refusal."""
    from .outputs import landing  # it reads this module's Scan types

    path = Path(path)
    fed = [*scan.files, *(Path(source) for _, source in (scan.geometry.sources if scan.geometry else ()))]
    hit = landing(path, [source.resolve() for source in fed])
    if hit is not None:  # the file itself, or inside a folder the scan was read from
        what = f"lies in {hit}, a folder" if hit.is_dir() else "is a file"
        raise InputError(f"{path} {what} of the scan {scan.name} itself; write its mask elsewhere")
    check_mask_name(path)
    file_format(path).check_mask(path, scan.geometry)


def write_mask(path: str | Path, mask: np.ndarray, scan: Scan) -> None:
    """Save `mask` (the scan's (Z, H, W)) in the format `path` names: a volume format on the scan's source grid (a
    scan without geometry gets the engine's axes and unit spacing), `.tif` / `.tiff` 0/255, 2D for a 2D image (as
    the Kaggle dataset's slice masks are, so it can join a patient folder). Refused as `check_mask_target` says:
    callers check more (outputs.check_output), but a script calling this alone must not replace the user's FLAIR, or
    the expert's labels, with its mask."""
    path = Path(path)
    check_mask_target(path, scan)
    kind = file_format(path)
    if not kind.is_volume and np.ndim(scan.image) == (3 if scan.rgb else 2):
        mask = np.asarray(mask).reshape(np.shape(mask)[-2:])
    kind.write_mask(path, mask, scan.geometry)
