"""How large a voxel is: the one rule behind every tumour size the plugin gives (the CLI's summary.csv, the widget's
readouts and review list), so that the same scan measures the same in all of them.

A voxel's volume is |det| of the linear part of its voxel-index -> world affine, not the product of the voxel sizes
(the lengths of the affine's columns): the two agree only when the axes are at right angles. A sheared affine (a
DICOM series acquired with gantry tilt, a NIfTI resampled by a registration tool) has slanted voxels, whose volume is
smaller than the product of their edge lengths.

World coordinates are converted to mm before the determinant is taken, one factor per world axis, so a layer whose
axes carry different length units (nm, µm, mm, cm, m) still measures in mm³. The factors are plain numbers, not
pint's: the engine has no napari, and napari's units reach it as names.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

# A length unit's name (pint's full name, as str() of a napari layer's unit gives it, or its usual symbol) -> mm.
MM_PER_LENGTH = {
    **dict.fromkeys(("nanometer", "nm"), 1e-6),
    **dict.fromkeys(("micrometer", "micron", "µm", "μm", "um"), 1e-3),  # U+00B5 and U+03BC: pint writes either
    **dict.fromkeys(("millimeter", "mm"), 1.0),
    **dict.fromkeys(("centimeter", "cm"), 10.0),
    **dict.fromkeys(("meter", "m"), 1000.0),
}


def voxel_volume(linear: np.ndarray, mm_per_axis: Iterable[float] | None = None) -> float:
    """One voxel's world volume: |det| of `linear`, the n-square linear part of a voxel-index -> world affine (its
    columns are the voxel's edges in the world). `mm_per_axis` scales each world axis (each row) to mm first (see
    `mm_per_axis`); None: the world is in mm already. The result is in mm^n: mm³ for a scan, mm² for a 2D image."""
    matrix = np.asarray(linear, dtype=float)
    if mm_per_axis is not None:
        matrix = matrix * np.asarray(list(mm_per_axis), dtype=float)[:, None]
    return abs(float(np.linalg.det(matrix)))


def mm_per_axis(units: Iterable[str]) -> tuple[float, ...] | None:
    """Each world axis's length unit (`units`, names as in MM_PER_LENGTH) in mm, or None when any axis has no known
    length unit (napari's 'pixel', an unknown name, none at all): its sizes are then given in voxels, as a number in
    mm³ would be made up."""
    names = [str(unit) for unit in units]
    if not names or any(name not in MM_PER_LENGTH for name in names):
        return None
    return tuple(MM_PER_LENGTH[name] for name in names)
