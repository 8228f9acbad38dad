"""How work made of many items honours a stop asked part-way: the one rule for the phases that are not steps or
batches (scans prepared, validation variants made, folders listed, precision timings).

Drivers hand the engine a `stop` callable (the Train widget's Stop button, the CLI's Ctrl-C / SIGTERM). Such work asks
it before each item and, asked to stop, raises `Stopped` instead of returning half its result: a half-listed folder or
half a timing would be taken for the whole. The generator that started the work ends on it (`train.train_model` with
its `Finished`), so the stop comes within one item, not after the whole phase (seconds to minutes).
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")


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
