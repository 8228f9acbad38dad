"""napari writer: a Labels layer saved as a tumour mask, as NIfTI / NRRD / MHA on its scan's grid or as TIFF.

Every label value above 0 counts as tumour. A layer segmented from a medical volume carries that volume's geometry
in `metadata["lgg_unet_geometry"]` (set by the reader, copied by the Segment widget): the NIfTI gets the scan's exact
shape and affine. Without it, a volume file gets the layer's scale as voxel size in the engine's axes. TIFFs are
uint8 0/255, the dataset's convention, so they can go straight into a Kaggle-style training folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .reader import GEOMETRY_KEY


def write_labels(path: str, data: np.ndarray, meta: dict) -> list[str]:
    """Write the mask atomically (a failed save never leaves a half-written file); returns the path written."""
    from .engine.errors import InputError
    from .engine.io import write_mask_tiff
    from .engine.volumes import Geometry, engine_geometry, volume_suffix, write_mask_volume

    target, data = Path(path), np.asarray(data)
    stored = (meta.get("metadata") or {}).get(GEOMETRY_KEY)
    if volume_suffix(target) is None and target.suffix.lower() not in (".tif", ".tiff"):
        target = target.with_suffix(".nii.gz" if stored else ".tif")
    if volume_suffix(target) is None:
        write_mask_tiff(target, data)
        return [str(target)]
    if data.ndim not in (2, 3):
        raise InputError(f"a {data.ndim}D labels layer cannot be saved as one mask volume; save it as TIFF")
    volume = data if data.ndim == 3 else data[None]
    scale = tuple(meta.get("scale") or (1.0,) * data.ndim)
    spacing = (1.0,) * (3 - len(scale)) + scale[-3:]
    geometry = Geometry.from_dict(stored) if stored else engine_geometry(volume.shape, spacing)
    write_mask_volume(target, volume, geometry)
    return [str(target)]
