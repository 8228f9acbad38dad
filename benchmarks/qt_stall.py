"""How long napari's event loop could not react: a 10 ms Qt timer's longest gap. Imports nothing heavy, so it can
measure a session before PyTorch is loaded (benchmarks/first_dock_stall.py)."""

from __future__ import annotations

import time

from qtpy.QtCore import QEventLoop, QTimer

TICK_MS = 10


class Heartbeat:
    """A Qt timer whose longest gap between ticks (since the last `reset`) is the longest stall of the event loop."""

    def __init__(self) -> None:
        self.timer, self.last, self.longest = QTimer(), time.perf_counter(), 0.0
        self.timer.timeout.connect(self._tick)
        self.timer.start(TICK_MS)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.longest, self.last = max(self.longest, now - self.last), now

    def reset(self) -> None:
        self.last, self.longest = time.perf_counter(), 0.0


def run_until(done) -> None:
    """Run the event loop until `done()`, idle between events (a processEvents() spin would take a core)."""
    loop, timer = QEventLoop(), QTimer()
    timer.timeout.connect(lambda: done() and loop.quit())
    timer.start(TICK_MS)
    loop.exec()
    timer.stop()
