"""Per-patient evaluation of a model against ground-truth masks, in the JSON shape the CLI writes.

Input variants are proxies for the scans users bring, built from scans that have masks: `flair-only` keeps the
FLAIR channel alone (a single-sequence user), `skull-stripped` zeroes every channel outside an approximate brain
mask from the scan itself (the look of BraTS-style research data).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import InputError
from .cohort import segment_scans
from .io import check_masks
from .metrics import Scores, summarise, volume_scores
from .model import LoadedModel
from .predict import SegmentOptions


@dataclass
class PatientResult:
    name: str
    scores: Scores
    slices: int
    seconds: float


def evaluate_patients(
    model: LoadedModel, folders: list[Path], options: SegmentOptions, variant: str = "as-is"
) -> Iterator[PatientResult]:
    """Segment each patient (loaded one at a time, transformed as `variant`) and score it against its masks.

    Patients without a manual mask are refused all together when this is called (io.check_masks), not when the
    results get to the first of them, after the model has segmented the others."""
    folders = list(folders)
    check_masks(folders)
    return _scored(model, folders, options, variant)


def _scored(model: LoadedModel, folders: list[Path], options: SegmentOptions, variant: str) -> Iterator[PatientResult]:
    for done in segment_scans(model, folders, options, require_masks=True, variant=variant):
        scan = done.scan
        yield PatientResult(scan.name, volume_scores(done.result.mask, scan.mask), len(scan.image), done.seconds)


def report(results: list[PatientResult]) -> dict:
    """{'mean_dice', 'median_dice', 'mean_iou', 'mean_accuracy', 'slices_per_second', 'patients': {...}}."""
    if not results:
        raise InputError("no patients with masks to evaluate")
    summary = summarise({r.name: r.scores for r in results})
    seconds = sum(r.seconds for r in results)
    return {
        "mean_dice": summary["mean_dice"],
        "median_dice": summary["median_dice"],
        "mean_iou": summary["mean_iou"],
        "mean_accuracy": summary["mean_accuracy"],
        "slices_per_second": float(sum(r.slices for r in results) / seconds) if seconds > 0 else 0.0,
        "patients": {
            r.name: {"dice": r.scores.dice, "iou": r.scores.iou, "accuracy": r.scores.accuracy, "slices": r.slices}
            for r in results
        },
    }
