"""napari writer: a Labels layer saved as a tumour mask, in any mask format engine/formats.py lists.

Every label value above 0 counts as tumour; values below 0 are refused, as every reader of labels here refuses them
(saved, they were background without a word). A layer segmented from a medical volume carries that volume's
geometry in `metadata["lgg_unet_geometry"]` (set by the reader, copied by the Segment widget): the NIfTI gets the
scan's exact shape and affine, and a name without a suffix gets the scan's own mask format. Without it, a volume
file gets the layer's scale as voxel size in the engine's axes.
TIFFs are uint8 0/255, the dataset's convention, so they can go straight into a Kaggle-style training folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .engine.errors import InputError
from .engine.scan_checks import refuse_negative_labels
from .reader import GEOMETRY_KEY, SOURCE_KEY

if TYPE_CHECKING:
    from .engine.volumes import Geometry


def write_labels(path: str, data: np.ndarray, meta: dict) -> list[str]:
    """Write the mask atomically (a failed save never leaves a half-written file); returns the path written.
    A name without a known suffix gets its scan's mask format when the layer has a scan's geometry (NIfTI, NRRD or
    MHA: `default_mask_suffix`; a mask file's own for a labels layer read from one), else TIFF, added to the name
    (`P_12.edited` becomes `P_12.edited.tif`, not `P_12.tif`), and is refused where the name so made is taken. A mask
    is never written onto or into the scan its layer was read or segmented from (`metadata["lgg_unet_source"]`, see
    `_check_not_onto_its_scan`)."""
    from .engine.formats import default_mask_suffix, file_format

    target, data = Path(path), np.asarray(data)
    _check_mask_data(data)
    metadata = meta.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InputError(f"the layer's metadata is a {type(metadata).__name__}, not a dict; the writer cannot read "
                         "the scan it belongs to, so it saves nothing")
    stored = metadata.get(GEOMETRY_KEY)
    if file_format(target) is None:
        target = target.with_name(target.name + default_mask_suffix(_scan_geometry(stored)))
    if SOURCE_KEY in metadata:
        _check_not_onto_its_scan(target, metadata[SOURCE_KEY])
    if target.name != Path(path).name:
        _check_not_replaced_unasked(target, Path(path))
    kind = file_format(target)
    geometry = None
    if kind.is_volume:
        from .engine.volumes import engine_geometry

        scale = tuple(meta.get("scale") or (1.0,) * data.ndim)
        if not all(0 < s <= float(np.finfo(np.float32).max) for s in scale):  # headers store 32-bit voxel sizes
            raise InputError(f"the layer's scale {scale} is not a voxel size (positive numbers a volume file can "
                             "store); fix it or save as TIFF")
        spacing = (1.0,) * (3 - len(scale)) + scale[-3:]
        geometry = _scan_geometry(stored) or engine_geometry((1,) * (3 - data.ndim) + data.shape, spacing)
    kind.write_mask(target, data, geometry)
    return [str(target)]


def _check_mask_data(data: np.ndarray) -> None:
    """Refuse a layer's data that is no mask, or one that, saved, no reader here would open again."""
    if data.ndim not in (2, 3):
        raise InputError(f"a mask has 2 or 3 dimensions, this layer {data.ndim}; save a 2D or 3D labels layer")
    if data.size == 0:
        raise InputError(f"this layer has shape {data.shape}: it holds no voxels, so its mask file could not be "
                         "opened again; nothing is saved")
    if data.dtype.kind not in "biuf":
        raise InputError(f"a mask holds numbers, this layer's data is of type {data.dtype}; save a labels layer")
    refuse_negative_labels("this layer", data, "paint those voxels with 0 or a label above 0, then save")


def _scan_geometry(stored: object) -> Geometry | None:
    """The scan geometry the reader `stored` in the layer's metadata, checked (`Geometry.from_dict`), None without:
    read only where a volume mask or the default format needs it, so a layer whose stored geometry is broken still
    saves as TIFF."""
    if not stored:
        return None
    from .engine.volumes import Geometry

    return Geometry.from_dict(stored)


def _check_not_replaced_unasked(target: Path, given: Path) -> None:
    """Refuse `target`, the name `given` with a mask suffix added, where a file (or link) of that name exists: napari's
    save dialog asked whether to replace `given`, never `target`, so that file would be lost without a word."""
    if os.path.lexists(target):
        raise InputError(f"not saved: {target.name} exists and the name given, {given.name}, has no mask suffix, so "
                         f"nobody was asked to replace it; save as {target.name} to replace it, or under another name")


def _check_not_onto_its_scan(target: Path, source: object) -> None:
    """Refuse `target` where the CLI refuses `predict --output` for the scan `source` (engine/outputs.py): the scan,
    the masks paired with it, the files of its case, or anything inside its case, patient or DICOM folder.

    A case that cannot be listed any more (e.g. two post-contrast T1 files beside each other) does not block saving
    elsewhere: its whole folder is protected instead, as everything the file's case reads lies in it."""
    from .engine.outputs import check_output, input_paths

    if not isinstance(source, str):
        raise InputError(f"the layer's metadata names its scan as {source!r}, not a path; the writer cannot tell "
                         "which files to protect, so it saves nothing")
    scan = Path(source)
    if target.resolve() == scan.resolve():  # e.g. a manual mask opened, corrected and saved over itself
        raise InputError(f"not saved: {target} is the file this layer was opened from (the scan this layer comes "
                         "from, or the mask it was read from), which is never overwritten; save under another name, "
                         "so the original stays")
    try:
        input_paths(scan)
    except (InputError, OSError):
        scan = scan if scan.is_dir() else scan.parent
    try:
        check_output(target, [scan], replacing="even if you agree to replace it in the save dialog")
    except InputError as error:
        raise InputError(f"not saved: {error} (the input is the scan this layer comes from, {source})") from None
