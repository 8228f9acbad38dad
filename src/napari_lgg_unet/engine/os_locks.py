"""OS file locks, which the system lets go when their holder dies: a killed run holds nothing, so what it left is
known to be left without guessing from process ids or ages. An output folder's lock (`folder_lock`) and a writer's
hold on its temporary file (`atomic`) are made of these."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO, Any


def same_file(handle: IO[Any], path: Path) -> bool:
    """Whether `path` still names the file `handle` holds, not one put there since, and is not gone."""
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.lstat(path))
    except OSError:
        return False


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def try_lock(handle: IO[Any]) -> bool:
        """Lock `handle`'s file (its first byte) for this handle alone, without waiting; False if another holds it."""
        try:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def unlock(handle: IO[Any]) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def try_lock(handle: IO[Any]) -> bool:
        """Lock `handle`'s file for this handle alone (another handle of the same process is refused too), without
        waiting; False if another holds it. A file system without locks raises its OSError."""
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def unlock(handle: IO[Any]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
