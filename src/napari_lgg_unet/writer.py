"""napari writer: a Labels layer saved as a TIFF mask in the dataset's convention (uint8, 0 background, 255 tumour).

Every label value above 0 counts as tumour, so the file can go straight into a Kaggle-style training folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_labels(path: str, data: np.ndarray, meta: dict) -> list[str]:
    """Write the mask atomically (a failed save never leaves a half-written file); returns the path written."""
    from .engine.io import write_mask_tiff

    target = Path(path)
    if target.suffix.lower() not in (".tif", ".tiff"):
        target = target.with_suffix(".tif")
    write_mask_tiff(target, np.asarray(data))
    return [str(target)]
