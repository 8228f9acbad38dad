"""Segment a whole cohort as a batch job: the CLI's `predict` on a folder of cases.

Each process of a torchrun job takes a disjoint share of the cases; scans are read ahead while the model runs;
every mask is written atomically. An output folder that already holds a file the job would write (a case's mask,
`summary.csv`) is refused unless the caller says what to do with it: `existing="skip"` keeps and skips every finished
mask (a job killed half-way continues), `existing="overwrite"` replaces them; the folder may hold the user's own
masks, so replacing them is never the default. Each finished case appends its summary row to a per-process journal,
so the summary CSV written at the end lists the cases of every attempt, not only of the last one. One job at a time
writes a folder (rank 0 holds its lock, as a training run holds its folder's): two jobs into one folder would remove
each other's masks when one fails and consume each other's summary rows.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import shutil
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Literal, Sequence, get_args

import numpy as np

from .atomic import (atomic_path, check_replaceable, missing_folders, other_owner, remove_empty_folders,
                     write_text_atomic)
from .cohort import check_same_cases, loaded_scans, segment_scan
from .distributed import Group
from .errors import InputError, LggUnetError, few_names
from .formats import FORMATS, file_format, scan_name
from .io import Scan, ScanSource, read_tiff, source_mask_name, write_mask
from .outputs import check_output, check_unique_names
from .preprocess import spatial_shape
from .model import LoadedModel
from .predict import SegmentOptions
from .run_folder import RunFolder
from .settings import READ_AHEAD, option_and_flag

SUMMARY_FILE = "summary.csv"
COHORT_TASK = "cohort prediction"  # what a second job into the same folder is told holds it
JOURNAL_PATTERN = ".summary.rank*.csv"  # hidden, and not *.tmp: atomic.py's clean-up must not take them
ExistingOutputs = Literal["refuse", "skip", "overwrite"]  # what a cohort run does with files it would write
SKIP = option_and_flag("existing", "skip", flag="--skip-existing")  # as messages name it to API and CLI users alike
OVERWRITE = option_and_flag("existing", "overwrite", flag="--overwrite")
_OUTPUT = option_and_flag("out_dir", flag="--output")
_SAME_CASES = (f"every process of a job needs the same {option_and_flag('cases', flag='--input')} and the same "
               f"{_OUTPUT}, on a shared file system on a cluster, and the same options")  # a torchrun job's advice
_FITS, _MISFIT, _NO_MASK = 1.0, -1.0, 0.0  # a case's mask under --skip-existing (`_fits_of_share`), to be gathered


@dataclass(frozen=True)
class CaseSummary:
    """One row of the summary: the tumour's size in voxels, and in mm^3 when the scan's geometry is known."""

    case: str
    slices: int
    tumour_voxels: int
    tumour_mm3: float | None
    seconds: float


def case_mask(out_dir: Path, case: ScanSource) -> Path | None:
    """The file in `out_dir` that is `case`'s mask: --skip-existing keeps it where it fits the scan and refuses it
    where not, the summary describes it. It is the first of `case_masks`: the file a run writes the mask as
    (`source_mask_name`) where that is there, else the first of the case's other mask names."""
    return next(iter(case_masks(out_dir, case)), None)


def case_masks(out_dir: Path, case: ScanSource) -> list[Path]:
    """Every file in `out_dir` that is a mask of `case` (`_mask_names`, in that order), the one rule of every part of
    a cohort run: the refusal names them all, --overwrite replaces them with the one it writes (`mask_target`,
    `_write_case_mask`), leaving one mask of the case. An earlier version wrote an NRRD or MHA scan's mask as
    `.nii.gz`, and a folder may hold it beside the `.nrrd` a later run wrote. A link counts whether or not its target
    is there (the user's link to a mask on a drive not plugged in); a killed writer's temp files are hidden."""
    return [path for path in _mask_names(out_dir / source_mask_name(case)) if os.path.lexists(path)]


def mask_target(out_dir: Path, case: ScanSource) -> Path:
    """The file a run writes `case`'s mask to: the first of its masks already in `out_dir` (`case_masks`) of the
    format the run writes (`.tiff` for `.tif`, `.nii` for `.nii.gz`, `.mha` for `.nrrd`), so a run adds no second
    mask of a case, else the name a run gives it (`source_mask_name`), and its other masks go once the new one is
    written (`_write_case_mask`). A mask's format is the one that holds its scan's geometry: an earlier
    version's `.nii.gz` of an NRRD scan, rewritten where it was, held its 64-bit origin in 32 bits, and ITK's filters
    refused the new mask with its scan; a NIfTI scan's `.nrrd` was refused for a header ITK places otherwise.
    Decided from the folder as it was before the run, so every process of a job names a case's mask alike: only one
    writes it."""
    named = out_dir / source_mask_name(case)
    return next((path for path in case_masks(out_dir, case) if file_format(path) is file_format(named)), named)


def _mask_names(target: Path) -> list[Path]:
    """`target`, a case's mask as a run names it, then its name with every other suffix a mask of that case can be
    written as: the volume formats' (`.nii.gz`, `.nii`, `.nrrd`, `.mha`) for a volume's, which keep its geometry, and
    TIFF's (`.tif`, `.tiff`) for a TIFF's or Kaggle patient's. Any other `<case>_mask.*` is no mask of the case: a
    `.png` or `.nii.gz.bak` is nothing lgg-unet writes or reads back as a mask, a volume's TIFF would have lost its
    geometry and a TIFF case has none to keep; such a file is the user's own, and a run neither names nor touches it."""
    kind = file_format(target)
    stem = target.name[: -len(kind.suffix_of(target))]
    names = (target.with_name(stem + suffix)
             for other in FORMATS if other.is_volume == kind.is_volume for suffix in other.mask_suffixes)
    return [target, *(path for path in names if path != target)]


def segment_cohort(
    model: LoadedModel, cases: Sequence[ScanSource], out_dir: Path, options: SegmentOptions,
    group: Group = Group(), existing: ExistingOutputs = "refuse", read_ahead: int = READ_AHEAD,
) -> Iterator[CaseSummary | None]:
    """Segment this process's share of `cases` into `out_dir`, yielding a summary per case (None when skipped), then
    write `summary.csv` (write_summary), all while rank 0 holds the folder's lock: `claimed_output` around
    `ClaimedOutput.segment`, for a caller that has its model already.

    Refused before anything is written: see `claimed_output`. All or nothing unless `existing="skip"`: if a case
    fails, the masks this call created and their summary rows are removed (by every rank, when a case fails on
    one), so a half-done cohort is not mistaken for a finished one; masks it replaced (`"overwrite"`) stay, new, with
    their rows. With `"skip"`, a case whose mask loads and lies on its scan's grid is not segmented again, a file of
    its mask's name that does not is refused before any case is segmented (`_kept_masks`), and finished masks stay
    when a later case fails. A case's mask is the file `case_mask` finds, of its name or another format of its
    case's: a rerun over an earlier version's folder (NRRD scans' masks written as `.nii.gz`) keeps it where it fits,
    and `"overwrite"` replaces it (`mask_target`: where it is, or by one of the format that keeps the scan's geometry),
    writing no second mask of a case.
    """
    with claimed_output(out_dir, cases, group, existing) as claimed:
        yield from claimed.segment(model, options, read_ahead)


class SummaryStopped(KeyboardInterrupt):
    """Ctrl-C while `summary.csv` was written: every mask is finished and stays, which the message says (a caller
    reporting what a stopped cohort lost passes this one on as it is)."""


class SummaryFailed(LggUnetError):
    """`summary.csv` could not be written (a full disk) after every mask was: they stay, which the message says with
    the error (a caller reporting what a failed cohort removed passes this one on as it is)."""


class CleanUpStopped(KeyboardInterrupt):
    """A second Ctrl-C while a stopped (or failed) run removed the masks it made: some stay, and the message names
    them and says what the same command does with them (a caller passes this one on as it is)."""


@dataclass(frozen=True)
class ClaimedOutput:
    """An output folder that `claimed_output` holds for a cohort run of `cases`."""

    out_dir: Path
    cases: Sequence[ScanSource]
    group: Group
    existing: ExistingOutputs

    def segment(self, model: LoadedModel, options: SegmentOptions, read_ahead: int = READ_AHEAD
                ) -> Iterator[CaseSummary | None]:
        """What `segment_cohort` does once the folder is claimed."""
        yield from _segment_share(model, self.cases, self.out_dir, options, self.group, self.existing, read_ahead)
        earlier = _file_stat(self.out_dir / SUMMARY_FILE)
        try:
            write_summary(self.out_dir, self.cases, self.group)
        except KeyboardInterrupt:  # every mask is finished and stays
            raise SummaryStopped(_summary_left(self.out_dir, earlier)) from None
        except (LggUnetError, OSError) as error:  # the same: said as the run's masks removed, they were kept
            raise SummaryFailed(f"{error}; {_summary_left(self.out_dir, earlier, failed=True)}") from error


def _file_stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None


def _summary_left(out_dir: Path, earlier: os.stat_result | None, failed: bool = False) -> str:
    """What a stop (or an error: `failed`) while `summary.csv` was written left of it, told by the file on disk, not by
    where it came: the new summary (renamed into place before it), or, since it is written atomically, nothing or the
    `earlier` run's file, whole and unchanged, which a user must not take for this run's."""
    now = _file_stat(out_dir / SUMMARY_FILE)
    if now is not None and (earlier is None or not os.path.samestat(earlier, now)):
        return f"every mask is in {out_dir} and {SUMMARY_FILE} was written before the {'error' if failed else 'stop'}"
    left = "there is none" if now is None else "the one there is still an earlier run's, without this run's results"
    ended = "failed" if failed else "was stopped"
    return (f"every mask is in {out_dir}, but writing {SUMMARY_FILE} {ended}, so {left}; segment again with {SKIP} to "
            "write it (no finished mask is redone)")


@contextlib.contextmanager
def claimed_output(out_dir: Path, cases: Sequence[ScanSource], group: Group = Group(),
                   existing: ExistingOutputs = "refuse") -> Iterator[ClaimedOutput]:
    """Hold `out_dir` for a cohort run of `cases` (rank 0 holds its lock) after refusing, in this order: an `out_dir`
    on or in an input's files or case folders and two cases of one name (see outputs.py); a folder another job is
    writing (the real reason when it also holds masks: they may be that job's); a summary.csv, journal or (with
    `existing="overwrite"`) case's mask that a shared folder keeps for another user (`_check_replaceable`); in every
    mode a mask or summary that is no file (`_check_files`), with `existing="refuse"` an `out_dir` that already holds
    a file the run would write (check_outputs_free), with `"skip"` a summary.csv lgg-unet did not write.

    It reads no scan and needs no model, so a caller that has none yet claims first and loads it after (the CLI). A
    refusal leaves the folder as it was (the lock removes what it created), and so does a failure under torchrun:
    rank 0's lock removes the folders it made only while empty, and may let go before another process removed its
    masks, so each process removes them too once its own masks are gone. Rank 0 checks the files under the lock
    while the other processes wait for its verdict, so under torchrun no process mistakes another's new mask for an
    old one.
    """
    if existing not in get_args(ExistingOutputs):
        raise ValueError(f"existing must be one of {get_args(ExistingOutputs)}, not {existing!r}")
    check_output(out_dir, cases, folder=True)
    check_unique_names(cases)
    unmade = missing_folders(out_dir)  # asked before check_same, which rank 0 (that makes them) passes after all
    # each rank takes every N-th case of its own list: other lists (another --input) left cases unsegmented, other
    # folders (another --output) scattered the masks, and rank 0 still said every case was done
    check_same_cases(group, cases, _SAME_CASES,
                     **{_OUTPUT: os.path.abspath(out_dir), "what to do with existing masks": existing})
    with contextlib.ExitStack() as held:

        def claim() -> None:
            held.enter_context(RunFolder(out_dir).locked(COHORT_TASK))
            _check_replaceable(out_dir, cases, existing)
            _check_existing(out_dir, cases, existing)

        try:
            group.on_main(claim)
            yield ClaimedOutput(out_dir, cases, group, existing)
        except BaseException:
            if not group.is_main:  # rank 0's lock removed them while empty, perhaps before this process's masks went
                remove_empty_folders(unmade)
            raise


def _segment_share(
    model: LoadedModel, cases: Sequence[ScanSource], out_dir: Path, options: SegmentOptions, group: Group,
    existing: ExistingOutputs, read_ahead: int,
) -> Iterator[CaseSummary | None]:
    journal = out_dir / f".summary.rank{group.rank}.csv"
    _unshare(journal)
    _check_journal_writable(journal)
    created: list[Path] = []
    journal_start = journal.stat() if journal.exists() else None
    replaced_rows: list[list[object]] = []  # rows of masks this call replaced: they stay if it fails
    try:
        kept = _kept_masks(out_dir, cases, group, read_ahead) if existing == "skip" else set()
        with group.own_failures():  # a case of this process's share: no other process can say which failed, or why
            share = group.share(cases)
            scans = loaded_scans([case for n, case in enumerate(share) if n not in kept], False, read_ahead)
            for n in range(len(share)):
                if n in kept:
                    yield None
                    continue
                scan = next(scans)
                done = segment_scan(model, scan, options)
                summary = _summarise(done.scan, done.result.mask, done.seconds)
                row: list[object] = list(asdict(summary).values())
                target, replacing = _write_case_mask(out_dir, share[n], done.result.mask, done.scan)
                if not replacing:
                    created.append(target)
                row += _mask_stamp(target)
                if replacing:
                    replaced_rows.append(row)
                with open(journal, "a", encoding="utf-8", newline="") as handle:
                    csv.writer(handle).writerow(row)
                yield summary
        group.barrier()  # inside the try: a rank whose peer failed learns it here, and removes its masks too
    except BaseException:
        if existing != "skip":
            _remove_created(out_dir, created, journal, journal_start, replaced_rows, existing)
        raise


def _write_case_mask(out_dir: Path, case: ScanSource, mask: np.ndarray, scan: Scan) -> tuple[Path, bool]:
    """Write `case`'s mask as `mask_target` names it, then remove the case's other masks it replaces (`case_masks`:
    an earlier version's `.nii.gz` beside a `.nrrd`, a `.tiff` beside a `.tif`), so one mask of the case is left, the
    new one: the file it was and whether it replaced any (a user's link to a missing mask too: replaced, asked with
    --overwrite), which a failed run keeps. Nothing is removed before the new mask is whole on disk."""
    old, target = case_masks(out_dir, case), mask_target(out_dir, case)
    write_mask(target, mask, scan)
    for path in old:
        if path != target:
            path.unlink(missing_ok=True)
    return target, bool(old)


def _unshare(journal: Path) -> None:
    """Make `journal`, when it is a link, a file of its own with the same rows: a run appends to it and cuts it back
    when it fails, which must not change the file behind another name (a `cp -al` backup of the folder taken after a
    killed run keeps a hard link to it; a symbolic link may lead to any file of the user's)."""
    try:
        info = journal.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) or info.st_nlink > 1:
        with atomic_path(journal) as tmp:
            shutil.copyfile(journal, tmp)


def _check_journal_writable(journal: Path) -> None:
    """Refuse, before any case is segmented, a journal this run may not append to: in a shared lab folder another
    user's run may have left it (0644 under their umask), and the first case's row failed with a bare "Permission
    denied" after minutes of work, its mask written but never summarised. Opening it to append changes nothing."""
    try:
        if not stat.S_ISREG(journal.lstat().st_mode):
            return  # none yet (made by the first row), or not a file: the append says what it is
        os.close(os.open(journal, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)))
    except FileNotFoundError:
        return
    except OSError as error:
        owner = other_owner(journal)
        if owner is None:
            raise InputError(f"cannot write {journal}, this run's hidden summary rows: {error.strerror or error}; make "
                             "it writable, or choose another output folder") from None
        raise InputError(f"{journal} belongs to {owner} and is not writable for you: the hidden summary rows a run of "
                         f"theirs left in {journal.parent}; ask them to finish it (their run again with "
                         f"{SKIP} writes summary.csv and removes it), or choose another output folder"
                         ) from None


def _check_replaceable(out_dir: Path, cases: Sequence[ScanSource], existing: ExistingOutputs) -> None:
    """Refuse, before any case is segmented, files this run replaces or removes where a shared folder (sticky bit)
    keeps them for another user: the summary files rank 0 writes once every case is done (`write_summary`), a
    colleague's summary.csv or a journal one of their runs' ranks left, and with `existing="overwrite"` the cases'
    masks. Refused only when written, they cost the whole cohort's segmentation, or each mask that case's. The masks
    asked about are the files the run writes (`mask_target`) and the cases' other masks it removes (`case_masks`): a
    colleague's file of a name no mask of the case takes stays, and is no reason to refuse."""
    masks = [path for case in cases for path in (mask_target(out_dir, case), *case_masks(out_dir, case))
             ] if existing == "overwrite" else []
    for path in dict.fromkeys([*_summary_files(out_dir), *masks]):
        check_replaceable(path)


def _check_files(out_dir: Path, cases: Sequence[ScanSource], existing: ExistingOutputs) -> None:
    """Refuse, before any case is segmented and whatever the run does with existing masks, a case's mask or summary
    file that is no file: a folder, a named pipe, a socket, a device, or a link to one. No mask or summary can be
    written in its place, and none is a mask --skip-existing can keep; --overwrite segmented other cases first, then
    failed ("Is a directory") and undid them, and must never remove a folder. The masks asked about are those the run
    reads, keeps or replaces (`case_mask`) and, with `existing="overwrite"`, every other mask of the case it removes
    (`case_masks`): --skip-existing leaves a folder of another mask name beside the mask it keeps as it is, and was
    refused for it. A link to a missing file is a file the user made (a mask on a drive not plugged in), which the
    other checks decide on."""
    every = existing == "overwrite"
    masks = [path for case in cases for path in case_masks(out_dir, case)[: None if every else 1]]
    paths = dict.fromkeys([*masks, *_summary_files(out_dir)])
    odd = [f"{path.name} ({_kind(path)})" for path in paths if os.path.exists(path)
           and not os.path.isfile(path)]
    if odd:
        it, is_not = ("it", "is not a file") if len(odd) == 1 else ("them", "are not files")
        raise InputError(f"{out_dir} holds {few_names(odd, shown=2)} where this run would write a case's mask or its "
                         f"summary, which {is_not}: neither {SKIP} nor {OVERWRITE} can keep or replace {it}; "
                         f"move {it} away, or choose another output folder")


def _kind(path: Path) -> str:
    """What a path that is no file is, in a user's words (a link is told by what it leads to)."""
    mode = path.stat().st_mode
    kinds = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a named pipe", stat.S_ISSOCK: "a socket"}
    return next((kind for test, kind in kinds.items() if test(mode)), "a device")


def _summary_files(out_dir: Path) -> list[Path]:
    """`summary.csv` (present or not), then every rank's journal in `out_dir`: what `write_summary` reads, replaces
    and removes."""
    return [out_dir / SUMMARY_FILE] + sorted(out_dir.glob(JOURNAL_PATTERN))


def _check_existing(out_dir: Path, cases: Sequence[ScanSource], existing: ExistingOutputs) -> None:
    _check_files(out_dir, cases, existing)
    if existing == "refuse":
        check_outputs_free(out_dir, cases)
    elif existing == "skip":
        check_summary_ours(out_dir)


def existing_outputs(out_dir: Path, cases: Sequence[ScanSource]) -> list[Path]:
    """The files already in `out_dir` that a run of `cases` would write, replace or keep: each case's masks
    (`case_masks`: of the name it is written as and of every other format its mask can take, a user's own mask of the
    case whatever its format) and `summary.csv`, links whose target is missing included: the run would replace them
    too. Other files are not ours."""
    if not out_dir.is_dir():
        return []
    masks = [path for case in cases for path in case_masks(out_dir, case)]
    summary = out_dir / SUMMARY_FILE
    return masks + ([summary] if os.path.lexists(summary) else [])


def check_outputs_free(out_dir: Path, cases: Sequence[ScanSource]) -> None:
    """Refuse an `out_dir` that holds files a run of `cases` would replace: they may be the user's own manual masks
    or summary, not an earlier run's, and nothing a user made is overwritten without being asked."""
    taken = existing_outputs(out_dir, cases)
    if taken:
        raise InputError(f"{out_dir} already holds {few_names([p.name for p in taken], shown=2)}, which this run would "
                         f"write; give {SKIP} to keep the masks that fit their scans and segment the rest, or "
                         f"{OVERWRITE} to replace them (both rewrite {SUMMARY_FILE})")


def check_summary_ours(out_dir: Path) -> None:
    """Refuse to continue into a folder whose `summary.csv` this tool did not write: `--skip-existing` keeps the
    masks but rewrites the summary, and a file of that name with another first line is the user's own."""
    summary = out_dir / SUMMARY_FILE
    if not os.path.lexists(summary):  # a link to a missing file is the user's too
        return
    header = None
    if summary.is_file():  # opening a named pipe would wait for a writer, forever
        try:
            with open(summary, encoding="utf-8", newline="") as handle:
                header = next(csv.reader(handle), None)
        except (OSError, UnicodeDecodeError, csv.Error):
            pass
    if header != list(CaseSummary.__dataclass_fields__):
        raise InputError(f"{summary} was not written by lgg-unet (its first line is not the summary's header) and "
                         f"{SKIP} would rewrite it; move it away, or give {OVERWRITE} to replace it")


def _kept_masks(out_dir: Path, cases: Sequence[ScanSource], group: Group, read_ahead: int) -> set[int]:
    """The positions in this process's share of `cases` of those whose mask in `out_dir` fits its scan (`mask_fits`):
    `--skip-existing` keeps them. A file of a case's mask name that does not fit (a hand-drawn mask on another grid, a
    file that does not read back, a link to a missing file) is refused, all of them in one line, before any case is
    segmented: our own masks are written whole (atomic_path), so such a file is someone's, and replacing it would lose
    it. Only the scans of cases whose mask file is there are read.

    Each process checks its share, and every process learns every verdict (a collective, so no process segments a case
    before all masks are checked): a refusal ends every process alike, said once per machine. Met by one process
    alone, it ended that one while the others waited for it at the next collective, until the launcher killed them
    (NCCL), or said only that another process had ended."""
    with group.own_failures():  # a scan of this process's share that cannot be read: its own to say
        fits = _fits_of_share(out_dir, group.share(cases), read_ahead)
    verdicts = group.gather([[fit] for fit in fits], len(cases), 1)
    misfits = [mask.name for case, (fit,) in zip(cases, verdicts)
               if fit == _MISFIT and (mask := case_mask(out_dir, case)) is not None]  # the file, of any format
    if misfits:
        raise InputError(f"{out_dir} holds {few_names(misfits, shown=2)}, not masks that fit their cases' scans "
                         f"(another grid or size, or not readable as a mask): they may be your own, and {SKIP} "
                         f"would replace them; move them away, or give {OVERWRITE} to replace them")
    return {n for n, fit in enumerate(fits) if fit == _FITS}


def _fits_of_share(out_dir: Path, share: Sequence[ScanSource], read_ahead: int) -> list[float]:
    """Whether each case of `share` has a mask in `out_dir` (`case_mask`) and whether it fits its scan, read only for
    those that have one: a mask that fits is kept, one that does not is refused, whatever its format (the run would
    replace it: `mask_target`), and a case without one is segmented."""
    masks = [case_mask(out_dir, case) for case in share]
    held = [n for n, mask in enumerate(masks) if mask is not None]
    fits = [_NO_MASK] * len(share)
    for n, scan in zip(held, loaded_scans([share[n] for n in held], False, read_ahead)):
        fits[n] = _FITS if mask_fits(masks[n], scan) else _MISFIT
    return fits


def mask_fits(path: Path, scan: Scan) -> bool:
    """Whether `path` holds a finished mask of `scan`: it reads back whole, on the scan's grid (a volume mask, as
    `mask_file_name` names those of scans with geometry) or with its slice count and size (a TIFF)."""
    if not path.is_file():
        return False
    try:
        if scan.geometry is not None:
            from .formats import read_volume  # not loaded for TIFF-only work
            from .volumes import same_grid

            volume = read_volume(path)  # reads (and decompresses) every byte
            return volume.data.ndim == 3 and same_grid(volume.geometry, scan.geometry)
        mask, shape = read_tiff(path), spatial_shape(scan.image, scan.rgb)
        return mask.size == math.prod(shape) and mask.shape[-2:] == shape[-2:]
    except Exception:  # whatever fails to read back (truncated, empty, not a mask) is no finished mask: redo it
        return False


def _remove_created(out_dir: Path, created: list[Path], journal: Path, journal_start: os.stat_result | None,
                    kept_rows: list[list[object]], existing: ExistingOutputs) -> None:
    """Undo a failed run: the masks it created, then its rows in the journal (the folder's lock removes the folder if
    this run made it and nothing else is left). The rows of masks it replaced (`kept_rows`) go back into the journal,
    so the summary still describes those masks.

    Masks go first: a second Ctrl-C half-way leaves masks that still have their rows (a row without its mask is left
    out of the summary), and it is a CleanUpStopped that names the masks left and what the same command does next.
    """
    try:
        for path in created:
            path.unlink(missing_ok=True)
    except KeyboardInterrupt:
        left = [path.name for path in created if path.exists()]
        if not left:  # the last one went: the run's masks were removed, as a plain stop says
            raise
        then = ("the same command replaces them, segmenting every case again" if existing == "overwrite" else
                f"the same command refuses them: give {SKIP} to keep them and segment the rest, or "
                f"{OVERWRITE} to segment every case again")
        raise CleanUpStopped("stopped again while the masks this run made were removed: "
                             f"{few_names(left, shown=2)} stay in {out_dir}, finished; {then}") from None
    _restore_journal(journal, journal_start)
    if kept_rows:
        with open(journal, "a", encoding="utf-8", newline="") as handle:
            csv.writer(handle).writerows(kept_rows)


def _restore_journal(journal: Path, start: os.stat_result | None) -> None:
    """Take this run's rows out of the journal: cut it back to its size at the start, when it is still that file;
    otherwise (removed during the run, perhaps made anew by this run's next row) it holds this run's rows only."""
    try:
        now = journal.stat()
    except FileNotFoundError:
        return
    if start is not None and start.st_size and os.path.samestat(start, now) and now.st_size >= start.st_size:
        os.truncate(journal, start.st_size)  # rows of earlier attempts stay
    else:
        journal.unlink(missing_ok=True)


def write_summary(out_dir: Path, cases: Sequence[ScanSource], group: Group = Group()) -> Path | None:
    """After every process finished: rank 0 writes `summary.csv` (one row per case with a mask, in case order)
    from the journals of this and earlier attempts, then removes the journals. Returns its path on rank 0.

    A case segmented by several attempts has a row in each; which describes its mask is told by the mask
    (`_row_for_mask`), not by the journal's rank: a rerun with fewer processes, or other shares, gives the case to
    another rank, and a higher rank's journal held a stale row that hid the new one."""
    group.barrier()
    if not group.is_main:
        return None
    previous = _summary_files(out_dir)
    attempts = _attempts(previous)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CaseSummary.__dataclass_fields__)
    for case in cases:
        name, mask = scan_name(case), case_mask(out_dir, case)
        if mask and mask.is_file():  # not a link to a missing file: it has no figures to describe
            writer.writerow(_row_for_mask(mask, attempts.get(name, []), name))
    summary = out_dir / SUMMARY_FILE
    write_text_atomic(summary, buffer.getvalue())
    for journal in previous[1:]:
        journal.unlink(missing_ok=True)
    return summary


@dataclass(frozen=True)
class _Attempt:
    """One attempt's row of a case, as read from `summary.csv` or a journal. `stamp`: its mask's (mtime ns, size)
    just after the mask was written; None for rows of `summary.csv` and of journals older than the stamp, which
    predate every stamped row. `order`: position in reading, the old rule for those (a later file wins)."""

    row: list[str]
    stamp: tuple[int, int] | None
    order: int


def _mask_stamp(mask: Path) -> list[int]:
    """What a journal row records of the mask it describes, the file just written: its modification time, set by
    the file system's clock, so one clock for every process and attempt writing the folder, and its size."""
    info = mask.stat()
    return [info.st_mtime_ns, info.st_size]


def _attempts(paths: Sequence[Path]) -> dict[str, list[_Attempt]]:
    """Every case's rows in `paths`: summary rows (`summary.csv`, journals of versions before the stamp) and
    journal rows with their mask's stamp; a torn last line, and a header, are dropped."""
    attempts: dict[str, list[_Attempt]] = {}
    for order, row in enumerate(row for path in paths for row in _csv_rows(path)):
        width = len(CaseSummary.__dataclass_fields__)
        stamp = row[width:]
        if len(row) in (width, width + 2) and row[0] != "case" and all(part.isdigit() for part in stamp):
            attempts.setdefault(row[0], []).append(
                _Attempt(row[:width], (int(stamp[0]), int(stamp[1])) if stamp else None, order))
    return attempts


def _csv_rows(path: Path) -> list[list[str]]:
    """The rows of `path`, none when it cannot be read (a journal removed meanwhile, a summary of another text)."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _row_for_mask(mask: Path, attempts: Sequence[_Attempt], name: str) -> list[str]:
    """The row of the attempt that wrote `mask` as it is on disk (its stamp is the file's); else the newest row: a
    stamped one by its mask's time, else the last read. `[name]` alone (figures lost, as `missing_figures` says)
    when there is none, or when the mask is newer than every stamped row: it was rewritten by an attempt killed
    before its row, and the rows describe masks that are gone."""
    info = mask.stat()
    on_disk = (info.st_mtime_ns, info.st_size)
    stamped = [attempt.stamp for attempt in attempts if attempt.stamp]
    if stamped and on_disk not in stamped and all(stamp[0] < on_disk[0] for stamp in stamped):
        return [name]
    best = max(attempts, default=None,
               key=lambda attempt: (attempt.stamp == on_disk, attempt.stamp or (-1, -1), attempt.order))
    return best.row if best else [name]


def missing_figures(out_dir: Path) -> str:
    """What to tell a user whose `summary.csv` lists cases by name only ("" when none): their masks are there, but
    their rows were lost, and a summary that looks complete would hide it."""
    try:
        with open(out_dir / SUMMARY_FILE, encoding="utf-8", newline="") as handle:
            unmeasured = [row[0] for row in csv.reader(handle) if len(row) == 1]
    except (OSError, UnicodeDecodeError, csv.Error):
        return ""
    if not unmeasured:
        return ""
    return (f"{SUMMARY_FILE} lists {len(unmeasured)} cases by name only ({few_names(unmeasured, shown=2)}): their "
            f"masks are there but their rows were lost (a run's hidden journal, {JOURNAL_PATTERN}, was removed, or a "
            "run was killed between a mask and its row); remove their masks and segment again with "
            f"{SKIP} to measure them")


def _summarise(scan: Scan, mask: np.ndarray, seconds: float) -> CaseSummary:
    voxels = int(np.count_nonzero(mask))
    mm3 = round(voxels * scan.voxel_volume, 3) if scan.voxel_volume is not None else None  # known for volume formats
    return CaseSummary(scan.name, 1 if mask.ndim == 2 else len(mask), voxels, mm3, round(seconds, 3))
