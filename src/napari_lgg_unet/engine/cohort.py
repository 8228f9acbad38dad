"""Segment many scans one after another: the one loop that `predict`, `evaluate` and `calibrate` share."""

from __future__ import annotations

import itertools
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from .errors import InputError
from .io import Scan, load_scan
from .model import LoadedModel
from .predict import Segmentation, SegmentOptions, segment_volume


@dataclass
class SegmentedScan:
    scan: Scan
    result: Segmentation
    seconds: float


def segment_scans(
    model: LoadedModel, paths: Iterable[Path], options: SegmentOptions, require_masks: bool = False,
    read_ahead: int = 0,
) -> Iterator[SegmentedScan]:
    """Load each scan only when its turn comes (memory holds one scan), segment it, and time the model alone.

    With `read_ahead` > 0 a background thread loads up to that many next scans while the model runs (memory holds
    1 + read_ahead scans); reading errors still surface here, in order.
    """
    for path, scan in _loaded(paths, read_ahead):
        if require_masks and scan.mask is None:
            raise InputError(f"{path} has no tumour masks to compare with")
        started = time.perf_counter()
        result = segment_volume(model, scan.image, options, rgb=scan.rgb)
        yield SegmentedScan(scan, result, time.perf_counter() - started)


def _loaded(paths: Iterable[Path], ahead: int) -> Iterator[tuple[Path, Scan]]:
    """(path, scan) in order; with `ahead` > 0, reading overlaps the caller's work on the previous scan."""
    pending = iter(paths)
    if ahead <= 0:
        for path in pending:
            yield path, load_scan(path)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lgg-unet-read") as reader:
        queue: deque[tuple[Path, Future]] = deque((p, reader.submit(load_scan, p)) for p in itertools.islice(pending, ahead))
        try:
            while queue:
                path, future = queue.popleft()
                scan = future.result()
                for following in itertools.islice(pending, 1):
                    queue.append((following, reader.submit(load_scan, following)))
                yield path, scan
        finally:
            for _, future in queue:  # the caller stopped early: read nothing more
                future.cancel()
