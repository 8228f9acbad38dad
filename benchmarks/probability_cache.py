"""The default segmentation's probabilities of a patient, kept as .npy so a benchmark re-run costs seconds.

The cache is per model: point --cache at a new folder when the model changes (nothing here can tell two models
apart by their files' names).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_lgg_unet.engine.predict import segment_volume


def cached_probability(model, image: np.ndarray, rgb: bool, file: Path | None) -> np.ndarray:
    """`segment_volume(model, image, rgb=rgb).probability`, read from `file` when it exists and written there
    otherwise (None: no cache)."""
    if file is not None and file.is_file():
        return np.load(file)
    probability = segment_volume(model, image, rgb=rgb).probability
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        np.save(file, probability)
    return probability
