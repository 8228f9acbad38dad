"""One listing of a folder of scans reads each folder once: what a folder holds is asked several times while it is
listed (which format claims it, its case, whether it is one scan), and for a DICOM folder each answer read every
file's header again (in one process, 15 opens per file of a 4-series study).

The memory lasts for one `listing` block only, and a folder's answer only while its files keep their names, sizes
and modification times: a later listing sees the folder as it is then. Light on purpose (no SimpleITK): io.py
enters the block for TIFF-only work too.
"""

from __future__ import annotations

import contextlib
import os
from contextvars import ContextVar
from pathlib import Path
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")
_FolderState = tuple[tuple[str, int, int], ...]
_ANSWERS: ContextVar[dict[tuple[str, Path, _FolderState], object] | None] = ContextVar("lgg_unet_listing",
                                                                                       default=None)


@contextlib.contextmanager
def listing() -> Iterator[None]:
    """Within the block (also a decorator), `read_once` reads a folder once. Nested blocks share the outermost
    one's answers; each thread (a widget's worker) has its own."""
    if _ANSWERS.get() is not None:
        yield
        return
    token = _ANSWERS.set({})
    try:
        yield
    finally:
        _ANSWERS.reset(token)


def read_once(what: str, folder: Path, read: Callable[[Path], T]) -> T:
    """`read(folder)` (`what` names the reading), or, inside a `listing` block, its earlier answer for the folder
    as it is now. The caller must not change the answer: it is shared."""
    answers = _ANSWERS.get()
    if answers is None:
        return read(folder)
    key = (what, folder.absolute(), _folder_state(folder))
    if key not in answers:
        answers[key] = read(folder)
    return answers[key]  # type: ignore[return-value]


def _folder_state(folder: Path) -> _FolderState:
    """The name, size and modification time of each file in `folder` (none when it is no folder): what an answer
    about it stays valid for. Stat calls only: no file is opened."""
    try:
        with os.scandir(folder) as entries:
            return tuple(sorted((entry.name, info.st_size, info.st_mtime_ns)
                                for entry in entries if entry.is_file() for info in [entry.stat()]))
    except OSError:
        return ()
