"""napari writer: a Labels layer saved as a tumour mask, in any mask format engine/formats.py lists.

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
    """Write the mask atomically (a failed save never leaves a half-written file); returns the path written.
    A name without a known suffix gets NIfTI when the layer has a scan's geometry, else TIFF."""
    from .engine.formats import default_mask_suffix, file_format

    target, data = Path(path), np.asarray(data)
    stored = (meta.get("metadata") or {}).get(GEOMETRY_KEY)
    if file_format(target) is None:
        target = target.with_suffix(default_mask_suffix(bool(stored)))
    kind = file_format(target)
    geometry = None
    if kind.is_volume:
        from .engine.volumes import Geometry, engine_geometry

        scale = tuple(meta.get("scale") or (1.0,) * data.ndim)
        spacing = (1.0,) * (3 - len(scale)) + scale[-3:]
        geometry = Geometry.from_dict(stored) if stored else engine_geometry((1,) * (3 - data.ndim) + data.shape, spacing)
    kind.write_mask(target, data, geometry)
    return [str(target)]
