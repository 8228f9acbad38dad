"""The one timing rule of our benchmarks: best of N runs, since other processes only ever make a run slower."""

from __future__ import annotations

import time
from typing import Callable


def best_of(repeats: int, run: Callable[[], object], warm_up: bool = True) -> float:
    """Seconds of the fastest of `repeats` runs, after one untimed run (kernel selection, first-touch memory)."""
    if warm_up:
        run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)
