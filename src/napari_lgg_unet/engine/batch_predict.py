"""Segment a whole cohort as a batch job: the CLI's `predict` on a folder of cases.

Each process of a torchrun job takes a disjoint share of the cases; scans are read ahead while the model runs;
every mask is written atomically. A job killed half-way and started again with `skip_existing` keeps and skips
every finished mask. Each finished case appends its summary row to a per-process journal, so the summary CSV
written at the end lists the cases of every attempt, not only of the last one.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .atomic import write_text_atomic
from .cohort import segment_scans
from .distributed import Group
from .io import Scan, ScanSource, mask_file_name, write_mask
from .model import LoadedModel
from .predict import SegmentOptions

SUMMARY_FILE = "summary.csv"
JOURNAL_PATTERN = ".summary.rank*.csv"  # hidden, and not *.tmp: atomic.py's clean-up must not take them


@dataclass(frozen=True)
class CaseSummary:
    """One row of the summary: the tumour's size in voxels, and in mm^3 when the scan's voxel spacing is known."""

    case: str
    slices: int
    tumour_voxels: int
    tumour_mm3: float | None
    seconds: float


def finished_output(out_dir: Path, case: str) -> Path | None:
    """The finished mask of `case` in `out_dir`, whatever its format (a killed writer's temp files are hidden)."""
    return next((p for p in sorted(out_dir.glob(f"{glob.escape(case)}_mask.*")) if p.is_file()), None)


def segment_cohort(
    model: LoadedModel, cases: Sequence[ScanSource], out_dir: Path, options: SegmentOptions,
    group: Group = Group(), skip_existing: bool = False, read_ahead: int = 2,
) -> Iterator[CaseSummary | None]:
    """Segment this process's share of `cases` into `out_dir`, yielding a summary per case (None when skipped).

    All or nothing unless `skip_existing`: if a case fails, the masks this call wrote and their summary rows are
    removed, so a half-done cohort is not mistaken for a finished one. With `skip_existing`, cases that already have a
    mask are not read and finished masks stay when a later case fails.
    """
    share = group.share(cases)  # shared out before anything is skipped, so every process agrees on its share
    todo = [c for c in share if not (skip_existing and finished_output(out_dir, c.name))]
    journal = out_dir / f".summary.rank{group.rank}.csv"
    written: list[Path] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    journal_size = journal.stat().st_size if journal.exists() else 0
    try:
        yield from (None for _ in range(len(share) - len(todo)))
        for done in segment_scans(model, todo, options, read_ahead=read_ahead):
            summary = _summarise(done.scan, done.result.mask, done.seconds)
            written.append(out_dir / mask_file_name(done.scan))
            write_mask(written[-1], done.result.mask, done.scan)
            with open(journal, "a", encoding="utf-8", newline="") as handle:
                csv.writer(handle).writerow(asdict(summary).values())
            yield summary
    except BaseException:
        if not skip_existing:
            for path in written:
                path.unlink(missing_ok=True)
            if journal_size:
                os.truncate(journal, journal_size)  # rows of earlier attempts stay
            else:
                journal.unlink(missing_ok=True)
        raise


def write_summary(out_dir: Path, cases: Sequence[ScanSource], group: Group = Group()) -> Path | None:
    """After every process finished: rank 0 writes `summary.csv` (one row per case with a mask, in case order)
    from the journals of this and earlier attempts, then removes the journals. Returns its path on rank 0."""
    group.barrier()
    if not group.is_main:
        return None
    rows: dict[str, list[str]] = {}
    previous = [out_dir / SUMMARY_FILE] + sorted(out_dir.glob(JOURNAL_PATTERN))
    for path in previous:
        with contextlib.suppress(OSError), open(path, encoding="utf-8", newline="") as handle:
            for row in csv.reader(handle):
                if len(row) == len(CaseSummary.__dataclass_fields__) and row[0] != "case":
                    rows[row[0]] = row  # a later attempt's row wins; a torn last line is dropped
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CaseSummary.__dataclass_fields__)
    for case in cases:
        if finished_output(out_dir, case.name):
            writer.writerow(rows.get(case.name, [case.name]))
    summary = out_dir / SUMMARY_FILE
    write_text_atomic(summary, buffer.getvalue())
    for journal in previous[1:]:
        journal.unlink(missing_ok=True)
    return summary


def _summarise(scan: Scan, mask: np.ndarray, seconds: float) -> CaseSummary:
    voxels = int(np.count_nonzero(mask))
    spacing = scan.spacing  # mm per (Z, H, W) axis, known for medical volume formats
    mm3 = round(voxels * math.prod(spacing), 3) if spacing else None
    return CaseSummary(scan.name, 1 if mask.ndim == 2 else len(mask), voxels, mm3, round(seconds, 3))
