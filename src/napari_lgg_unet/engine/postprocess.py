"""How probabilities become a mask: threshold, then clean-up that keeps every piece the model is sure of.

"Keep only the largest piece" is available but not the default: when a confident false piece (bright rim at the
top of the head, skull base) is larger than the tumour, it deletes the tumour and the scan scores 0. The rule
"keep every 3D piece of at least `min_size` voxels whose peak probability reaches `min_confidence`" drops specks
and hesitant false pieces without ever choosing between confident ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .validate import check_bool, check_float, check_int


@dataclass(frozen=True)
class PostprocessConfig:
    """Threshold, then drop 3D pieces smaller than `min_size` voxels or whose highest probability is below
    `min_confidence`; `keep_largest` keeps only the largest piece instead."""

    threshold: float = 0.5
    min_size: int = 0
    keep_largest: bool = False
    min_confidence: float = 0.0

    def __post_init__(self) -> None:
        check_float("threshold", self.threshold, 0, 1, low_open=True, high_open=True)
        check_int("minimum tumour size", self.min_size, 0, 10**9)
        check_bool("keep largest", self.keep_largest)
        check_float("minimum confidence", self.min_confidence, 0, 1)


def postprocess(probability: np.ndarray, config: PostprocessConfig) -> np.ndarray:
    """A uint8 0/1 mask of the shape of `probability` (float in [0, 1]), pieces connected in 3D (faces)."""
    probability = np.asarray(probability)
    mask = probability >= config.threshold
    if not (config.min_size > 0 or config.min_confidence > 0 or config.keep_largest) or not mask.any():
        return mask.astype(np.uint8)
    labels, n = ndimage.label(mask)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    if config.keep_largest:
        keep = np.zeros(n + 1, dtype=bool)
        keep[int(np.argmax(sizes))] = True
    else:
        keep = sizes >= max(config.min_size, 1)
        if config.min_confidence > 0:
            keep &= ndimage.maximum(probability, labels, index=np.arange(n + 1)) >= config.min_confidence
    keep[0] = False
    return keep[labels].astype(np.uint8)
