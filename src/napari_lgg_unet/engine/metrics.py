"""Dice, IoU, pixel accuracy, precision and recall, per slice and per volume, never NaN.

Convention for empty denominators: a score is 1.0 when prediction and truth are both empty (nothing to find,
nothing claimed) and 0.0 otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import InputError

METRIC_NAMES = ("dice", "iou", "accuracy", "precision", "recall")


@dataclass(frozen=True)
class Counts:
    tp: int
    fp: int
    fn: int
    tn: int

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)


def count(prediction: np.ndarray, truth: np.ndarray) -> Counts:
    """Confusion counts of two masks of the same shape (anything > 0 is tumour)."""
    prediction, truth = np.asarray(prediction) > 0, np.asarray(truth) > 0
    if prediction.shape != truth.shape:
        raise InputError(f"prediction shape {prediction.shape} differs from ground truth shape {truth.shape}")
    tp = int(np.count_nonzero(prediction & truth))
    fp = int(np.count_nonzero(prediction)) - tp
    fn = int(np.count_nonzero(truth)) - tp
    return Counts(tp, fp, fn, prediction.size - tp - fp - fn)


def _ratio(numerator: int, denominator: int, both_empty: bool) -> float:
    if denominator == 0:
        return 1.0 if both_empty else 0.0
    return numerator / denominator


@dataclass(frozen=True)
class Scores:
    dice: float
    iou: float
    accuracy: float
    precision: float
    recall: float

    def to_dict(self) -> dict:
        return asdict(self)


def scores(counts: Counts) -> Scores:
    empty = counts.tp + counts.fp + counts.fn == 0
    total = counts.tp + counts.fp + counts.fn + counts.tn
    return Scores(
        dice=_ratio(2 * counts.tp, 2 * counts.tp + counts.fp + counts.fn, empty),
        iou=_ratio(counts.tp, counts.tp + counts.fp + counts.fn, empty),
        accuracy=_ratio(counts.tp + counts.tn, total, True),
        precision=_ratio(counts.tp, counts.tp + counts.fp, empty),
        recall=_ratio(counts.tp, counts.tp + counts.fn, empty),
    )


def volume_scores(prediction: np.ndarray, truth: np.ndarray) -> Scores:
    """Scores over every voxel of one volume (the per-volume Dice of the LGG literature)."""
    return scores(count(prediction, truth))


def slice_scores(prediction: np.ndarray, truth: np.ndarray) -> list[Scores]:
    """Scores of each slice along the first axis of (Z, H, W) masks."""
    return [volume_scores(p, t) for p, t in zip(np.asarray(prediction), np.asarray(truth))]


def summarise(per_volume: dict[str, Scores]) -> dict[str, float]:
    """Mean and median over volumes of each metric, e.g. {'mean_dice': .., 'median_dice': ..}."""
    summary: dict[str, float] = {}
    for name in METRIC_NAMES:
        values = np.array([getattr(s, name) for s in per_volume.values()], dtype=float)
        summary[f"mean_{name}"] = float(values.mean()) if values.size else 0.0
        summary[f"median_{name}"] = float(np.median(values)) if values.size else 0.0
    return summary
