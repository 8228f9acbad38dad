"""How work made of many items honours a stop asked part-way: the one rule for the phases that are not steps or
batches (scans prepared, validation variants made, folders listed, precision timings).

Drivers hand the engine a `stop` callable (the Train widget's Stop button, the CLI's Ctrl-C / SIGTERM). Such work asks
it before each item and, asked to stop, raises `Stopped` instead of returning half its result: a half-listed folder or
half a timing would be taken for the whole. The generator that started the work ends on it (`train.train_model` with
its `Finished`), so the stop comes within one item, not after the whole phase (seconds to minutes).
"""

from __future__ import annotations

import contextlib
import signal
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGUSR1")  # Ctrl-C, the scheduler's stop, SLURM's warning before pre-emption


class Stopped(Exception):
    """Raised where a stop was asked between the items of some work: no error, and nothing of that work is kept."""


def check_stop(stop: Callable[[], bool] | None) -> None:
    """Raise `Stopped` when `stop` (None: nothing can ask) says to stop."""
    if stop is not None and stop():
        raise Stopped


def unless_stopped(items: Iterable[T], stop: Callable[[], bool] | None) -> Iterator[T]:
    """`items` one by one, with `stop` asked before each (`check_stop`); the caller's loop ends in `Stopped`."""
    for item in items:
        check_stop(stop)
        yield item


def stop_signals() -> list[int]:
    return [getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name)]  # no SIGUSR1 on Windows


def ignore_stop_signals() -> None:
    """Ignore the stop signals in this process from now on: SIG_IGN, which Python keeps to its very end (a handler of
    its own it sets back to the system's default, death by the signal, while it shuts down)."""
    for number in stop_signals():
        signal.signal(number, signal.SIG_IGN)


@contextlib.contextmanager
def stop_signals_held(stopped: Callable[[], bool] | None = None,
                      ignore_once_stopped: bool = False) -> Iterator[Callable[[], None]]:
    """Hold the stop signals back until the `release` it yields is called, then deliver them to the handlers set
    inside the block (those in place before it, where the block ends first): while torch loads, a Ctrl-C raised
    inside its import was swallowed there (leaving numpy half-made, so a later import failed with a RecursionError)
    or thrown through its C++ code (the process aborted with a core dump). Held by a handler that only notes them,
    not by the thread's signal mask: the system hands a process's signal to any thread that does not block it (numpy's
    and torch's own threads), and Python then ran the handler in force, raising inside the import all the same. Main
    thread only (Python's rule for handlers).

    Once `stopped()` (None: nothing in the block answers a stop) says a stop was answered inside the block, the
    signals noted since are dropped: delivered again, a second Ctrl-C raised in the first one's clean-up. With
    `ignore_once_stopped` (a program that ends on that stop) they are then ignored for good (`ignore_stop_signals`)
    instead of going back to the handlers in place before: a Ctrl-C raised in Python's exit hooks printed "Exception
    ignored in atexit callback ... KeyboardInterrupt", or killed the process by SIGINT (exit code -2, not 130)."""
    held: list[int] = []
    previous = {number: signal.signal(number, lambda number, _frame: held.append(number)) for number in stop_signals()}

    def release() -> None:
        numbers = dict.fromkeys(held)
        held.clear()
        for number in numbers:
            signal.raise_signal(number)  # the handler in place now answers it

    try:
        yield release
    finally:
        ended_by_a_stop = stopped is not None and stopped()
        for number, old in previous.items():
            signal.signal(number, signal.SIG_IGN if ended_by_a_stop and ignore_once_stopped else old)
        if ended_by_a_stop:
            held.clear()
        release()  # those noted after it: a handler set inside the block gave this one back as it ended
