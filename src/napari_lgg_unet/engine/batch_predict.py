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
from .cohort import loaded_scans, segment_scan
from .distributed import Group
from .io import Scan, ScanSource, mask_file_name, read_tiff, write_mask
from .outputs import check_output, check_unique_names
from .preprocess import spatial_shape
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

    Refused before anything is written: an `out_dir` on or in an input's files or case folders, and two cases of
    one name (see outputs.py). All or nothing unless `skip_existing`: if a case fails, the masks this call created
    and their summary rows are removed, so a half-done cohort is not mistaken for a finished one; masks an earlier
    run finished stay. With `skip_existing`, a case whose mask loads and lies on its scan's grid is not segmented
    again (a truncated, empty or mismatched mask is redone), and finished masks stay when a later case fails.
    """
    check_output(out_dir, cases, folder=True)
    check_unique_names(cases)
    journal = out_dir / f".summary.rank{group.rank}.csv"
    created = [] if out_dir.exists() else [out_dir]
    out_dir.mkdir(parents=True, exist_ok=True)
    journal_size = journal.stat().st_size if journal.exists() else 0
    try:
        for scan in loaded_scans(group.share(cases), False, read_ahead):
            target = out_dir / mask_file_name(scan)
            if skip_existing and mask_fits(target, scan):
                yield None
                continue
            done = segment_scan(model, scan, options)
            summary = _summarise(done.scan, done.result.mask, done.seconds)
            if not target.exists():
                created.append(target)
            write_mask(target, done.result.mask, done.scan)
            with open(journal, "a", encoding="utf-8", newline="") as handle:
                csv.writer(handle).writerow(asdict(summary).values())
            yield summary
    except BaseException:
        if not skip_existing:
            _remove_created(created, journal, journal_size)
        raise


def mask_fits(path: Path, scan: Scan) -> bool:
    """Whether `path` holds a finished mask of `scan`: it reads back whole, on the scan's grid (a NIfTI mask, as
    `mask_file_name` names those of scans with geometry) or with its slice count and size (a TIFF)."""
    if not path.is_file():
        return False
    try:
        if scan.geometry is not None:
            import nibabel as nib  # not loaded for TIFF-only work

            from .volumes import Geometry, same_grid

            image = nib.load(path, mmap=False)
            voxels = np.asanyarray(image.dataobj)  # reads (and decompresses) every byte
            return voxels.ndim == 3 and same_grid(Geometry.of(image.shape, image.affine), scan.geometry)
        mask, shape = read_tiff(path), spatial_shape(scan.image, scan.rgb)
        return mask.size == math.prod(shape) and mask.shape[-2:] == shape[-2:]
    except Exception:  # whatever fails to read back (truncated, empty, not a mask) is no finished mask: redo it
        return False


def _remove_created(created: list[Path], journal: Path, journal_size: int) -> None:
    """Undo a failed run: its rows in the journal, the masks it created, and the output folder if it made it."""
    if journal_size:
        os.truncate(journal, journal_size)  # rows of earlier attempts stay
    else:
        journal.unlink(missing_ok=True)
    for path in reversed(created):
        with contextlib.suppress(OSError):  # another process may still be writing into the folder
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink(missing_ok=True)


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
