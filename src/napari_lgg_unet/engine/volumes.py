"""Medical volumes (NIfTI, NRRD, MHA, DICOM series) in the engine's axial layout, and masks written back onto their
grid.

The engine's layout is the LGG training slices': an array (Z, H, W) whose slices run inferior -> superior, whose rows
run anterior -> posterior (anterior at the top of a slice) and whose columns run from the patient's right to left
(the radiological view). In nibabel's axis codes that is ("S", "P", "L"). Volumes are brought there by axis
permutations and flips only, never resampled, so a mask maps back voxel for voxel; an oblique scan goes to its
nearest axes. Geometry is kept as nibabel's affine (voxel index -> RAS+ millimetres); ITK's LPS origin, spacing and
direction are converted to and from it.
"""

from __future__ import annotations

import gzip
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

from .atomic import atomic_path
from .errors import InputError, describe
from .scan_checks import check_affine, check_claimed_size, check_gzip_end, check_pixel_type, kept_pixels
from .units import MM_PER_LENGTH, voxel_volume


class _SimpleITK:
    """SimpleITK, imported on first use. Only DICOM, NRRD and MHA need it, and its 50 MB wheel does not fit the
    working tree a lent GPU machine receives (64 MiB), so training and TIFF / NIfTI work run without it there."""

    def __getattr__(self, name: str) -> object:
        import SimpleITK

        return getattr(SimpleITK, name)


sitk = _SimpleITK()

ENGINE_AXCODES = ("S", "P", "L")
AXIS_LABELS = ("inferior-superior", "anterior-posterior", "right-left")
GZIP_MAGIC = b"\x1f\x8b"  # the first two bytes of every gzip file
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])  # ITK's and DICOM's LPS+ millimetres to nibabel's RAS+
# A NIfTI's spatial unit (xyzt_units) in mm, as ITK applies it; nibabel ignores it, and an unknown unit is mm to both.
MM_PER_UNIT = {"mm": 1.0, "unknown": 1.0, "meter": MM_PER_LENGTH["meter"], "micron": MM_PER_LENGTH["micron"]}
UNORIENTED = "has no orientation (its qform_code and sform_code are 0)"  # a NIfTI header without, in every message


@dataclass(frozen=True)
class Geometry:
    """Where a volume's voxels sit: what a mask needs to go back onto the source grid exactly.

    `shape` is the source voxel grid as stored (nibabel index order), `affine` maps its voxel indices to RAS+
    coordinates in `units` (mm but for a few NIfTI files; nibabel's choice: the sform, else the qform, else pixdim).
    A NIfTI source's `qform` and `sform` are kept as stored (None: the same as `affine`), because ITK-based viewers
    (ITK-SNAP, 3D Slicer) may place a NIfTI by its qform, or by pixdim alone when no code is set: a mask whose header
    says less than its scan's would land elsewhere in them. The sform's rows are the scan's even where its code is 0
    and no tool reads them (finite ones: `_stored`), so the mask's header is its scan's, not one whose unused rows hold
    the qform. The codes, both transforms and the spatial `units` (a NIfTI's xyzt_units, a key of MM_PER_UNIT: ITK
    scales a NIfTI in metres or microns to mm, nibabel does not, so the affine is kept in the file's unit and the unit
    with it) are written back unchanged; `sources` says which file or series fed each model channel (for a labels
    file's own grid: that file, as LABELS). `spacing` and `origin` are in mm. `nifti_version` is the header a NIfTI
    mask is written with: a NIfTI-2 scan's (2) keeps its 64-bit transforms exact, which NIfTI-1's 32-bit fields round
    by up to a few micrometres, and grids of more than 32767 voxels a side.
    """

    shape: tuple[int, int, int]
    affine: tuple[tuple[float, ...], ...]
    qform_code: int = 1
    sform_code: int = 1
    sources: tuple[tuple[str, str], ...] = field(default=())
    qform: tuple[tuple[float, ...], ...] | None = None
    units: str = "mm"
    sform: tuple[tuple[float, ...], ...] | None = None
    nifti_version: int = 1

    @classmethod
    def of(cls, shape, affine, qform_code: int = 1, sform_code: int = 1, sources=(), qform=None,
           units: str = "mm", sform=None, nifti_version: int = 1) -> Geometry:
        return cls(tuple(int(n) for n in shape[:3]), _rows(affine), int(qform_code), int(sform_code),
                   tuple((str(k), str(v)) for k, v in dict(sources).items()), _stored(qform, qform_code), str(units),
                   _stored(sform, sform_code), int(nifti_version))

    @property
    def matrix(self) -> np.ndarray:
        return np.array(self.affine)

    @property
    def oriented(self) -> bool:
        """Whether the header says how the patient lies in the voxels: a NIfTI whose qform and sform codes are both 0
        does not, and its affine is nibabel's guess from pixdim (see `no_orientation`)."""
        return self.qform_code > 0 or self.sform_code > 0

    @property
    def mm_matrix(self) -> np.ndarray:
        """`matrix` with its coordinates in mm, as ITK reads the file (`matrix` is in `units`, as nibabel reads it)."""
        matrix = self.matrix
        matrix[:3] *= MM_PER_UNIT[self.units]
        return matrix

    @property
    def qform_matrix(self) -> np.ndarray:
        """The qform a NIfTI mask's header gets (with `qform_code`): the source's as stored, else `affine`."""
        return np.array(self.qform if self.qform is not None else self.affine)

    @property
    def sform_matrix(self) -> np.ndarray:
        """The sform a NIfTI mask's header gets (with `sform_code`): the source's as stored, else `affine`."""
        return np.array(self.sform if self.sform is not None else self.affine)

    @property
    def to_engine(self) -> np.ndarray:
        """nibabel orientation transform from the source axes to ("S", "P", "L")."""
        return ornt_transform(io_orientation(self.matrix), axcodes2ornt(ENGINE_AXCODES))

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the engine's (Z, H, W) axes."""
        source = np.sqrt((self.mm_matrix[:3, :3] ** 2).sum(axis=0))
        spacing = [0.0, 0.0, 0.0]
        for axis, (target, _) in enumerate(self.to_engine):
            spacing[int(target)] = float(source[axis])
        return tuple(spacing)

    @property
    def voxel_volume(self) -> float:
        """One voxel's volume in mm³ (`units.voxel_volume` of the affine): not the product of `spacing`, which is
        larger for a sheared affine (slanted voxels)."""
        return voxel_volume(self.mm_matrix[:3, :3])

    @property
    def origin(self) -> tuple[float, float, float]:
        """Where the engine's voxel (0, 0, 0) lies along its (Z, H, W) axes, in mm: the superior, posterior and left
        coordinates of its centre (napari's layer `translate`, beside `spacing` as its `scale`)."""
        corner = [0 if flip > 0 else size - 1 for size, (_, flip) in zip(self.shape, self.to_engine)]
        right, anterior, superior = (self.mm_matrix @ [*corner, 1.0])[:3]
        return float(superior), float(-anterior), float(-right)

    @property
    def engine_shape(self) -> tuple[int, int, int]:
        shape = [0, 0, 0]
        for axis, (target, _) in enumerate(self.to_engine):
            shape[int(target)] = self.shape[axis]
        return tuple(shape)

    def with_sources(self, sources: dict[str, str]) -> Geometry:
        return Geometry.of(self.shape, self.affine, self.qform_code, self.sform_code, sources, self.qform, self.units,
                           self.sform, self.nifti_version)

    def to_dict(self) -> dict:
        """JSON-able form (napari layer metadata)."""
        data = {"shape": list(self.shape), "affine": [list(row) for row in self.affine], "qform_code": self.qform_code,
                "sform_code": self.sform_code, "sources": dict(self.sources), "units": self.units,
                "nifti_version": self.nifti_version}
        stored = {name: [list(row) for row in rows] for name, rows in (("qform", self.qform), ("sform", self.sform))
                  if rows is not None}
        return data | stored

    @classmethod
    def from_dict(cls, data: dict) -> Geometry:
        """The inverse of `to_dict`. A layer's metadata may have been edited or made elsewhere, so what nibabel and
        the orientation code would fail on later is refused here: a grid that is not three sizes, an affine that is
        not 4 x 4 finite numbers with an invertible voxel-to-mm part."""
        label = "the layer's scan geometry (its metadata)"
        try:
            geometry = cls.of(data["shape"], data["affine"], data.get("qform_code", 1), data.get("sform_code", 1),
                              data.get("sources", {}), data.get("qform"), data.get("units", "mm"), data.get("sform"),
                              data.get("nifti_version", 1))
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(f"the layer's scan geometry is unreadable ({error}); save it as TIFF instead") from None
        if geometry.units not in MM_PER_UNIT:
            raise InputError(f"{label}: its spatial unit {geometry.units!r} is none of {', '.join(MM_PER_UNIT)}; "
                             "save it as TIFF instead")
        if geometry.nifti_version not in (1, 2):
            raise InputError(f"{label}: its NIfTI version {geometry.nifti_version} is neither 1 nor 2; "
                             "save it as TIFF instead")
        if len(geometry.shape) != 3 or min(geometry.shape) < 1:
            raise InputError(f"{label}: its grid {list(geometry.shape)} is not three voxel counts; "
                             "save it as TIFF instead")
        for name, matrix in (("affine", geometry.matrix), ("qform", geometry.qform_matrix),
                             ("sform", geometry.sform_matrix)):
            if matrix.shape != (4, 4):
                raise InputError(f"{label}: its {name} is {' x '.join(map(str, matrix.shape))}, not 4 x 4; "
                                 "save it as TIFF instead")
            if not (name == "sform" and geometry.sform_code == 0):  # unused rows may be singular (zeros, as nibabel
                check_affine(label, matrix)  # writes them); `of` kept them only where finite
        return geometry


def _rows(matrix) -> tuple[tuple[float, ...], ...]:
    """A matrix as nested tuples of floats (hashable, so a Geometry can be compared and kept in sets)."""
    return tuple(tuple(float(v) for v in row) for row in np.asarray(matrix, dtype=float))


def _stored(matrix, code: int) -> tuple[tuple[float, ...], ...] | None:
    """A NIfTI transform as stored, for a mask's header to repeat (None: none stored, the mask gets the affine). One
    that no tool reads (its code 0) is dropped where it holds NaN or infinite numbers, as some converters leave unused
    srow_* fields: a mask's header gets finite rows, and a layer's geometry of such a scan (`from_dict`) saves, as the
    CLI's mask of it does. The one rule for both paths, as every Geometry is made here."""
    if matrix is None:
        return None
    rows = _rows(matrix)
    return None if int(code) == 0 and not all(math.isfinite(v) for row in rows for v in row) else rows


def engine_geometry(shape: tuple[int, ...], spacing: tuple[float, ...] | None = None) -> Geometry:
    """The geometry of an array already in the engine's layout (a TIFF, a napari layer): it maps back unchanged."""
    spacing = np.asarray(spacing if spacing is not None else (1.0, 1.0, 1.0), dtype=float)
    axes = np.array([[0.0, 0.0, 1.0], [0.0, -1.0, 0.0], [-1.0, 0.0, 0.0]])  # Z -> +S, H -> +P, W -> +L in RAS
    affine = np.eye(4)
    affine[:3, :3] = axes.T * spacing
    return Geometry.of(shape[:3], affine, qform_code=0, sform_code=2)


@dataclass
class Volume:
    """Voxels as stored (source axes, channels last for 4D files) and their geometry."""

    data: np.ndarray
    geometry: Geometry


def _without_trailing_ones(shape: tuple[int, ...]) -> tuple[int, ...]:
    """`shape` without the axes of size 1 after the fourth, which some tools write: (X, Y, Z, 1, 1) holds the voxels
    of (X, Y, Z, 1), a volume with one channel, which is read as the 3D volume it is (cases.py)."""
    shape = tuple(shape)
    while len(shape) > 4 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def _check_dimensions(path: Path, shape: tuple[int, ...]) -> None:
    if len(shape) < 3:
        raise InputError(f"{path} is a {len(shape)}D image {shape}; the model needs a 3D volume "
                         "(a single slice must be stored as a volume of depth 1)")
    if len(shape) > 4:
        raise InputError(f"{path} has {len(shape)} dimensions {shape}; only 3D volumes and 4D volumes with one "
                         "channel per MRI sequence can be read")
    if 0 in shape:
        raise InputError(f"{path} has shape {shape}: it holds no voxels")


@contextmanager
def _nibabel_quiet() -> Iterator[None]:
    """nibabel logs the header problems it "fixes" on stderr; ours is the one-line error (see _check_voxel_size)."""
    logger = nib.imageglobals.logger
    was_disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = was_disabled


def _check_voxel_size(path: Path, raw: nib.Nifti1Header) -> None:
    """Refuse a voxel size (pixdim) of zero or below where it places the voxels (no sform), which nibabel would
    silently set to 1 mm or its absolute value; `raw` is the header as stored, before nibabel's fixes."""
    sizes = raw["pixdim"][1:4]
    if raw["sform_code"] <= 0 and (sizes <= 0).any():
        raise InputError(f"{path}: its header gives a pixdim voxel size of {' x '.join(f'{s:g}' for s in sizes)} mm; "
                         "fix the header")


def _open_nifti(path: Path, stream: BinaryIO) -> nib.Nifti1Image:
    """The image whose header `stream` starts with, checked; its voxels are read from `stream` only when asked."""
    image_class = nib.Nifti2Image if int.from_bytes(stream.read(4), "little") in (540, 0x1C020000) else nib.Nifti1Image
    stream.seek(0)
    raw = image_class.header_class.from_fileobj(stream, check=False)
    stream.seek(0)
    holder = nib.FileHolder(str(path), stream)
    with _nibabel_quiet():
        image = image_class.from_file_map({"header": holder, "image": holder}, mmap=False)
    _check_voxel_size(path, raw)
    _check_dimensions(path, _without_trailing_ones(image.shape))
    check_pixel_type(str(path), image.get_data_dtype())
    return image


def read_nifti(path: str | Path) -> Volume:
    """A NIfTI file, its header checked before its voxels are read and, if gzip-compressed, read to its end in the
    same pass so its gzip CRC and length are checked. Compression is told by the file's first bytes, not its name, as
    ITK and FSL tell it: a `.nii.gz` that was never compressed, or a compressed `.nii`, is read, not refused."""
    path = Path(path)
    try:
        with open(path, "rb") as start:
            compressed = start.read(len(GZIP_MAGIC)) == GZIP_MAGIC
        with (gzip.open if compressed else open)(path, "rb") as stream:
            image = _open_nifti(path, stream)
            check_claimed_size(str(path), image.shape, image.get_data_dtype(), path.stat().st_size,
                               int(image.header.get_data_offset()), compressed)
            check_affine(str(path), image.affine)
            qform, sform = image.header.get_qform(), image.header.get_sform()  # as stored, whatever their codes
            data = np.asanyarray(image.dataobj).reshape(_without_trailing_ones(image.shape))
            if compressed:
                check_gzip_end(stream, path)
    except InputError:
        raise
    except Exception as error:  # nibabel raises many types for broken or truncated files
        raise InputError(f"cannot read {path} as NIfTI ({describe(error)})") from None
    header = image.header
    geometry = Geometry.of(image.shape, image.affine, header.get("qform_code", 1), header.get("sform_code", 1),
                           qform=qform, units=_spatial_unit(header), sform=sform,
                           nifti_version=2 if isinstance(image, nib.Nifti2Image) else 1)
    return Volume(kept_pixels(data), geometry)  # one without orientation is told of where it is used


def no_orientation(what: str | Path, lacking: str = UNORIENTED,
                   assumed: str = "right to left, posterior to anterior and inferior to superior (nibabel's reading; "
                                  "ITK-based viewers read it otherwise)",
                   mask: str = "header, codes 0 included, so any tool overlays the two alike") -> str:
    """What a user is told (once per file and process: Python's default warning filter) of a scan whose header says
    how big its voxels are but not how the patient lies in them (`lacking`), read with the orientation its reader
    `assumed`: the one wording for every format. By default a NIfTI whose qform and sform codes are both 0, when its
    own grid is what is shown and segmented (cases.py: the FLAIR's, or a labels file opened on its own; a file placed
    onto such a grid is told of by `cases.on_grid`); tools differ there: nibabel takes pixdim in the Analyze convention
    (its axes run to the left, anterior, superior), ITK-based viewers take the voxel axes as LPS. A DICOM series
    without ImageOrientationPatient is the other (dicom.py). The file is read, not refused (old Analyze-era
    conversions are like this); the warning says what was assumed, since a wrong guess shows and segments the brain
    flipped, and what its `mask` keeps."""
    return (f"{what} {lacking}: it is shown and segmented as if its voxel axes ran {assumed}, so check that the brain "
            f"looks upright; its mask keeps the scan's voxel grid and {mask}")


def _spatial_unit(header: nib.Nifti1Header) -> str:
    """The header's spatial unit as a key of MM_PER_UNIT; a code NIfTI does not define counts as unknown (mm)."""
    unit = header.get_xyzt_units()[0]
    return unit if unit in MM_PER_UNIT else "unknown"


def _itk_affine(image: sitk.Image) -> np.ndarray:
    direction = np.array(image.GetDirection()).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = LPS_TO_RAS @ direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = LPS_TO_RAS @ np.array(image.GetOrigin())
    return affine


@contextmanager
def itk_warnings_off() -> Iterator[None]:
    """ITK prints warnings (e.g. "No Series were found") straight to stderr; ours are the one-line errors."""
    before = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(before)


def _itk_header(files: str | Path | list[str]) -> tuple[tuple[int, ...], np.dtype]:
    """The voxel shape (x, y, z[, c]) and pixel type `files` claim (a DICOM series: one slice per file), from the
    first header alone."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(files[0] if isinstance(files, list) else files))
    reader.ReadImageInformation()
    size = tuple(reader.GetSize())
    if isinstance(files, list):
        size = size[:2] + (len(files),)
    components = reader.GetNumberOfComponents()
    pixel = sitk.Image([1] * reader.GetDimension(), reader.GetPixelID(), components)
    return size + ((components,) if components > 1 else ()), sitk.GetArrayViewFromImage(pixel).dtype


def read_itk(files: str | Path | list[str], label: str, as_float: bool = False) -> Volume:
    """A volume SimpleITK reads (NRRD, MHA, a DICOM series as its sorted file list); `label` names it in errors.
    `as_float` reads its voxels as float32 whatever their stored type: ITK reads every file of a series in the first
    file's type, which cannot hold the others' values where they scale their numbers differently (dicom.py).

    Its header is checked (size against free memory, pixel type) before its voxels are read, its geometry after."""
    try:
        with itk_warnings_off():
            shape, dtype = _itk_header(files)
            _check_dimensions(Path(label), shape)
            check_pixel_type(label, dtype)
            check_claimed_size(label, shape, np.float32 if as_float else dtype)
            pixel_type = sitk.sitkFloat32 if as_float else sitk.sitkUnknown
            image = sitk.ReadImage([str(f) for f in files] if isinstance(files, list) else str(files), pixel_type)
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else "unreadable"
        raise InputError(f"cannot read {label} ({reason})") from None
    affine = _itk_affine(image)
    check_affine(label, affine)
    data = sitk.GetArrayFromImage(image)  # (k, j, i[, c]): reverse the spatial axes to nibabel's index order
    data = data.transpose((2, 1, 0) + tuple(range(3, data.ndim)))
    return Volume(kept_pixels(np.ascontiguousarray(data)), Geometry.of(image.GetSize(), affine))


def to_engine(data: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Source-axes voxels (channels last allowed) as the engine's (Z, H, W[, C])."""
    return np.ascontiguousarray(apply_orientation(data, geometry.to_engine))


def from_engine(data: np.ndarray, geometry: Geometry) -> np.ndarray:
    """The inverse of `to_engine`: an engine-layout mask back on the source grid."""
    if tuple(data.shape[:3]) != geometry.engine_shape:
        raise InputError(f"the mask's shape {data.shape[:3]} does not match its scan's {geometry.engine_shape}")
    back = ornt_transform(axcodes2ornt(ENGINE_AXCODES), io_orientation(geometry.matrix))
    return np.ascontiguousarray(apply_orientation(data, back))


def same_grid(a: Geometry, b: Geometry, tolerance_mm: float = 1e-3) -> bool:
    """Whether `a` and `b` are one voxel grid, as ITK reads them (in mm) or as nibabel does (the affines as stored,
    whatever their units): a mask ITK wrote in mm for a NIfTI scan in metres is its scan's grid to ITK, and one that
    nibabel-based tools (or this project, before masks kept their scan's unit) wrote with the scan's affine and
    another unit is its scan's grid to nibabel; a difference of units alone on one grid is a header's slip, never a
    scan 1000 times the size of its mask."""
    if a.shape != b.shape:
        return False
    stored_tolerance = tolerance_mm / max(MM_PER_UNIT[a.units], MM_PER_UNIT[b.units])
    return (np.allclose(a.mm_matrix, b.mm_matrix, atol=tolerance_mm)
            or np.allclose(a.matrix, b.matrix, atol=stored_tolerance))


def _world_box(geometry: Geometry) -> np.ndarray:
    """(2, 3): lowest and highest RAS+ mm that the grid's voxels (as boxes, not centres) reach, as ITK reads them:
    what resample_onto resamples by."""
    edges = np.array(np.meshgrid(*[(-0.5, n - 0.5) for n in geometry.shape], indexing="ij")).reshape(3, -1)
    matrix = geometry.mm_matrix
    corners = matrix[:3, :3] @ edges + matrix[:3, 3:]
    return np.stack([corners.min(axis=1), corners.max(axis=1)])


def covered_fraction(moving: Geometry, reference: Geometry) -> float:
    """The share of `reference`'s field of view (its bounding box in world space) that `moving`'s box covers."""
    ours, theirs = _world_box(moving), _world_box(reference)
    overlap = np.clip(np.minimum(ours[1], theirs[1]) - np.maximum(ours[0], theirs[0]), 0, None)
    return float(overlap.prod() / (theirs[1] - theirs[0]).prod())


def _itk_image(data: np.ndarray, geometry: Geometry) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    matrix = geometry.mm_matrix  # ITK's millimetres, as ITK reads the NIfTI scan
    linear = LPS_TO_RAS @ matrix[:3, :3]
    spacing = np.sqrt((linear**2).sum(axis=0))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple(float(v) for v in (linear / spacing).ravel()))
    image.SetOrigin(tuple(float(v) for v in LPS_TO_RAS @ matrix[:3, 3]))
    return image


def resample_onto(volume: Volume, reference: Geometry, labels: bool = False) -> np.ndarray:
    """A 3D volume resampled in physical space onto `reference`'s grid (linear; nearest neighbour for labels)."""
    moving = _itk_image(volume.data, volume.geometry)
    target = _itk_image(np.zeros(reference.shape, np.uint8), reference)
    method = sitk.sitkNearestNeighbor if labels else sitk.sitkLinear
    resampled = sitk.Resample(moving, target, sitk.Transform(), method, 0.0, moving.GetPixelID())
    return sitk.GetArrayFromImage(resampled).transpose(2, 1, 0)


def save_nifti(path: Path, data: np.ndarray, geometry: Geometry, suffix: str) -> None:
    """Save source-grid voxels as NIfTI atomically with the scan's sform, qform (pixdim included), codes, spatial
    unit and NIfTI version, so nibabel and ITK-based viewers alike place the mask where they place the scan. A grid
    NIfTI-1 cannot hold (over 32767 voxels a side: an NRRD scan's, say) is written as NIfTI-2."""
    fits_nifti1 = max(data.shape) <= np.iinfo(np.int16).max  # NIfTI-1 stores each size as a 16-bit integer
    image = (nib.Nifti1Image if geometry.nifti_version == 1 and fits_nifti1 else nib.Nifti2Image)(data, None)
    image.set_sform(geometry.sform_matrix, code=geometry.sform_code)
    image.set_qform(geometry.qform_matrix, code=geometry.qform_code)
    image.header.set_xyzt_units(geometry.units)
    with atomic_path(path, suffix=suffix) as tmp:
        nib.save(image, tmp)


def itk_placement_differs(geometry: Geometry) -> str | None:
    """What in a NIfTI scan's header lets ITK-based tools (3D Slicer, ITK-SNAP, SimpleITK) place it elsewhere than
    nibabel, whose placement (`affine`) an NRRD or MHA mask would get: one origin, spacing and direction, no codes and
    no second transform. None when every tool places it alike (always, for a DICOM, NRRD or MHA scan).

    ITK reads pixdim alone as LPS axes from a header with both codes 0, may follow the qform where nibabel follows the
    sform (ITK 5.4 does unless the sform_code is 1; older ITK always did), takes the voxel size from pixdim even where
    it follows the sform, and cannot follow a sheared sform; a mask that kept nibabel's placement landed mirrored,
    rotated or shifted on its scan in those viewers, while a NIfTI mask, which keeps the header as it is, overlays its
    scan in every tool. Differences under a tenth of a voxel at the grid's
    corners (float rounding, the qform's orthogonalised scanner axes) move nothing."""
    if not geometry.oriented:
        return UNORIENTED
    corners = np.array(np.meshgrid(*[(0, n - 1) for n in geometry.shape], indexing="ij")).reshape(3, -1)
    corners = np.vstack([corners, np.ones(corners.shape[1])])
    tolerance = 0.1 * min(geometry.spacing) / MM_PER_UNIT[geometry.units]  # in the file's units, as the affines are

    def moved(other: np.ndarray) -> bool:
        return float(np.abs((other - geometry.matrix) @ corners).max()) > tolerance

    if geometry.qform_code > 0 and moved(geometry.qform_matrix):
        return "has a qform and an sform that place it differently (its qform_code and sform_code are both set)"
    sizes = np.linalg.norm(geometry.matrix[:3, :3], axis=0)
    by_pixdim = geometry.matrix.copy()  # ITK takes the voxel size from pixdim (the stored qform's), whatever it follows
    by_pixdim[:3, :3] *= np.linalg.norm(geometry.qform_matrix[:3, :3], axis=0) / sizes
    if moved(by_pixdim):
        return "gives a pixdim voxel size other than its sform's"
    rigid = nib.Nifti1Header()
    rigid.set_qform(geometry.matrix)  # the nearest transform whose voxel axes are at right angles, as ITK needs
    if moved(rigid.get_qform()):
        return "has a sheared sform (its voxel axes are not at right angles)"
    return None


def check_itk_placement(path: Path, geometry: Geometry, suffix: str) -> None:
    """Refuse an NRRD or MHA mask (`suffix`) as `path` of a scan that ITK-based tools place elsewhere than nibabel
    (see `itk_placement_differs`): its mask must be NIfTI, which keeps the scan's header. The header alone says so,
    so a caller checks this as soon as the scan is read, before the model runs (formats.ScanFormat.check_mask)."""
    if problem := itk_placement_differs(geometry):
        raise InputError(f"cannot write {path.name}: its scan's NIfTI header {problem}, so ITK-based viewers (3D "
                         f"Slicer, ITK-SNAP) may place the scan elsewhere than nibabel does, and a {suffix} mask holds "
                         "one placement only; save the mask as .nii.gz, which keeps the scan's header as it is")


def save_itk(path: Path, data: np.ndarray, geometry: Geometry, suffix: str) -> None:
    """Save source-grid voxels as a compressed NRRD or MHA (chosen by `suffix`) atomically, unless
    `check_itk_placement` refuses them.

    SimpleITK reports a failed write (a full disk, a folder gone) as a RuntimeError naming our temporary file and
    ITK's source lines; it becomes an InputError naming `path`, and the partial temporary file goes with the block.
    """
    check_itk_placement(path, geometry, suffix)
    with atomic_path(path, suffix=suffix) as tmp:
        try:
            sitk.WriteImage(_itk_image(data, geometry), str(tmp), True)
        except RuntimeError as error:
            given = re.search(r"Reason: (.+)", str(error))  # MetaImage passes on the system's reason; NRRD does not
            reason = given[1].strip() if given else ("SimpleITK could not write it completely; check the free disk "
                                                     "space and that the folder can be written")
            raise InputError(f"cannot write {path}: {reason}") from None
