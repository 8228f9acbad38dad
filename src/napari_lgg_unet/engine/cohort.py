"""Segment many scans one after another: the one loop that `predict`, `evaluate` and `calibrate` share."""

from __future__ import annotations

import itertools
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

from .distributed import Group
from .errors import InputError
from .formats import scan_name
from .io import Scan, ScanSource, load_scan
from .model import LoadedModel
from .predict import Segmentation, SegmentOptions, segment_volume
from .settings import option_and_flag
from .variants import input_variant

PATIENT_FOLDERS = option_and_flag("folders", flag="--data")  # what evaluate and calibrate take, as messages name it
SAME_PATIENTS = (f"every process of a job needs the same {PATIENT_FOLDERS} (a shared file system on a cluster) and "
                 "the same options")  # a torchrun job's advice when its processes list other patients


@dataclass
class SegmentedScan:
    scan: Scan
    result: Segmentation
    seconds: float


def segment_scans(
    model: LoadedModel, paths: Iterable[ScanSource], options: SegmentOptions, require_masks: bool = False,
    variant: str = "as-is", read_ahead: int = 0,
) -> Iterator[SegmentedScan]:
    """Load each scan only when its turn comes (memory holds one scan), segment it, and time the model alone.

    `variant` segments a shift proxy of each scan instead (see `variants.INPUT_VARIANTS`). With `read_ahead` > 0 a
    background thread loads up to that many next scans while the model runs (memory holds 1 + read_ahead scans);
    reading errors still surface here, in order.
    """
    for scan in loaded_scans(paths, require_masks, read_ahead):
        yield segment_scan(model, scan, options, variant)


def check_same_cases(group: Group, cases: Sequence[ScanSource], advice: str, **facts: Any) -> None:
    """Refuse, on every process, a job whose processes list other cases (names, order) or other `facts` than rank 0:
    each takes every N-th case of its own list (`Group.share`), so another list left cases undone or done twice, and
    rank 0 reported them under other names (see `Group.check_same`; `advice` ends the refusal)."""
    group.check_same({**facts, "cases": {scan_name(case): position for position, case in enumerate(cases)}}, advice)


def segment_scan(model: LoadedModel, scan: Scan, options: SegmentOptions, variant: str = "as-is") -> SegmentedScan:
    """One loaded scan segmented and timed; a refusal names the scan, since a cohort's error must say which."""
    image, rgb = input_variant(scan.image, scan.rgb, variant)
    started = time.perf_counter()
    try:
        result = segment_volume(model, image, options, rgb=rgb)
    except InputError as error:
        raise InputError(f"{scan.name}: {error}") from None
    return SegmentedScan(scan, result, time.perf_counter() - started)


def loaded_scans(paths: Iterable[ScanSource], require_masks: bool, ahead: int) -> Iterator[Scan]:
    """Scans in order; with `ahead` > 0, reading overlaps the caller's work on the previous scan."""
    pending = iter(paths)
    if ahead <= 0:
        for path in pending:
            yield load_scan(path, require_mask=require_masks)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lgg-unet-read") as reader:
        queue: deque[Future] = deque(
            reader.submit(load_scan, p, require_masks) for p in itertools.islice(pending, ahead)
        )
        try:
            while queue:
                scan = queue.popleft().result()
                queue.extend(reader.submit(load_scan, p, require_masks) for p in itertools.islice(pending, 1))
                yield scan
        finally:
            for future in queue:  # the caller stopped early: read nothing more
                future.cancel()
