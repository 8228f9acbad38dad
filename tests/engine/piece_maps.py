"""A probability map with three pieces of known confidence, shared by the tests of pieces.py and review.py."""

from __future__ import annotations

import numpy as np


def three_pieces() -> np.ndarray:
    """A sure tumour (slices 2-5), a hesitant blob (slice 7) and a speck the model barely believes (slice 0)."""
    probability = np.zeros((8, 20, 20), np.float32)
    probability[2:6, 4:10, 4:10] = 0.97
    probability[7, 12:16, 12:18] = 0.62
    probability[0, 0, 0] = 0.55
    return probability
