"""A folder held by one job at a time (an output folder; the cache folder while a run updates its remembered
precision): an OS file lock in a hidden `.lock` file, and a clean retreat.

The lock is an OS file lock, so the system releases it when a run is killed: a stale lock is taken over without
guessing from process ids. The `.lock` file may be the user's (a name anyone can use): one holding other text, a
link (symbolic or hard) or a folder is refused and left as it is, and it is never opened through a link. A job that
fails or is refused removes what it made (the lock file and the folders it created, while empty) before it lets go,
so a failed first run leaves nothing behind and a refused one leaves the folder as it was, even when other jobs race
for the same folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from .atomic import make_folders, other_owner, remove_empty_folders, remove_leftover_temp_files
from .errors import FolderInUse, InputError
from .os_locks import same_file, try_lock, unlock

LOCK_FILE = ".lock"
LOCK_TEXT = "{task} (process {pid})"  # what a run writes into its lock while it holds it, and empties at the end
# A lock of ours: LOCK_TEXT or empty (what a killed run or an ended one leaves). Bounded, so that reading
# _LOCK_READ characters sees the whole of any file that matches.
_OUR_LOCK = re.compile(r"(.{1,200} \(process \d{1,10}\))?")
_LOCK_READ = 256
_LOCK_ATTEMPTS = 5  # to take a lock file that failing holders keep removing (see _release)
_POLL_SECONDS = 0.02  # how often a caller that waits for a held lock tries it again


@dataclass
class FolderHold:
    """The lock a job holds on a folder (`held_folder`): `keep` takes it again where the folder was deleted."""

    lock: Path
    task: str
    handle: IO[str]
    created: bool  # whether this job created the lock file it holds (so removes it if the job fails)
    make_folders: Callable[[], None]

    def keep(self) -> None:
        """Make sure the lock still guards the folder, before the job writes into it. A folder deleted while its job
        held it (its lock file with it) was made again by the job's next write, without a lock: the job held a lock on
        a deleted file, and a second job took the folder and wrote into it too. Taken again here (the folder made
        anew); refused (FolderInUse) where another job took the folder in between, whose files are left alone."""
        if same_file(self.handle, self.lock):
            return
        self.created = False  # a lock file of that name now is not the one this job made: never removed for it
        try:
            self.make_folders()
            handle, self.created = _take(self.lock, self.make_folders, 0.0)
        except FolderInUse:
            raise FolderInUse(f"{self.lock.parent} was deleted while this {self.task} held it, and another job holds "
                              f"it now: this {self.task} ends without writing there; choose another folder") from None
        _name_task(handle, self.task)
        _release(self.handle, None)
        self.handle = handle


@contextlib.contextmanager
def held_folder(path: Path, task: str, wait: float = 0.0) -> Iterator[FolderHold]:
    """Make `path` (and its missing parents) and hold its lock for `task` (which a refused second job is told).

    A lock another process holds is refused at once (FolderInUse), or once `wait` seconds have passed without it
    being let go: jobs of minutes refuse, a short update of a shared file (the remembered precision) waits its turn.

    What this call created is removed again when the block fails: the lock file, then each folder it made, from
    the deepest, while it is empty, all before the lock is let go (a job taking the folder then finds it gone and
    makes it anew, as its own). So a refused or failed first run leaves no empty folders behind (not even the
    parents of `train --out a/b/c`), and a refused run leaves an existing folder as it was.
    """
    made: list[Path] = []  # the folders this call created, top first; grows if a failing holder removes them

    def make() -> None:
        made.extend(make_folders(path))

    try:
        make()
        with _lock_file(path / LOCK_FILE, task, made, make, wait) as hold:
            yield hold
    except BaseException:
        remove_empty_folders(made)  # those made before the lock was taken: a refusal (or a file in the way)
        raise


@contextlib.contextmanager
def _lock_file(path: Path, task: str, made: list[Path], make_folders: Callable[[], None],
               wait: float) -> Iterator[FolderHold]:
    """Hold the lock file `path` for `task`, naming the task in it. When the block fails, the lock file (if this
    call created it) and the empty folders in `made` (the caller's, top first) are removed before the lock is let go.
    `make_folders` makes the folder again if a failing holder removed it while this call waited."""
    hold = FolderHold(path, task, *_take(path, make_folders, wait), make_folders)
    failed = False
    try:
        _name_task(hold.handle, task)
        remove_leftover_temp_files(path.parent)
        yield hold
    except BaseException:
        failed = True
        raise
    finally:
        hold.handle.truncate(0)
        _release(hold.handle, (path if hold.created else None, made) if failed else None)


def _name_task(handle: IO[str], task: str) -> None:
    """Write `task` and this process into the lock file `handle` holds: what a refused second job is told."""
    handle.seek(0)
    handle.truncate()
    handle.write(LOCK_TEXT.format(task=task, pid=os.getpid()))
    handle.flush()


def _take(path: Path, make_folders: Callable[[], None], wait: float) -> tuple[IO[str], bool]:
    """The lock file opened and held, and whether this call created it. Refused: a lock another process holds
    after `wait` seconds (naming its task), and anything that is not a lock of ours (a link, a folder, a file with
    other text: someone's own, so it is left untouched)."""
    deadline, attempts, created_while_waiting = time.monotonic() + wait, 0, False
    while attempts < _LOCK_ATTEMPTS:
        opened = _open_lock(path)
        if opened is None:  # a failing holder removed the folder it made: make it anew
            make_folders()
            attempts += 1
            continue
        handle, created = opened
        if not try_lock(handle):  # another run locked the file, perhaps the one this call created: still ours
            created_while_waiting |= created
            _refuse_once_waited(handle, path, deadline)
            continue
        created |= created_while_waiting
        if same_file(handle, path):
            break
        _release(handle, None)  # its holder removed it after this call opened it: the folder is free, open it anew
        attempts += 1
    else:  # a file system that reports no stable file identity, or runs that keep coming and failing
        raise InputError(f"{path} keeps being replaced while this run takes it; wait for other runs into "
                         f"{path.parent} to end or choose another folder")
    text = _read(handle)
    if text is not None and _OUR_LOCK.fullmatch(text):
        return handle, created
    _release(handle, None)
    raise InputError(_not_ours(path, "a file holding other text"))


def _refuse_once_waited(handle: IO[str], path: Path, deadline: float) -> None:
    """Close `handle`, a lock another process holds; refuse (naming its task) once `deadline` has passed, else wait a
    moment before the caller tries again (the lock file is opened anew: its holder may remove it)."""
    text = _read(handle)
    handle.close()
    if time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
        return
    holder = text if text and _OUR_LOCK.fullmatch(text) else "run (another process)"
    raise FolderInUse(f"{path.parent} is in use by another {holder}; wait for it to end or choose another folder")


def _open_lock(path: Path) -> tuple[IO[str], bool] | None:
    """`path` opened for reading and writing, created if missing, never through a link: its target, perhaps any
    file of the user's, would be written. O_NOFOLLOW closes the gap between the check and the open where the system
    has it. A hard link is refused too: the file has another name, perhaps an empty file of the user's, which an
    empty lock of ours cannot be told from, and a run writes its name into the lock (and a killed run leaves it
    there). Returns the file and whether this call created it (O_EXCL says so, where a check before would race
    another run), or None when the folder is gone (a failing holder removed it)."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISREG(mode):
            kind = "a symbolic link" if stat.S_ISLNK(mode) else "a folder" if stat.S_ISDIR(mode) else "no plain file"
            raise InputError(_not_ours(path, kind))
    flags = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        try:
            descriptor, created = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o666), True
        except FileExistsError:
            descriptor, created = os.open(path, flags), False
    except FileNotFoundError:  # the folder, or the file found a moment ago, was removed by a failing holder
        return None
    except OSError as error:  # another user's lock; a read-only folder; a link or folder put there since the check
        raise _refusal(path, error) from None
    if os.fstat(descriptor).st_nlink > 1:  # checked on the file opened, so a link made since the lstat is caught
        os.close(descriptor)
        raise InputError(_not_ours(path, "a hard link (one of several names of a file)"))
    return os.fdopen(descriptor, "r+", encoding="utf-8", errors="replace"), created


def _refusal(path: Path, error: OSError) -> InputError:
    """Why the lock file `path` cannot be opened for writing. One that another user owns (a colleague's run in a
    shared lab folder, made under a umask that keeps others from writing it, 0600 or 0644) is named with its owner,
    and with whether their run still holds the folder where the file can be read to tell: "Permission denied" said
    neither whose it was nor that it might be a live run's. Its owner is asked to remove it only once their run has
    ended: a new run beside a live one whose lock was removed would take a new lock, and two runs would write one
    folder. Anything else (a read-only folder) is refused in the system's words."""
    owner = other_owner(path)
    if owner is None:
        return InputError(f"cannot open the lock file {path}: {error.strerror or error}; choose another output folder")
    held, text = _their_hold(path)
    if held:
        return FolderInUse(f"{path.parent} is in use by {owner}'s {text or 'run'}; wait for it to end or choose "
                           "another folder")
    state = ("and its run has ended; ask them to remove it" if held is False
             else "which may still be running; once it has ended, ask them to remove it")
    return InputError(f"{path} belongs to {owner} and is not writable for you: the lock file a run of theirs left in "
                      f"{path.parent}, {state}, or choose another output folder")


def _their_hold(path: Path) -> tuple[bool | None, str | None]:
    """Whether a live run holds the lock file `path`, which this process may read but not write, and its text; None
    where it cannot be read either. Its lock is taken for a moment to tell, as `_take` takes a lock of ours."""
    try:
        handle = open(os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)),
                      encoding="utf-8", errors="replace")
    except OSError:
        return None, None
    with handle:
        text = _read(handle)
        text = text if text and _OUR_LOCK.fullmatch(text) else None
        try:
            free = try_lock(handle)
        except OSError:  # a file system without locks: no run can be told to hold it
            return None, text
        if free:
            unlock(handle)
        return not free, text


def _read(handle: IO[str]) -> str | None:
    """The lock's text (its start, if it is longer than a lock of ours), or None where it cannot be read: Windows
    refuses to read a byte another process has locked."""
    try:
        handle.seek(0)
        return handle.read(_LOCK_READ)
    except OSError:
        return None


def _not_ours(path: Path, kind: str) -> str:
    return (f"{path} is {kind}, not the lock file lgg-unet keeps in an output folder, and is left as it is; move or "
            "rename it, or choose another output folder")


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    def _release(handle: Any, remove: tuple[Path | None, list[Path]] | None) -> None:
        """Unlock and close, then remove `remove` (see `_remove_made`): Windows removes no open file, so this fails
        (and the file stays) when another process has opened it since, and no two runs ever hold two files of one
        name."""
        unlock(handle)
        handle.close()
        _remove_made(remove)

else:
    def _release(handle: Any, remove: tuple[Path | None, list[Path]] | None) -> None:
        """Remove `remove` (see `_remove_made`) while still holding the lock, then unlock and close: a run that opened
        it meanwhile finds it gone once it holds it (`same_file`) and opens the new one, so no two runs ever hold
        two files of one name; and it finds the folders gone too, so it makes them as its own, and removes them if
        it fails in turn (let go first, a folder held by that run could be removed by neither)."""
        _remove_made(remove)
        unlock(handle)
        handle.close()


def _remove_made(remove: tuple[Path | None, list[Path]] | None) -> None:
    """Remove what a failed run made: its lock file (None: one it found), then its folders while they are empty."""
    if remove is None:
        return
    lock, folders = remove
    if lock is not None:
        with contextlib.suppress(OSError):
            lock.unlink()
    remove_empty_folders(folders)
