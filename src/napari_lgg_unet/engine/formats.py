"""The scan formats we read, and the mask formats we write: one class per format, listed once in FORMATS.

Each format says which paths it claims (by suffix for files, by content for folders), reads a claimed path into a
`Scan`, and, for file formats, writes a mask. The napari reader and writer, `load_scan`, `find_scans` and the CLI
ask this registry, so adding a format is one class here plus one entry in FORMATS (and its patterns in napari.yaml).
FORMATS is asked in order: the first format that claims a path reads it.

Readers are imported when first used, so TIFF-only work never loads nibabel or SimpleITK.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from .errors import InputError, few_names

if TYPE_CHECKING:
    from .cases import Case
    from .io import Scan
    from .volumes import Geometry, Volume

ScanSource = Union[str, Path, "Case"]  # what load_scan reads; find_scans lists these
# where training and evaluation find ground truth, for the refusals of scans that carry none
WITH_MASKS = ("to train or evaluate, use Kaggle patient folders (<patient>_<n>.tif slices with their _mask.tif) or "
              "volume cases with a labels file (docs/your-own-scans.md)")


class ScanFormat:
    """One format. File formats list `suffixes` (lower case, compared with a file name's end); folder formats
    override `claims`. `mask_suffixes` are the suffixes a mask can be written as (none: masks cannot be)."""

    description = ""  # what it reads, in the user's words; errors list these
    suffixes: tuple[str, ...] = ()
    mask_suffixes: tuple[str, ...] = ()
    is_volume = False  # a medical volume file: one sequence of a case, with geometry
    whole_folder = False  # a folder this format claims is all scan: find_scans does not look into its subfolders

    def one_scan(self, path: Path) -> bool:
        """Whether the claimed `path` is itself one scan, not a folder of scans (predict writes one mask file for the
        one, a folder of masks for the other): a claimed file is. Not `whole_folder`, which says where find_scans
        looks: an nnU-Net dataset is read whole yet holds cases, and a case folder is one scan yet not read whole."""
        return bool(self.suffixes)

    def suffix_of(self, path: str | Path) -> str | None:
        name = Path(path).name.lower()
        return next((s for s in sorted(self.suffixes, key=len, reverse=True) if name.endswith(s)), None)

    def claims(self, path: Path) -> bool:
        return bool(self.suffixes) and self.suffix_of(path) is not None and path.is_file()

    def mask_suffix_of(self, path: str | Path) -> str | None:
        """The suffix a mask of the scan file `path` (a name this format claims) takes by default: its own format's,
        None where this format writes no mask."""
        return self.mask_suffixes[0] if self.mask_suffixes else None

    def read(self, path: Path, require_mask: bool = False) -> Scan:
        raise NotImplementedError

    def scan_name(self, path: Path) -> str:
        """The name `read` gives the scan of `path`: a folder's (a Kaggle patient's) is the folder's."""
        return path.name

    def sources(self, path: Path) -> list[ScanSource]:
        """The scans a claimed path holds, each for `load_scan` (a folder format may hold several cases)."""
        return [path]

    def case(self, path: Path) -> Case | None:
        """The one multi-sequence case a claimed path is, for readers that show its sequences apart; None when the
        format holds no such case (a Kaggle patient, a TIFF, a single volume)."""
        return None

    def has_mask(self, path: Path) -> bool:
        """Whether the scan of the claimed `path` comes with a manual mask, told by file names alone (no voxel is
        read; a mask that is there may still be refused when read): its case's labels file. A TIFF stack has none."""
        case = self.case(path)
        return case is not None and case.labels is not None

    def check_mask(self, path: Path, geometry: Geometry | None) -> None:
        """Refuse a mask as `path` of a scan of `geometry` (None: a TIFF's or a Kaggle patient's) that `write_mask`
        would refuse for that geometry, not for its name (check_mask_name) or its voxels: known once the scan is
        read, so callers check it before the model runs. Most formats refuse none."""

    def write_mask(self, path: Path, mask: np.ndarray, geometry: Geometry | None) -> None:
        """Save an engine-layout mask (0 background, any label above 0 tumour) as `path`, atomically. A mask holding
        what reading one refuses (NaN, fractions: a probability map; values below 0) is refused as reading refuses
        it (`scan_checks.check_label_values`), not written as `> 0` reads it."""
        from .scan_checks import check_label_values

        mask = np.asarray(mask)
        check_label_values(f"the mask to save as {path.name}", mask, "give 0 for background and 1 for tumour",
                           "threshold it first (tumour where the probability is 0.5 or more, say)")
        self.save_mask(path, mask, geometry)

    def save_mask(self, path: Path, mask: np.ndarray, geometry: Geometry | None) -> None:
        """`write_mask` once the mask's values are checked: each format that writes masks says how."""
        raise cannot_write(path)


class TiffStack(ScanFormat):
    description = "TIFF stacks (.tif, .tiff)"
    suffixes = mask_suffixes = (".tif", ".tiff")

    def read(self, path: Path, require_mask: bool = False) -> Scan:
        from .io import Scan, read_tiff
        from .preprocess import resolve_rgb

        if require_mask:
            raise InputError(f"{path}: a TIFF stack carries no mask; {WITH_MASKS}")
        image = read_tiff(path)
        return Scan(name=self.scan_name(path), image=image, mask=None, rgb=resolve_rgb(image, None), files=(path,))

    def scan_name(self, path: Path) -> str:
        return path.stem

    def save_mask(self, path: Path, mask: np.ndarray, geometry: Geometry | None) -> None:
        from .io import write_mask_tiff

        write_mask_tiff(path, mask)


class VolumeFile(ScanFormat):
    """A medical volume file: read with the case it belongs to (its sibling sequences and labels)."""

    is_volume = True

    def read(self, path: Path, require_mask: bool = False) -> Scan:
        from .cases import case_of_file

        return case_scan(case_of_file(path), require_mask)

    def scan_name(self, path: Path) -> str:
        """Its case's: `P1` for `P1_flair.nii.gz`."""
        from .cases import case_of_file

        return case_of_file(path).name

    def has_mask(self, path: Path) -> bool:
        from .cases import case_of_file

        return case_of_file(path).labels is not None

    def read_volume(self, path: Path) -> Volume:
        raise NotImplementedError

    def save_mask(self, path: Path, mask: np.ndarray, geometry: Geometry | None) -> None:
        """On the scan's source grid (a scan without geometry: the engine's axes, unit spacing)."""
        from .volumes import engine_geometry, from_engine

        check_mask_name(path)
        if mask.ndim not in (2, 3):
            raise InputError(f"a {mask.ndim}D mask cannot be saved as one mask volume; save it as TIFF")
        volume = (mask if mask.ndim == 3 else mask[None]) > 0
        geometry = geometry or engine_geometry(volume.shape)
        self.save(path, from_engine(volume.astype(np.uint8), geometry), geometry)

    def save(self, path: Path, data: np.ndarray, geometry: Geometry) -> None:
        raise NotImplementedError


class NiftiVolume(VolumeFile):
    description = "NIfTI volumes (.nii, .nii.gz)"
    suffixes = mask_suffixes = (".nii.gz", ".nii")

    def read_volume(self, path: Path) -> Volume:
        from .volumes import read_nifti

        return read_nifti(path)

    def save(self, path: Path, data: np.ndarray, geometry: Geometry) -> None:
        from .volumes import save_nifti

        save_nifti(path, data, geometry, self.suffix_of(path))


class ItkVolume(VolumeFile):
    description = "NRRD / MetaImage volumes (.nrrd, .nhdr, .mha, .mhd)"
    suffixes = (".nrrd", ".nhdr", ".mha", ".mhd")
    mask_suffixes = (".nrrd", ".mha")  # single-file formats, so a mask is written atomically

    def read_volume(self, path: Path) -> Volume:
        from .volumes import read_itk

        return read_itk(path, str(path))

    def mask_suffix_of(self, path: str | Path) -> str | None:
        """The single-file form of the scan's own format: `.nrrd` for an NRRD (`.nhdr` too), `.mha` for a MetaImage."""
        return ".mha" if self.suffix_of(path) in (".mha", ".mhd") else ".nrrd"

    def check_mask(self, path: Path, geometry: Geometry | None) -> None:
        """One placement only: refused for a NIfTI scan that ITK-based tools place elsewhere than nibabel (a scan
        without geometry gets the engine's, which every tool places alike)."""
        if geometry is not None:
            from .volumes import check_itk_placement

            check_itk_placement(path, geometry, self.suffix_of(path))

    def save(self, path: Path, data: np.ndarray, geometry: Geometry) -> None:
        from .volumes import save_itk

        save_itk(path, data, geometry, self.suffix_of(path))


class KaggleFolder(ScanFormat):
    description = "patient folders of Kaggle LGG <patient>_<n>.tif slices"
    whole_folder = True

    def claims(self, path: Path) -> bool:
        from .io import is_patient_folder

        return is_patient_folder(path)

    def one_scan(self, path: Path) -> bool:
        return True

    def read(self, path: Path, require_mask: bool = False) -> Scan:
        from .io import load_patient

        return load_patient(path, require_masks=require_mask)

    def has_mask(self, path: Path) -> bool:
        """A `_mask.tif` beside every slice, as `load_patient` needs for a mask."""
        from .io import every_slice_masked

        return every_slice_masked(path)


class CaseFolder(ScanFormat):
    description = "case folders (BraTS, sequence-named volumes or DICOM folders)"

    def claims(self, path: Path) -> bool:
        from .cases import SEQUENCE_FOLDERS
        from .sequences import split_sequence

        return path.is_dir() and any(volume_entry(p) or (p.is_dir() and split_sequence(p.name)[1] in SEQUENCE_FOLDERS)
                                     for p in path.iterdir())

    def one_scan(self, path: Path) -> bool:
        """A folder that is its one case's own (`P1/P1_flair.nii.gz`, `P1/flair.nii.gz`), as outputs.input_paths
        counts it (as given or through a link); a folder of loose files of other names (`scans/vol_flair.nii.gz`)
        holds scans, even one."""
        cases = self.sources(path)
        return len(cases) == 1 and cases[0].name in (path.name, path.resolve().name)

    def read(self, path: Path, require_mask: bool = False) -> Scan:
        return case_scan(self.case(path), require_mask)

    def case(self, path: Path) -> Case:
        from .cases import case_in_folder

        return case_in_folder(path)

    def sources(self, path: Path) -> list[ScanSource]:
        from .cases import cases_in_folder

        return list(cases_in_folder(path))


class NnunetFolder(CaseFolder):
    """A case folder whose channels `dataset.json` names; asked before CaseFolder, as its images are volumes too."""

    description = "nnU-Net / Decathlon datasets (imagesTr with dataset.json)"
    whole_folder = True

    def claims(self, path: Path) -> bool:
        from .cases import nnunet_cases

        return path.is_dir() and nnunet_cases(path) is not None

    def one_scan(self, path: Path) -> bool:
        return False  # a dataset, even of one case

    def sources(self, path: Path) -> list[ScanSource]:
        from .cases import nnunet_cases

        return list(nnunet_cases(path) or [])


class DicomFolder(ScanFormat):
    description = "DICOM image series"

    def claims(self, path: Path) -> bool:
        from .dicom import list_series

        return bool(list_series(path))

    def one_scan(self, path: Path) -> bool:
        return True  # a series, or a study whose series are the case's sequences

    def read(self, path: Path, require_mask: bool = False) -> Scan:
        return case_scan(self.case(path), require_mask)

    def case(self, path: Path) -> Case:
        from .cases import dicom_case

        return dicom_case(path)

    def sources(self, path: Path) -> list[ScanSource]:
        return [self.case(path)]


TIFF = TiffStack()
NIFTI = NiftiVolume()
FORMATS: tuple[ScanFormat, ...] = (
    TIFF, NIFTI, ItkVolume(), KaggleFolder(), NnunetFolder(), CaseFolder(), DicomFolder(),
)


def format_of(path: Path) -> ScanFormat | None:
    """The first format that claims the existing file or folder `path`, or None."""
    return next((f for f in FORMATS if f.claims(path)), None)


def scan_name(source: ScanSource) -> str:
    """The name `load_scan` gives `source`'s scan, known before it is read: its mask (`<name>_mask.*`) and summary row
    are named after it. A listed file's is not its file name (`scan` for `scan.tif`)."""
    if not isinstance(source, (str, Path)):
        return source.name
    found = format_of(Path(source))
    return found.scan_name(Path(source)) if found is not None else Path(source).name


def source_mask_suffix(source: ScanSource) -> str:
    """`default_mask_suffix` of `source`'s scan, known before its voxels are read (its case's files are listed, a
    DICOM study's headers read): a cohort run checks the very files it will replace before it segments any case."""
    if isinstance(source, (str, Path)):
        found = format_of(Path(source))
        if found is not None and found.is_volume:
            from .cases import case_of_file

            source = case_of_file(Path(source))
        else:
            source = found.case(Path(source)) if found is not None else None
    if source is None:  # a TIFF stack or a Kaggle patient: no geometry
        return TIFF.mask_suffixes[0]
    from .sequences import FLAIR

    grid = dict(source.sequences).get(FLAIR)
    return _grid_mask_suffix(None if grid is None else str(grid))


def file_format(path: str | Path) -> ScanFormat | None:
    """The file format `path`'s name says (the longest matching suffix wins), whether or not the file exists."""
    named = [(len(suffix), f) for f in FORMATS if (suffix := f.suffix_of(path))]
    return max(named, key=lambda n: n[0])[1] if named else None


def volume_suffix(path: str | Path) -> str | None:
    """The medical volume suffix `path` ends with (".nii.gz" counts as one), or None."""
    found = file_format(path)
    return found.suffix_of(path) if found is not None and found.is_volume else None


def strip_volume_suffix(name: str) -> str:
    suffix = volume_suffix(name)
    return name[: -len(suffix)] if suffix else name


def check_mask_name(path: str | Path, hint: str = "") -> None:
    """Refuse a mask file name of a format that cannot hold a mask written atomically (.mhd, .nhdr: a header and a
    data file), or of no format we write: `mask` or `mask.png` holding TIFF bytes opens nowhere, and a NIfTI scan's
    mask would lose its geometry without a word. Callers check before the model runs, so a wrong name costs no
    segmentation; `hint` ends the message with what else the caller accepts."""
    found = file_format(path)
    if found is None or found.suffix_of(path) not in found.mask_suffixes:
        raise cannot_write(Path(path), hint)


def cannot_write(path: Path, hint: str = "") -> InputError:
    return InputError(
        f"cannot write a mask as {path.name}: use {', '.join(s for f in FORMATS for s in f.mask_suffixes)}{hint}"
    )


def default_mask_suffix(geometry: Geometry | None) -> str:
    """The format a scan's mask takes where its name does not say: TIFF 0/255 for a scan without geometry (the Kaggle
    dataset's masks); for a volume, its grid's file format where that writes masks, else NIfTI (DICOM). The grid's
    file is FLAIR's, or a labels file's opened on its own (`cases.load_labels`: a mask opened in napari, edited and
    saved again). An NRRD or MHA scan's mask is NRRD or MHA: NIfTI-1 holds their 64-bit origin and spacing in 32 bits,
    a few micrometres off, and ITK's filters then refuse the scan and its mask as lying in two physical spaces."""
    if geometry is None:
        return TIFF.mask_suffixes[0]
    from .sequences import FLAIR, LABELS

    sources = dict(geometry.sources)
    return _grid_mask_suffix(sources.get(FLAIR, sources.get(LABELS)))


def _grid_mask_suffix(grid_file: str | None) -> str:
    """The mask format of a scan whose grid (FLAIR) was read from `grid_file` (None: not known): that file's format
    where it is a volume format that writes masks, else NIfTI (a DICOM series)."""
    found = file_format(grid_file) if grid_file else None
    own = found.mask_suffix_of(grid_file) if found is not None and found.is_volume else None
    return own or NIFTI.mask_suffixes[0]


def read_volume(path: Path) -> Volume:
    """One volume file as stored (no sibling sequences)."""
    found = file_format(path)
    if found is None or not found.is_volume:
        raise InputError(
            f"{path}: not a volume file ({', '.join(s for f in FORMATS if f.is_volume for s in f.suffixes)})"
        )
    if not path.is_file():
        raise InputError(not_a_file(path))
    return found.read_volume(path)


def file_entry(path: Path) -> bool:
    """Whether `path` is listed as a file of its folder: an entry that is no folder. A link to nothing (data on a drive
    or share not mounted) counts, so that reading it refuses it by name (`not_a_file`): left out of the listing, a
    case vanished from a folder of cases, its labels from a case, or a slice or mask from a Kaggle patient, without a
    word."""
    return os.path.lexists(path) and not path.is_dir()


def volume_entry(path: Path) -> bool:
    """Whether `path` is listed as a volume file of its folder: named as one, and a `file_entry`."""
    return volume_suffix(path) is not None and file_entry(path)


def not_a_file(path: Path) -> str:
    """Why the file `path`, which is not a regular file, cannot be read."""
    if path.is_symlink() and not path.exists():
        return (f"{path} is a link to {os.readlink(path)}, which does not exist (a drive or share not mounted?); "
                "mount it, or fix or remove the link")
    if path.exists():
        return f"{path} is not a regular file, a named pipe, socket or device; give a file"
    return f"file not found: {path}"


def case_scan(case: Case, require_mask: bool = False) -> Scan:
    """A listed case's sequences, aligned and oriented, as one Scan."""
    from .cases import load_case
    from .io import Scan

    loaded = load_case(case, require_mask)
    read = tuple(source.path for source in (*(s for _, s in case.sequences), case.labels) if source is not None)
    return Scan(case.name, loaded.image, loaded.mask, loaded.rgb, loaded.geometry, read,
                fully_labelled=loaded.mask is not None)


def not_a_scan(path: Path, require_mask: bool = False) -> InputError:
    """The refusal for an existing path no format claims, listing what is read; `require_mask` (training, evaluation)
    changes the advice for loose TIFF stacks, which can be segmented one at a time but carry no masks."""
    if path.is_file():
        if is_dicom_file(path):  # a series is read as its folder, the slices sorted by position
            return InputError(f"{path} is one DICOM file; give the folder that holds its series ({path.parent})")
        suffixes = ", ".join(s for f in FORMATS for s in f.suffixes)
        return InputError(f"{path}: not a scan file ({suffixes})")
    if not path.is_dir():  # a named pipe, socket or device
        return InputError(not_a_file(path))
    if any(p.is_dir() and format_of(p) for p in path.iterdir()):
        return InputError(f"{path} holds no scan of its own; give it as a folder of cases, or one case inside it")
    stacks = sorted(p.name for p in path.iterdir() if TIFF.claims(p))
    if stacks:  # a folder of TIFFs is read only as a Kaggle patient's slices
        advice = (f"carry no masks; {WITH_MASKS}" if require_mask else "are read one file at a time: give one of them "
                  "(a folder of TIFF files is read only as a Kaggle patient's <patient>_<n>.tif slices)")
        return InputError(f"{path} holds TIFF stacks ({few_names(stacks, shown=2)}), which {advice}")
    return InputError(f"{path} holds no scans: no {'; no '.join(f.description for f in FORMATS)}")


def is_dicom_file(path: Path) -> bool:
    """Whether `path` starts as a DICOM file does: a 128-byte preamble, then `DICM`."""
    try:
        with open(path, "rb") as start:
            return start.read(132)[128:] == b"DICM"
    except OSError:
        return False
