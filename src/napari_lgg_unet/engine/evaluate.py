"""Per-patient evaluation of a model against ground-truth masks, in the JSON shape the CLI writes.

Input variants are proxies for the scans users bring, built from scans that have masks: `flair-only` keeps the
FLAIR channel alone (a single-sequence user), `skull-stripped` zeroes every channel outside an approximate brain
mask from the scan itself (the look of BraTS-style research data).
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from typing import Iterator, Sequence

from .errors import InputError
from .cohort import PATIENT_FOLDERS, SAME_PATIENTS, check_same_cases, segment_scans
from .distributed import Group
from .formats import scan_name
from .io import ScanSource, check_masks
from .metrics import Scores, summarise, volume_scores
from .model import LoadedModel
from .outputs import where
from .predict import SegmentOptions
from .settings import option_and_flag


@dataclass
class PatientResult:
    name: str
    scores: Scores
    slices: int
    seconds: float


_SCORES = len(fields(Scores))  # the numbers of a patient's Scores, as gather_results sends them


def evaluate_patients(
    model: LoadedModel, folders: Sequence[ScanSource], options: SegmentOptions, variant: str = "as-is",
    group: Group = Group(),
) -> Iterator[PatientResult]:
    """Segment each patient (loaded one at a time, transformed as `variant`) and score it against its masks; with a
    torchrun job's `group`, only this process's share of the patients (`gather_results` then collects them all).

    Patients without a manual mask are refused all together when this is called (io.check_masks), not when the
    results get to the first of them, after the model has segmented the others; so is a job whose processes list
    other patients than rank 0."""
    folders = list(folders)
    _check_unique_names(folders)
    check_masks(folders)
    check_same_cases(group, folders, SAME_PATIENTS, **{option_and_flag("variant", flag="--input-variant"): variant})
    return _scored(model, group.share(folders), options, variant, group)


def _check_unique_names(folders: list[ScanSource]) -> None:
    """Refuse two patients of one name (two folders each holding a `P1`): a patient's scores are reported under its
    name (`report`), so one hid the other, and the means left it out while the count said both."""
    seen: dict[str, ScanSource] = {}
    for folder in folders:
        if (name := scan_name(folder)) in seen:
            raise InputError(f"two patients are named {name} ({where(seen[name])} and {where(folder)}), and scores are "
                             "reported by patient name, so one would hide the other; evaluate their folders in "
                             f"separate runs, each given as {PATIENT_FOLDERS}, or rename one")
        seen[name] = folder


def _scored(model: LoadedModel, folders: list[ScanSource], options: SegmentOptions, variant: str, group: Group
            ) -> Iterator[PatientResult]:
    with group.own_failures():  # a patient of this process's share: no other process can say which failed, or why
        for done in segment_scans(model, folders, options, require_masks=True, variant=variant):
            scan = done.scan
            yield PatientResult(scan.name, volume_scores(done.result.mask, scan.mask), len(scan.image), done.seconds)


def gather_results(group: Group, folders: Sequence[ScanSource], mine: list[PatientResult]) -> list[PatientResult]:
    """Every patient's result in the order of `folders`, on every process, where each process scored its share
    (`evaluate_patients` with the group): sent as numbers (`Group.gather`), named after `folders`."""
    if group.world == 1:
        return mine
    rows = group.gather([[*astuple(r.scores), r.slices, r.seconds] for r in mine], len(folders), _SCORES + 2)
    return [PatientResult(scan_name(folder), Scores(*row[:_SCORES]), int(row[_SCORES]), row[_SCORES + 1])
            for folder, row in zip(folders, rows)]


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
