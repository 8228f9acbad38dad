"""Helpers for widget tests: dock through the manifest, layer snapshots, an event-loop probe, a job that waits."""

from __future__ import annotations

import gc
import sys
import threading
import time
import traceback

import numpy as np
from qtpy.QtCore import QTimer

PLUGIN = "napari-lgg-unet"


def dock(viewer, name: str):
    """Dock a widget the way napari's Plugins menu does, through the manifest."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    return widget


def snapshot(viewer) -> list[tuple]:
    """Names, types, data and metadata of every layer, to prove an error changed nothing."""
    return [(layer.name, type(layer).__name__, np.array(layer.data, copy=True), dict(layer.metadata))
            for layer in viewer.layers]


def assert_unchanged(before: list[tuple], after: list[tuple]) -> None:
    assert [b[:2] for b in before] == [a[:2] for a in after]
    for b, a in zip(before, after):
        np.testing.assert_array_equal(b[2], a[2])
        assert b[3] == a[3]


def follow_placement_fix(viewer, advice: str, labels, reference) -> None:
    """Do what a refusal's advice (widgets/layers.placement_fix) says, with napari's own layer list menu actions,
    after checking that the advice names them as napari titles them, so it cannot drift from the menu."""
    from napari._app_model.actions._layerlist_context_actions import LAYERLIST_CONTEXT_SUBMENUS
    from napari._app_model.constants import MenuId
    from napari._qt._qapp_model.qactions._layerlist_context import Q_LAYERLIST_CONTEXT_ACTIONS

    actions = {action.id: action for action in Q_LAYERLIST_CONTEXT_ACTIONS}
    copy_menu = next(item.title for _, item in LAYERLIST_CONTEXT_SUBMENUS
                     if item.submenu == MenuId.LAYERS_CONTEXT_COPY_SPATIAL)
    copy, paste = actions["napari.layer.copy_all_to_clipboard"], actions["napari.layer.paste_spatial_from_clipboard"]
    assert (f"right-click '{reference.name}' in the layer list > {copy_menu} > {copy.title}, then right-click "
            f"'{labels.name}' > {paste.title}") in advice
    copy.callback(reference)
    viewer.layers.selection = {labels}
    paste.callback(viewer.layers)


def settle(qtbot, widget, timeout: int = 120_000) -> None:
    """Wait until the Segment widget's new clean-up, its clicks (queued ones included) and the pieces of the user's
    painting are all shown."""
    corrections = widget.corrections
    qtbot.waitUntil(lambda: not widget.cleanup_job.running and not corrections.job.running and not corrections._queue
                    and not widget.listing_job.running, timeout=timeout)


def bright_square_scan(seed: int) -> np.ndarray:
    """A small random 3-slice scan with a bright square, which a tiny test model segments in a fraction of a second."""
    image = np.random.default_rng(seed).random((3, 64, 64), dtype=np.float32)
    image[..., 20:40, 20:40] += 2.0
    return image


def segment_and_settle(qtbot, widget) -> None:
    """Press Segment and wait until the segmentation and what follows it are shown."""
    widget.segment_button.clicked()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    settle(qtbot, widget)


def wait_for_stop(*, stop):
    """A job that runs until it is asked to stop (polling, as the engine's loops do between steps)."""
    yield "started"
    while not stop():
        time.sleep(0.005)


# Longest event-loop stall a test accepts while a job runs. Segmenting or training on the GUI thread stalls it for
# seconds; what remains is drawing: under xvfb's software OpenGL, adding the tumour layer measured 150-260 ms on
# 2 idle AMD EPYC cores (2026-11-29), so 250 ms failed one run in four without any job on the GUI thread.
MAX_EVENT_LOOP_GAP = 0.5


class EventLoopProbe:
    """A 10 ms QTimer; the longest gap between its ticks is how long the event loop was blocked.

    The garbage the earlier tests of a whole suite left is collected before it starts: a full collection of it
    (hundreds of tests' viewers, models and arrays) is the suite's pause, not the widget's. For the message of a
    failed check, `report()` says how long the longest collection during the probe took and what every thread was
    doing during the longest stall (sampled by a watchdog thread): that is how a worker holding the GIL while it
    saved a checkpoint was found."""

    def __init__(self) -> None:
        self.max_gap = 0.0
        self.longest_collection = 0.0
        self.stall_stack = ""
        self._collecting = 0.0
        self._last = time.perf_counter()
        self._timer = QTimer()
        self._timer.setInterval(10)
        self._timer.timeout.connect(self._tick)
        self._gui_thread = threading.get_ident()
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, daemon=True)
        self._longest_sampled = 0.0

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            stalled = time.perf_counter() - self._last
            if stalled > 0.15 and stalled > self._longest_sampled:
                self._longest_sampled = stalled
                frames = sys._current_frames()
                self.stall_stack = f"{stalled * 1000:.0f} ms into a stall:\n" + "\n".join(
                    f"thread {ident}{' (GUI)' if ident == self._gui_thread else ''}:\n"
                    + "".join(traceback.format_stack(frame)[-6:])
                    for ident, frame in frames.items() if ident != threading.get_ident())

    def _collection(self, phase: str, _info: dict) -> None:
        if phase == "start":
            self._collecting = time.perf_counter()
        else:
            self.longest_collection = max(self.longest_collection, time.perf_counter() - self._collecting)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.max_gap = max(self.max_gap, now - self._last)
        self._last = now

    def __enter__(self) -> "EventLoopProbe":
        gc.collect()
        gc.callbacks.append(self._collection)
        self._last = time.perf_counter()
        self._timer.start()
        self._watchdog.start()
        return self

    def report(self) -> str:
        return (f"longest event-loop gap {self.max_gap * 1000:.0f} ms, longest garbage collection "
                f"{self.longest_collection * 1000:.0f} ms\n{self.stall_stack}")

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._watchdog.join()
        self._timer.stop()
        gc.callbacks.remove(self._collection)
