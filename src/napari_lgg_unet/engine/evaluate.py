"""Per-patient evaluation of a model against ground-truth masks, in the JSON shape the CLI writes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import InputError
from .io import load_scan
from .metrics import Scores, summarise, volume_scores
from .model import LoadedModel
from .predict import segment_volume


@dataclass
class PatientResult:
    name: str
    scores: Scores
    slices: int
    seconds: float


def evaluate_patients(model: LoadedModel, folders: list[Path], **segment_options) -> Iterator[PatientResult]:
    """Segment each patient folder (loaded one at a time) and score it against its masks."""
    for folder in folders:
        scan = load_scan(folder, require_mask=True)
        started = time.perf_counter()
        result = segment_volume(model, scan.image, rgb=scan.rgb, **segment_options)
        seconds = time.perf_counter() - started
        yield PatientResult(scan.name, volume_scores(result.mask, scan.mask), len(scan.image), seconds)


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
