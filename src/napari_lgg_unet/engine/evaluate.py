"""Per-patient evaluation of a model against ground-truth masks, in the JSON shape the CLI writes.

Input variants are proxies for the scans users bring, built from scans that have masks: `flair-only` keeps the
FLAIR channel alone (a single-sequence user), `skull-stripped` zeroes every channel outside an approximate brain
mask from the scan itself (the look of BraTS-style research data).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .augment import FLAIR
from .brain_mask import brain_mask
from .errors import InputError
from .io import load_patient
from .metrics import Scores, summarise, volume_scores
from .model import LoadedModel
from .predict import segment_volume
from .preprocess import channel_view

INPUT_VARIANTS = ("as-is", "flair-only", "skull-stripped")


@dataclass
class PatientResult:
    name: str
    scores: Scores
    slices: int
    seconds: float


def input_variant(image: np.ndarray, rgb: bool | None, variant: str) -> tuple[np.ndarray, bool]:
    """`image` transformed as `variant` (one of INPUT_VARIANTS) as (Z, H, W, C), and whether the last axis holds
    channels (so `segment_volume(model, *input_variant(...))` reads it right)."""
    if variant not in INPUT_VARIANTS:
        raise InputError(f"unknown input variant {variant!r}; choose one of {', '.join(INPUT_VARIANTS)}")
    view = channel_view(image, rgb)  # (Z, H, W, C), C = 1 (FLAIR) or 3
    flair = view[..., FLAIR if view.shape[-1] == 3 else 0]
    if variant == "flair-only":
        return flair, False
    if variant == "skull-stripped":
        return view * brain_mask(flair)[..., None].astype(view.dtype), True
    return view, True


def evaluate_patients(
    model: LoadedModel, folders: list[Path], variant: str = "as-is", **segment_options
) -> Iterator[PatientResult]:
    """Segment each patient folder (loaded one at a time), transformed as `variant`, and score it against its masks."""
    for folder in folders:
        scan = load_patient(folder, require_masks=True)
        image, rgb = input_variant(scan.image, scan.rgb, variant)
        started = time.perf_counter()
        result = segment_volume(model, image, rgb=rgb, **segment_options)
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
