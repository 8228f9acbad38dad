"""Dice, IoU, accuracy, precision and recall of a prediction against a ground truth, for the volume and one slice,
plus the predicted tumour size; the numbers come from `engine.metrics` so the widget and the CLI agree.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..engine.atomic import write_text_atomic
from ..engine.errors import InputError
from ..engine.metrics import METRIC_NAMES, volume_scores


@dataclass
class Readouts:
    """`scores` maps a scope ('volume', 'slice 12') to metric -> value; empty without a ground truth."""

    voxels: int
    physical_size: float | None = None
    unit: str = ""
    scores: dict[str, dict[str, float]] = field(default_factory=dict)


def volume_readouts(
    prediction: np.ndarray, truth: np.ndarray | None = None, voxel: tuple[float, str] | None = None
) -> Readouts:
    """The whole volume's size and scores: `prediction` and `truth` have the same shape (anything > 0 is tumour);
    `voxel` is one voxel's volume and its unit (`layers.voxel_volume`; None: the size in voxels only, as the review
    list gives it). They change only when a mask does, not on a slider step (`with_slice`)."""
    voxels = int(np.count_nonzero(prediction))
    result = Readouts(voxels) if voxel is None else Readouts(voxels, voxels * voxel[0], voxel[1])
    if truth is not None:
        result.scores["volume"] = volume_scores(prediction, truth).to_dict()
    return result


def with_slice(volume: Readouts, prediction: np.ndarray, truth: np.ndarray | None,
               shown: tuple[int, int] | None) -> Readouts:
    """`volume` (left as it is) plus the scores of the slice `shown` (axis, index: `layers.current_slice`) of the
    masks it was computed from."""
    result = replace(volume, scores=dict(volume.scores))
    if truth is not None and shown is not None:
        axis, index = shown
        # 'slice 12' across the scan's slice axis (the first), 'slice 12 along axis 1' across another on the slider
        scores = volume_scores(np.take(prediction, index, axis), np.take(truth, index, axis))
        result.scores[f"slice {index}{along_axis(axis)}"] = scores.to_dict()
    return result


def along_axis(axis: int) -> str:
    """How slices across data axis `axis` are told from the scan's own (across the first axis), which need no word."""
    return "" if axis == 0 else f" along axis {axis}"


NO_TRUTH = "Pick a ground-truth labels layer to see Dice and IoU."


def readouts_text(readouts: Readouts, no_truth: str = NO_TRUTH) -> str:
    """The readouts as lines, ending with `no_truth` when they hold no scores."""
    lines = [f"Tumour: {readouts.voxels} voxels"]
    if readouts.physical_size is not None:
        lines[0] += f" = {readouts.physical_size:.6g} {readouts.unit}"
    for scope, values in readouts.scores.items():
        lines.append(f"{scope}: " + "  ".join(f"{name} {values[name]:.3f}" for name in METRIC_NAMES))
    if not readouts.scores:
        lines.append(no_truth)
    return "\n".join(lines)


def write_readouts_csv(path: str | Path, readouts: Readouts, image_name: str, truth_name: str) -> Path:
    """One row per scope, columns: image, ground_truth, scope, the metrics, tumour voxels and physical size.

    `.csv` is added to a name without it, never swapped for another extension (`scores.v2` would have overwritten
    a `scores.csv` beside it); the file is written atomically; a folder or an empty name is an InputError."""
    path = Path(path)
    if not path.name or path.is_dir():
        raise InputError(f"{path} is a folder: give the readouts a file name, e.g. {path / 'readouts.csv'}")
    if path.suffix.lower() != ".csv":
        path = path.with_name(f"{path.name}.csv")
    header = ["image", "ground_truth", "scope", *METRIC_NAMES, "tumour_voxels", "tumour_size", "unit"]
    size = "" if readouts.physical_size is None else readouts.physical_size
    rows = [[image_name, truth_name, scope, *(values[m] for m in METRIC_NAMES), readouts.voxels, size, readouts.unit]
            for scope, values in (readouts.scores or {"volume": {m: "" for m in METRIC_NAMES}}).items()]
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    write_text_atomic(path, text.getvalue())
    return path
