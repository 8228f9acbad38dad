"""OS file locks, which the system lets go when their holder dies: a killed run holds nothing, so what it left is
known to be left without guessing from process ids or ages. An output folder's lock (`folder_lock`) and a writer's
hold on its temporary file (`atomic`) are made of these."""

from __future__ import annotations

import os
import sys
import weakref
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

    _HELD: weakref.WeakSet[IO[Any]] = weakref.WeakSet()  # the handles this process holds a lock with

    def try_lock(handle: IO[Any]) -> bool:
        """Lock `handle`'s file for this handle alone (another handle of the same process is refused too), without
        waiting; False if another holds it. A file system without locks raises its OSError."""
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        _HELD.add(handle)
        return True

    def unlock(handle: IO[Any]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        _HELD.discard(handle)

    def _let_go_in_child() -> None:
        """In a forked child (a DataLoader worker), point each held lock's descriptor at /dev/null. A flock belongs
        to the open file, which a fork shares: the workers of a killed training kept its folder's lock until they
        noticed their parent was gone (about 5 s), and `--resume` at once was refused as "in use". The child never
        writes what its parent locked, and its descriptors keep their numbers, so its copies of the handles stay
        valid."""
        for handle in list(_HELD):
            if not handle.closed:  # closed without unlock: the lock went with it, and the number may be reused
                null = os.open(os.devnull, os.O_RDWR)
                os.dup2(null, handle.fileno(), inheritable=False)  # as Python opened it (PEP 446)
                os.close(null)
        _HELD.clear()

    os.register_at_fork(after_in_child=_let_go_in_child)
