"""An approximate brain mask from the FLAIR channel of a scan itself: no atlas, no download, a fraction of a second.

Used to imitate skull-stripped scans (the way BraTS and most research pipelines hand MRI over) in training and in
validation. On the LGG slices the scalp is bright, the skull a dark ring and the brain in between, so: find the
head, shave off its outer rim (scalp and skull), keep the tissue brighter than half the median inside, cut thin
bridges, keep the largest 3D piece, grow it back to the tissue edge and fill holes (ventricles, dark tumour cores).
Mid-brain slices come out clean; at the skull base, orbits and fat may survive. Radii are for 256-pixel slices and
scale with the slice width.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

HEAD_LEVEL = 0.08  # of the normalised FLAIR range: air is below, scalp and brain above
RIM_RADIUS = 10  # scalp + skull thickness to shave off, in pixels of a 256-pixel slice
BRIDGE_RADIUS = 5  # opening radius that separates brain from what is left of the scalp
REGROW_RADIUS = 4  # how far the kept brain grows back into bright tissue
CLOSE_RADIUS = 5  # smooths the outline over sulci


def _disk(radius: float, width: int) -> np.ndarray:
    """A flat (1, d, d) disk scaled to the slice width, so 3D operations act slice by slice."""
    r = max(1, round(radius * width / 256))
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y <= r * r)[None]


def _fill_holes_per_slice(mask: np.ndarray) -> np.ndarray:
    return np.stack([ndimage.binary_fill_holes(s) for s in mask])


def brain_mask(flair: np.ndarray) -> np.ndarray:
    """Bool mask of the brain, the shape of `flair`: (H, W) or (Z, H, W), any dtype or intensity scale."""
    flair = np.asarray(flair, dtype=np.float32)
    volume = flair[None] if flair.ndim == 2 else flair
    low, high = np.percentile(volume, [0.5, 99.5])
    scaled = np.clip((volume - low) / max(high - low, 1e-6), 0.0, 1.0)
    width = volume.shape[-1]
    head = _fill_holes_per_slice(scaled > HEAD_LEVEL)
    inner = ndimage.binary_erosion(head, structure=_disk(RIM_RADIUS, width))
    if not inner.any():
        return np.zeros(flair.shape, dtype=bool)
    tissue = scaled > 0.5 * float(np.median(scaled[inner]))
    core = ndimage.binary_opening(tissue & inner, structure=_disk(BRIDGE_RADIUS, width))
    labels, count = ndimage.label(core)
    if count == 0:
        return np.zeros(flair.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    brain = labels == int(np.argmax(sizes))
    brain = ndimage.binary_dilation(brain, structure=_disk(REGROW_RADIUS, width)) & tissue
    brain = _fill_holes_per_slice(ndimage.binary_closing(brain, structure=_disk(CLOSE_RADIUS, width)))
    return brain.reshape(flair.shape)
