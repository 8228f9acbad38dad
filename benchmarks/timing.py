"""The one timing rule of our benchmarks: best of N runs, since other processes only ever make a run slower."""

from __future__ import annotations

import time
from typing import Callable

from napari_lgg_unet.engine.device import cpu_model  # noqa: F401 (the benchmarks' import of it)


def best_of(repeats: int, run: Callable[[], object], warm_up: bool = True, budget_s: float = 30.0) -> float:
    """Seconds of the fastest of `repeats` runs, after one untimed run (kernel selection, first-touch memory).
    Stops early once `budget_s` is spent (at least one timed run), so a path that is emulated on this CPU (bf16
    without bf16 units runs many times slower) costs one or two runs, not minutes."""
    deadline = time.perf_counter() + budget_s
    if warm_up:
        run()
    times: list[float] = []
    while len(times) < repeats and (not times or time.perf_counter() < deadline):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)
