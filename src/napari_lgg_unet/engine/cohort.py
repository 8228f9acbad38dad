"""Segment many scans one after another: the one loop that `predict`, `evaluate` and `calibrate` share."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable, Iterator

from .io import Scan, ScanSource, load_scan
from .model import LoadedModel
from .predict import Segmentation, SegmentOptions, segment_volume
from .variants import input_variant


@dataclass
class SegmentedScan:
    scan: Scan
    result: Segmentation
    seconds: float


def segment_scans(
    model: LoadedModel, paths: Iterable[ScanSource], options: SegmentOptions, require_masks: bool = False,
    variant: str = "as-is",
) -> Iterator[SegmentedScan]:
    """Load each scan only when its turn comes (memory holds one scan), segment it, and time the model alone.

    `variant` segments a shift proxy of each scan instead (see `variants.INPUT_VARIANTS`).
    """
    for path in paths:
        scan = load_scan(path, require_mask=require_masks)
        image, rgb = input_variant(scan.image, scan.rgb, variant)
        started = time.perf_counter()
        result = segment_volume(model, image, options, rgb=rgb)
        yield SegmentedScan(scan, result, time.perf_counter() - started)
