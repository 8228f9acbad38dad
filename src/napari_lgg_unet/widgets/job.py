"""One background job at a time per dock widget: start, stop, running state, and every error as a notification.

Why errors need care here: napari's thread workers (superqt's `GeneratorWorker.work`) read a RuntimeError raised
by the generator as "this worker's Qt object was deleted": `WorkerBase.run` then prints a RuntimeWarning and returns
without emitting `errored` or `finished`. RecursionError, NotImplementedError and torch's OutOfMemoryError are
RuntimeErrors, so such an error reached no notification and a widget waiting for `finished` stayed "running" for
good; an exception outside `Exception` would escape the worker altogether. So every job runs inside `guarded`, which
turns anything the job raises into a `JobFailed` item and ends normally: the worker never sees an exception and
`finished` always fires.

Why an aborted worker closes its job: when the app quits, napari asks every thread worker to `quit()` and waits for
their threads (`wait_for_workers_to_quit` on `aboutToQuit`). `GeneratorWorker.work` then leaves its loop between two
items without closing the generator, so the job's `finally` blocks (a training run's lock, the removal of a run
folder that holds nothing yet, the freeing of device memory) waited for the garbage collector, perhaps past the
process's end: a stale lock and a folder holding only it were left behind. So the worker's `aborted` signal closes
the job in the worker's thread (a direct connection) before the thread ends: at most the item in progress (one
training step) delays the quit.
"""

from __future__ import annotations

import sys
import threading
import warnings
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterator

from magicgui.widgets import Container
from napari.qt.threading import GeneratorWorker, create_worker
from qtpy.QtCore import Qt

from ..engine.errors import InputWarning, describe
from . import notify
from .undock import when_undocked


@dataclass(frozen=True)
class JobFailed:
    """Yielded by `guarded` in place of the exception the job raised."""

    error: BaseException


def guarded(job: Callable[..., Iterator], *args: Any, **kwargs: Any) -> Iterator:
    """The items of `job(*args, **kwargs)`, then one `JobFailed` if it raised anything."""
    try:
        yield from job(*args, **kwargs)
    except GeneratorExit:  # the generator is being closed, which is no error
        raise
    except BaseException as error:  # every error must reach the user; see the module docstring
        if isinstance(error.__context__, GeneratorExit):  # its clean-up failed while it was closed: no item can go
            raise
        yield JobFailed(error)


def _relayed(items: Iterator) -> Iterator:
    """`items`, for a thread worker: it makes its generator by calling a generator function, and a job made here
    instead stays in JobRunner's hands, to be closed when the worker is aborted (see the module docstring)."""
    yield from items


def _close(items: Iterator) -> None:
    """Close a job whose worker napari quit, in the worker's thread. The app is quitting, so a job whose own clean-up
    fails then can no longer be a notification: it is one line on stderr. Raised out of this Qt callback instead, it
    would abort the whole process under Python's default error hook (PyQt calls qFatal)."""
    try:
        items.close()
    except BaseException as error:
        sys.stderr.write(f"lgg-unet: a background job failed while it was closed at quit: {describe(error)}\n")


class JobRunner:
    """Runs `job(*args, stop=...)` for one widget in a napari thread worker.

    The job is a generator that ends soon after `stop()` returns True. Its items reach `on_item` on the GUI thread;
    an error (in the job or in `on_item`) becomes one notification and stops it, then reaches `on_error` (if given:
    a widget that showed in advance what the job was to make, such as a new threshold, takes it back there);
    `on_done` runs last whatever happened. `on_running(True/False)` lets the widget switch its buttons. The job is
    asked to stop when the widget is taken out of its dock (napari's close button) or destroyed (viewer closed);
    once destroyed, nothing more reaches the widget.

    `in_thread = False` runs the job to its end inside `start`, items and `on_done` included: tests of a widget's
    logic drive it that way, deterministically, while a few end-to-end tests keep the real threads.
    """

    in_thread = True

    def __init__(self, widget: Container, on_running: Callable[[bool], None]) -> None:
        self._on_running = on_running
        self._stop = threading.Event()
        self._worker: GeneratorWorker | None = None
        self._alive = True
        when_undocked(widget.native, self.stop)
        widget.native.destroyed.connect(self._destroyed)  # a bound method: see undock._Connections

    @property
    def running(self) -> bool:
        return self._worker is not None

    def start(
        self, job: Callable[..., Iterator], *args: Any, on_item: Callable[[Any], None],
        on_done: Callable[[], None] | None = None, on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        if self.running:
            raise RuntimeError("a job is already running; the widget must check `running` first")
        self._stop.clear()
        deliver = partial(self._deliver, on_item=on_item, on_error=on_error)
        if not self.in_thread:
            self._run_here(guarded(job, *args, stop=self._stop.is_set), deliver, on_done)
            return
        items = guarded(job, *args, stop=self._stop.is_set)
        worker = create_worker(_relayed, items, _start_thread=False, _ignore_errors=True)
        worker.aborted.connect(partial(_close, items), Qt.ConnectionType.DirectConnection)  # see the module docstring
        worker.yielded.connect(deliver)
        worker.warned.connect(self._warned)
        worker.finished.connect(lambda: self._finished(on_done))
        self._worker = worker
        self._on_running(True)
        worker.start()

    def _run_here(self, items: Iterator, deliver: Callable[[Any], None], on_done: Callable[[], None] | None) -> None:
        """The thread worker's sequence of calls, on this thread (see `in_thread`)."""
        self._worker = items
        self._on_running(True)
        with warnings.catch_warnings():  # as superqt's `WorkerBase.run` does around the job
            warnings.simplefilter("always")
            warnings.showwarning = lambda *shown: self._warned(shown)
            for item in items:
                deliver(item)
        self._finished(on_done)

    @staticmethod
    def _warned(shown: tuple) -> None:
        """A warning the job gave, with `warnings.showwarning`'s arguments: the worker catches every warning and
        emits them as `warned`, which napari's own relay never received (its mixin's __init__ is not reached), so the
        engine's InputWarnings (a guess or a cache the user should know of) vanished. They are a notification here,
        as they are a line on the command line; other warnings go to stderr, as Python shows them (written here:
        `warnings.showwarning` is the worker's own while a job runs, and would send them back to this method)."""
        message, category, filename, lineno, *_ = shown
        if issubclass(category, InputWarning):
            notify.show_warning(str(message))
        else:
            sys.stderr.write(warnings.formatwarning(message, category, filename, lineno))

    def stop(self) -> None:
        """Ask the job to end at its next check; `on_done` still runs once it has."""
        self._stop.set()

    @property
    def stop_asked(self) -> bool:
        """Whether the last job was asked to stop (Cancel, or the widget taken out of its dock): an `on_done` that
        would start a follow-up job should not."""
        return self._stop.is_set()

    def _deliver(self, item: Any, on_item: Callable[[Any], None],
                 on_error: Callable[[BaseException], None] | None) -> None:
        if not self._alive:
            return
        if isinstance(item, JobFailed):
            error = item.error
        else:
            try:
                on_item(item)
                return
            except Exception as failed:  # a GUI-side failure: say so once and stop, rather than fail on every item
                self.stop()
                error = failed
        notify.report_error(error)
        if on_error is not None:
            on_error(error)

    def _finished(self, on_done: Callable[[], None] | None) -> None:
        self._worker = None
        if self._alive:
            self._on_running(False)
            if on_done is not None:
                on_done()

    def _destroyed(self, *_: object) -> None:
        self._alive = False
        self.stop()

