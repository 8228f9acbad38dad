"""Medical volumes (NIfTI, NRRD, MHA, DICOM series) in the engine's axial layout, and masks written back onto their grid.

The engine's layout is the LGG training slices': an array (Z, H, W) whose slices run inferior -> superior, whose rows
run anterior -> posterior (anterior at the top of a slice) and whose columns run from the patient's right to left
(the radiological view). In nibabel's axis codes that is ("S", "P", "L"). Volumes are brought there by axis
permutations and flips only, never resampled, so a mask maps back voxel for voxel; an oblique scan goes to its
nearest axes. Geometry is kept as nibabel's affine (voxel index -> RAS+ millimetres); ITK's LPS origin, spacing and
direction are converted to and from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

from .atomic import atomic_path
from .errors import InputError

ENGINE_AXCODES = ("S", "P", "L")
AXIS_LABELS = ("inferior-superior", "anterior-posterior", "right-left")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
ITK_WRITE_SUFFIXES = (".nrrd", ".mha")  # single-file formats, so a mask is written atomically
VOLUME_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES
KEPT_DTYPES = (np.uint8, np.uint16, np.int16, np.float32)
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def volume_suffix(path: str | Path) -> str | None:
    """The volume format suffix `path` ends with (".nii.gz" counts as one), or None."""
    name = Path(path).name.lower()
    return next((suffix for suffix in sorted(VOLUME_SUFFIXES, key=len, reverse=True) if name.endswith(suffix)), None)


def strip_volume_suffix(name: str) -> str:
    suffix = volume_suffix(name)
    return name[: -len(suffix)] if suffix else name


@dataclass(frozen=True)
class Geometry:
    """Where a volume's voxels sit: what a mask needs to go back onto the source grid exactly.

    `shape` is the source voxel grid as stored (nibabel index order), `affine` maps its voxel indices to RAS+ mm.
    The NIfTI codes are written back unchanged; `sources` says which file or series fed each model channel.
    """

    shape: tuple[int, int, int]
    affine: tuple[tuple[float, ...], ...]
    qform_code: int = 1
    sform_code: int = 1
    sources: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def of(cls, shape, affine, qform_code: int = 1, sform_code: int = 1, sources=()) -> Geometry:
        matrix = np.asarray(affine, dtype=float)
        return cls(tuple(int(n) for n in shape[:3]), tuple(tuple(float(v) for v in row) for row in matrix),
                   int(qform_code), int(sform_code), tuple((str(k), str(v)) for k, v in dict(sources).items()))

    @property
    def matrix(self) -> np.ndarray:
        return np.array(self.affine)

    @property
    def to_engine(self) -> np.ndarray:
        """nibabel orientation transform from the source axes to ("S", "P", "L")."""
        return ornt_transform(io_orientation(self.matrix), axcodes2ornt(ENGINE_AXCODES))

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the engine's (Z, H, W) axes."""
        source = np.sqrt((self.matrix[:3, :3] ** 2).sum(axis=0))
        spacing = [0.0, 0.0, 0.0]
        for axis, (target, _) in enumerate(self.to_engine):
            spacing[int(target)] = float(source[axis])
        return tuple(spacing)

    @property
    def origin(self) -> tuple[float, float, float]:
        """Where the engine's voxel (0, 0, 0) lies along its (Z, H, W) axes, in mm: the superior, posterior and left
        coordinates of its centre (napari's layer `translate`, beside `spacing` as its `scale`)."""
        corner = [0 if flip > 0 else size - 1 for size, (_, flip) in zip(self.shape, self.to_engine)]
        right, anterior, superior = (self.matrix @ [*corner, 1.0])[:3]
        return float(superior), float(-anterior), float(-right)

    @property
    def engine_shape(self) -> tuple[int, int, int]:
        shape = [0, 0, 0]
        for axis, (target, _) in enumerate(self.to_engine):
            shape[int(target)] = self.shape[axis]
        return tuple(shape)

    def with_sources(self, sources: dict[str, str]) -> Geometry:
        return Geometry.of(self.shape, self.affine, self.qform_code, self.sform_code, sources)

    def to_dict(self) -> dict:
        """JSON-able form (napari layer metadata)."""
        return {"shape": list(self.shape), "affine": [list(row) for row in self.affine], "qform_code": self.qform_code,
                "sform_code": self.sform_code, "sources": dict(self.sources)}

    @classmethod
    def from_dict(cls, data: dict) -> Geometry:
        try:
            return cls.of(data["shape"], data["affine"], data.get("qform_code", 1), data.get("sform_code", 1),
                          data.get("sources", {}))
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(f"the layer's scan geometry is unreadable ({error}); save it as TIFF instead") from None


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


def _kept_dtype(data: np.ndarray) -> np.ndarray:
    if data.dtype == bool:
        return data.astype(np.uint8)
    return data if data.dtype in KEPT_DTYPES else data.astype(np.float32)


def _check_dimensions(path: Path, shape: tuple[int, ...]) -> None:
    if len(shape) < 3:
        raise InputError(f"{path} is a {len(shape)}D image {shape}; the model needs a 3D volume "
                         "(a single slice must be stored as a volume of depth 1)")
    if len(shape) > 4:
        raise InputError(f"{path} has {len(shape)} dimensions {shape}; only 3D volumes and 4D volumes with one "
                         "channel per MRI sequence can be read")
    if 0 in shape:
        raise InputError(f"{path} has shape {shape}: it holds no voxels")


def read_nifti(path: str | Path) -> Volume:
    path = Path(path)
    try:
        image = nib.load(path, mmap=False)
        _check_dimensions(path, image.shape)
        data = np.asanyarray(image.dataobj)
    except InputError:
        raise
    except Exception as error:  # nibabel raises many types for broken or truncated files
        reason = " ".join(str(error).split())  # one line, whatever nibabel wrote
        raise InputError(f"cannot read {path} as NIfTI ({error.__class__.__name__}: {reason})") from None
    header = image.header
    geometry = Geometry.of(image.shape, image.affine, header.get("qform_code", 1), header.get("sform_code", 1))
    return Volume(_kept_dtype(data), geometry)


def _itk_affine(image: sitk.Image) -> np.ndarray:
    direction = np.array(image.GetDirection()).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = _LPS_TO_RAS @ direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = _LPS_TO_RAS @ np.array(image.GetOrigin())
    return affine


def read_itk(files: str | Path | list[str], label: str) -> Volume:
    """A volume SimpleITK reads (NRRD, MHA, a DICOM series as its sorted file list); `label` names it in errors."""
    try:
        image = sitk.ReadImage([str(f) for f in files] if isinstance(files, list) else str(files))
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else "unreadable"
        raise InputError(f"cannot read {label} ({reason})") from None
    size = image.GetSize()
    channels = (image.GetNumberOfComponentsPerPixel(),) if image.GetNumberOfComponentsPerPixel() > 1 else ()
    _check_dimensions(Path(label), tuple(size) + channels)
    data = sitk.GetArrayFromImage(image)  # (k, j, i[, c]): reverse the spatial axes to nibabel's index order
    data = data.transpose((2, 1, 0) + tuple(range(3, data.ndim)))
    return Volume(_kept_dtype(np.ascontiguousarray(data)), Geometry.of(size, _itk_affine(image)))


def read_volume_file(path: str | Path) -> Volume:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    if volume_suffix(path) in NIFTI_SUFFIXES:
        return read_nifti(path)
    return read_itk(path, str(path))


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
    return a.shape == b.shape and np.allclose(a.matrix, b.matrix, atol=tolerance_mm)


def _itk_image(data: np.ndarray, geometry: Geometry) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    linear = _LPS_TO_RAS @ geometry.matrix[:3, :3]
    spacing = np.sqrt((linear**2).sum(axis=0))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple(float(v) for v in (linear / spacing).ravel()))
    image.SetOrigin(tuple(float(v) for v in _LPS_TO_RAS @ geometry.matrix[:3, 3]))
    return image


def resample_onto(volume: Volume, reference: Geometry, labels: bool = False) -> np.ndarray:
    """A 3D volume resampled in physical space onto `reference`'s grid (linear; nearest neighbour for labels)."""
    moving = _itk_image(volume.data, volume.geometry)
    target = _itk_image(np.zeros(reference.shape, np.uint8), reference)
    method = sitk.sitkNearestNeighbor if labels else sitk.sitkLinear
    resampled = sitk.Resample(moving, target, sitk.Transform(), method, 0.0, moving.GetPixelID())
    return sitk.GetArrayFromImage(resampled).transpose(2, 1, 0)


def write_mask_volume(path: str | Path, mask: np.ndarray, geometry: Geometry) -> None:
    """Save an engine-layout mask (uint8 0/1) on the source grid as NIfTI, NRRD or MHA, chosen by `path`, atomically.

    NIfTI keeps the source affine and its qform/sform codes, so `nibabel.load(path).affine` equals the scan's.
    """
    path = Path(path)
    suffix = volume_suffix(path)
    data = from_engine((np.asarray(mask) > 0).astype(np.uint8), geometry)
    if suffix in NIFTI_SUFFIXES:
        image = nib.Nifti1Image(data, None)
        image.set_sform(geometry.matrix, code=geometry.sform_code or 2)
        image.set_qform(geometry.matrix, code=geometry.qform_code)
        image.header.set_xyzt_units("mm")
        with atomic_path(path, suffix=suffix) as tmp:
            nib.save(image, tmp)
    elif suffix in ITK_WRITE_SUFFIXES:
        with atomic_path(path, suffix=suffix) as tmp:
            sitk.WriteImage(_itk_image(data, geometry), str(tmp), True)
    else:
        raise InputError(f"cannot write a mask volume as {path.name}: use .nii.gz, .nii, .nrrd or .mha")
