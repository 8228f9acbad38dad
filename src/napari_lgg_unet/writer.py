"""napari writer: a Labels layer saved as a tumour mask, in any mask format engine/formats.py lists.

Every label value above 0 counts as tumour. A layer segmented from a medical volume carries that volume's geometry
in `metadata["lgg_unet_geometry"]` (set by the reader, copied by the Segment widget): the NIfTI gets the scan's exact
shape and affine. Without it, a volume file gets the layer's scale as voxel size in the engine's axes. TIFFs are
uint8 0/255, the dataset's convention, so they can go straight into a Kaggle-style training folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .engine.errors import InputError
from .reader import GEOMETRY_KEY


def write_labels(path: str, data: np.ndarray, meta: dict) -> list[str]:
    """Write the mask atomically (a failed save never leaves a half-written file); returns the path written.
    A name without a known suffix gets NIfTI when the layer has a scan's geometry, else TIFF, added to the name
    (`P_12.edited` becomes `P_12.edited.tif`, not `P_12.tif`). A mask is never written onto a file of the scan it
    was segmented from (the layer's geometry names them)."""
    from .engine.formats import default_mask_suffix, file_format

    target, data = Path(path), np.asarray(data)
    if data.ndim not in (2, 3):
        raise InputError(f"a mask has 2 or 3 dimensions, this layer {data.ndim}; save a 2D or 3D labels layer")
    stored = (meta.get("metadata") or {}).get(GEOMETRY_KEY)
    if file_format(target) is None:
        target = target.with_name(target.name + default_mask_suffix(bool(stored)))
    if stored:
        _check_not_a_scan_file(target, stored)
    kind = file_format(target)
    geometry = None
    if kind.is_volume:
        from .engine.volumes import Geometry, engine_geometry

        scale = tuple(meta.get("scale") or (1.0,) * data.ndim)
        if not all(np.isfinite(scale)) or min(scale) <= 0:
            raise InputError(f"the layer's scale {scale} is not a voxel size (positive numbers); fix it or save as TIFF")
        spacing = (1.0,) * (3 - len(scale)) + scale[-3:]
        geometry = Geometry.from_dict(stored) if stored else engine_geometry((1,) * (3 - data.ndim) + data.shape, spacing)
    kind.write_mask(target, data, geometry)
    return [str(target)]


def _check_not_a_scan_file(target: Path, stored: dict) -> None:
    """Refuse `target` when it is one of the files of the case the layer's scan was read from."""
    from .engine.outputs import input_paths
    from .engine.volumes import Geometry

    sources = [Path(source) for _, source in Geometry.from_dict(stored).sources]
    files = {p for source in sources if source.exists() for p in input_paths(source) if not p.is_dir()}
    if target.resolve() in files:
        raise InputError(f"{target} is a file of the case this layer came from (a scan or its manual mask), which "
                         "is never overwritten; save the mask under another name")
