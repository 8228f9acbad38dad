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

from .validate import check_bool, check_float, check_int, store


@dataclass(frozen=True)
class PostprocessConfig:
    """Threshold, then drop 3D pieces smaller than `min_size` voxels or whose highest probability is below
    `min_confidence`; `keep_largest` keeps only the largest piece instead."""

    threshold: float = 0.5
    min_size: int = 0
    keep_largest: bool = False
    min_confidence: float = 0.0

    def __post_init__(self) -> None:
        store(self, threshold=check_float("threshold", self.threshold, 0, 1, low_open=True, high_open=True),
              min_size=check_int("minimum tumour size", self.min_size, 0, 10**9),
              keep_largest=check_bool("keep largest", self.keep_largest),
              min_confidence=check_float("minimum confidence", self.min_confidence, 0, 1))


def postprocess(probability: np.ndarray, config: PostprocessConfig,
                keep_at: tuple[tuple[int, ...], ...] = ()) -> np.ndarray:
    """A uint8 0/1 mask of the shape of `probability` (float in [0, 1]), pieces connected in 3D (faces).

    A piece holding one of the voxels `keep_at` is kept whatever the clean-up says (a user's "this is tumour" click).
    """
    probability = np.asarray(probability)
    if not (config.min_size > 0 or config.min_confidence > 0 or config.keep_largest):
        return (probability >= config.threshold).astype(np.uint8)
    labels, _ = kept_labels(probability, config, keep_at)
    return (labels > 0).astype(np.uint8)


def kept_labels(probability: np.ndarray, config: PostprocessConfig, keep_at: tuple[tuple[int, ...], ...] = (),
                earlier: np.ndarray | None = None, within: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """The pieces `postprocess` keeps, labelled: (int32 labels 1..n in raster order, 0 elsewhere; n). Callers that
    list the pieces (corrections, review) get them from the one labelling that chose them.

    Kept whatever the clean-up says: a piece holding a voxel of `keep_at`, and for each piece of the labels
    `earlier` (same shape, 0 background), the largest piece now overlapping it (what remains of it). With a boolean
    `within`, only pieces overlapping it are kept."""
    probability = np.asarray(probability)
    labels, n = ndimage.label(probability >= config.threshold)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    peaks = piece_peaks(probability, labels, n) if config.min_confidence > 0 else np.ones(n)
    keep = np.concatenate([[False], kept_pieces(sizes, peaks, config)])
    keep[[labels[point] for point in keep_at]] = True
    if earlier is not None:
        keep[largest_remains(labels, sizes, earlier)] = True
    if within is not None:
        overlapping = np.zeros(n + 1, dtype=bool)
        overlapping[np.unique(labels[within])] = True
        keep &= overlapping
    keep[0] = False
    renumber = (np.cumsum(keep) * keep).astype(np.int32)
    return renumber[labels], int(keep.sum())


def largest_remains(labels: np.ndarray, sizes: np.ndarray, earlier: np.ndarray) -> np.ndarray:
    """For each piece of `earlier` that `labels` (pieces 1..n of `sizes` voxels) overlaps, the label of the largest
    piece overlapping it."""
    both = (labels > 0) & (earlier > 0)
    stride = len(sizes) + 1
    pairs = np.unique(earlier[both].astype(np.int64) * stride + labels[both])  # one number per (earlier, now) pair
    was, now = np.divmod(pairs, stride)
    order = np.lexsort((-sizes[now - 1], was))  # by earlier piece, the largest piece now first
    was, now = was[order], now[order]
    first = np.ones(len(was), dtype=bool)
    first[1:] = was[1:] != was[:-1]
    return now[first]


def piece_peaks(probability: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """The highest probability (>= 0) inside each of the pieces labelled 1..n.

    Read over the pieces' voxels only: ndimage.maximum sorts the whole volume and took half a second on one LGG scan,
    too slow for the review list, which relabels on every threshold change."""
    inside = labels > 0
    peaks = np.zeros(n + 1)
    np.maximum.at(peaks, labels[inside], probability[inside])
    return peaks[1:]


def kept_pieces(sizes: np.ndarray, peaks: np.ndarray, config: PostprocessConfig) -> np.ndarray:
    """Which of the pieces labelled 1..n (their voxel counts and peak probabilities) the clean-up keeps."""
    if config.keep_largest:
        keep = np.zeros(len(sizes), dtype=bool)
        if len(sizes):
            keep[int(np.argmax(sizes))] = True
        return keep
    return (sizes >= max(config.min_size, 1)) & (peaks >= config.min_confidence)
