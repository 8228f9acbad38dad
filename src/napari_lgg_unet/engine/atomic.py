"""Write files so that a crash leaves either the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Iterator

from .errors import InputError, describe
from .os_locks import same_file, try_lock

if TYPE_CHECKING:
    import torch

TEMP_TAG = ".lgg-unet.tmp"  # in every temporary name of ours, so the clean-up never claims a file someone else made
# Windows removes and renames no open file (Python opens files without FILE_SHARE_DELETE): there a writer's open
# handle keeps its temporary file from the clean-up, and a lock would refuse the writer's own writes (Windows locks
# are mandatory). Elsewhere an open file can be removed, so the writer also holds an OS lock on it.
_OPEN_FILES_STAY = sys.platform == "win32"
_HOLD_ATTEMPTS = 5  # temporary files made in turn when a clean-up removes each in the moment before it is held
_NAME_MAX = 255  # bytes in one file name, on every file system we write to
# bytes of a target's name kept in its temporary name: the rest of that name is 23 bytes, a suffix up to 16 more
_TARGET_ROOM = _NAME_MAX - len(f"..{'x' * 8}{TEMP_TAG}") - 16
# `_temp_file`'s names: `.<target>.<mkstemp's random letters, digits, _>.lgg-unet.tmp<suffix>`
_TEMP_NAME = re.compile(rf"\.(?P<target>.+)\.[a-z0-9_]+{re.escape(TEMP_TAG)}(\.[A-Za-z0-9]+)*")
_QUIET_SECONDS = 600  # another file's temporary file untouched this long is no live save's (remove_leftover_temp_files)


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds.

    `suffix` ends the temporary name, for writers that pick the format from the name (nibabel, SimpleITK):
    `.mask.nii.gz.k2j4x7q1.lgg-unet.tmp.nii.gz`. A failure to write (a read-only folder, a full disk) is an
    InputError naming `target`, never the temporary file the user has not heard of. The folders it makes for
    `target` are removed again, while empty, when the write fails: a failed save leaves nothing behind.

    The temporary file is held (`_hold`) from its making until it has `target`'s name, so no clean-up removes it
    under a writer, however long the write takes. The block must write into the yielded path in place (open it and
    write, as tifffile, nibabel, SimpleITK and `open` do), never put a new file there: the hold is on the file.
    """
    target = Path(target)
    tmp_path: Path | None = None
    held: IO[Any] | None = None
    made: list[Path] = []
    written = False
    try:
        made = make_folders(target.parent)
        remove_leftover_temp_files(target.parent, target.name)  # a killed predict's P1 goes with P2, once quiet
        tmp_path, held = _temp_file(target, suffix)
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        if _OPEN_FILES_STAY:
            held.close()
        os.replace(tmp_path, target)  # elsewhere still held: a clean-up that found its old name finds it gone
        written = True
    except OSError as error:
        raise InputError(_write_refusal(target, error)) from None
    finally:
        if held is not None:
            held.close()
        if not written:
            if tmp_path is not None:
                tmp_path.unlink(missing_ok=True)
            remove_empty_folders(made)


def _write_refusal(target: Path, error: OSError) -> str:
    """Why `target` could not be written, in one line. A shared folder with the sticky bit (mode 1777: /tmp, many
    lab folders) lets only a file's owner replace or remove it, so replacing a colleague's file fails with
    "Operation not permitted", which said neither whose the file is nor what to do: that refusal names its owner."""
    owner = other_owner(target) if error.errno in (errno.EPERM, errno.EACCES) else None
    if owner is not None and _sticky(target.parent):
        return _kept_for_owner(target, owner)
    return f"cannot write {target}: {error.strerror or describe(error)}"


def check_replaceable(target: Path) -> None:
    """Refuse now, in the words a failed save would use, a file that a step at the end of a long run replaces or
    removes where a shared folder (sticky bit) keeps it for another user: a cohort's summary.csv and journals were
    refused only once every case was segmented. Nothing is tried: a file's owner, the folder's owner and root may
    replace it, anyone else may not."""
    owner = other_owner(target)
    if owner is not None and _sticky(target.parent) and not _owns_folder(target.parent):
        raise InputError(_kept_for_owner(target, owner))


def _kept_for_owner(target: Path, owner: str) -> str:
    """Why `target`, `owner`'s file in a sticky folder, cannot be written: the one line of a failed save and of
    `check_replaceable`."""
    return (f"cannot write {target}: it belongs to {owner}, and {target.parent} is a shared folder (sticky bit) "
            f"where only a file's owner may replace it; choose another output name or folder, or ask {owner} "
            "to remove it")


def _owns_folder(folder: Path) -> bool:
    """Whether this process may replace anyone's file in the sticky `folder`: as root, or as the folder's owner."""
    try:
        return os.geteuid() in (0, folder.stat().st_uid)
    except OSError:
        return False


def _sticky(folder: Path) -> bool:
    """Whether `folder` lets only a file's owner replace it; False where it cannot be told (then the system's words
    are given, as for any other failure)."""
    try:
        return bool(folder.stat().st_mode & stat.S_ISVTX)
    except OSError:
        return False


def other_owner(path: Path) -> str | None:
    """The name of the user who owns `path` when that is not this process's user (their uid where it has no name);
    None where it is ours, is gone, or the system has no file owners (Windows). The one place that names a file's
    owner in a refusal: a lock file (folder_lock), a journal (batch_predict), a file a save would replace (here)."""
    if not hasattr(os, "geteuid"):
        return None
    try:
        uid = path.lstat().st_uid
    except OSError:
        return None
    if uid == os.geteuid():
        return None
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return f"user {uid}"


def missing_folders(path: Path) -> list[Path]:
    """`path` and those of its parents that do not exist, top first: what `make_folders` would make."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing[::-1]


def make_folders(path: Path) -> list[Path]:
    """Make `path` and its missing parents; return those this call created, top first (a folder another process
    makes meanwhile is not counted: it is not this call's to remove)."""
    made = []
    for folder in missing_folders(path):
        try:
            folder.mkdir()
        except FileExistsError:
            if not folder.is_dir():
                raise InputError(f"cannot create the output folder {folder}: something that is not a folder is "
                                 "in its place; choose another output folder") from None
        except OSError as error:  # a file where a parent folder should be, a read-only place
            raise InputError(f"cannot create the output folder {path}: {error.strerror or error}; choose "
                             "another output folder") from None
        else:
            made.append(folder)
    return made


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove `folders` (top first), from the deepest, while they are empty: what a run wrote stays, with the folders
    above it."""
    while folders:
        try:
            folders[-1].rmdir()
        except OSError:
            return
        folders.pop()


def _temp_file(target: Path, suffix: str) -> tuple[Path, IO[Any]]:
    """A new empty file beside `target`, hidden and named as `_TEMP_NAME` matches, and the handle that holds it
    (`_hold`) until it is closed. A clean-up may find the file in the moment before it is held, and remove it: then
    another is made."""
    for _ in range(_HOLD_ATTEMPTS):
        fd, name = tempfile.mkstemp(prefix=f".{_target_in_temp_name(target.name)}.", suffix=TEMP_TAG + suffix,
                                    dir=target.parent)
        handle = open(fd, "r+b", buffering=0)
        if _hold(handle) and same_file(handle, Path(name)):
            return Path(name), handle
        handle.close()
    raise OSError(errno.EBUSY, "its temporary files were removed as they were made; try again")


def _hold(handle: IO[Any]) -> bool:
    """Keep the file `handle` opened from the clean-up for as long as `handle` is open; False: a clean-up has it.

    On Windows the open handle does that by itself. Elsewhere an OS lock does, which the system lets go when the
    writer dies, so the clean-up knows a killed writer's file by taking its lock. Where the file system has no locks
    the clean-up cannot take one either, so it removes nothing there: the write goes ahead unheld.
    """
    if _OPEN_FILES_STAY:
        return True
    try:
        return try_lock(handle)
    except OSError:
        return True


def remove_leftover_temp_files(folder: Path, target: str | None = None) -> None:
    """Delete the temporary files that killed writers of ours left in `folder`, whichever file they were writing:
    each save (`atomic_path`) and each run taking a folder's lock calls this, so a leftover lasts only until the next
    write into its folder (ten minutes on: see below), not until its own file is written again (a killed predict's
    mask may never be). Only names `_temp_file` makes are claimed: a user's `.notes.tmp` or `.page.tmpl` stays; and
    only files no live writer holds (`_hold`), however long it has been writing: a save of another file of the
    folder, a slow save of the same file by another process, a save beside a run that holds the folder's lock. A
    leftover this user may not open (another user's, 0600, in a shared folder) cannot be known to be dead, and stays.

    A save (`target`, its file name) takes another file's leftover only once it has not changed for `_QUIET_SECONDS`
    as well: a lock reaches only as far as the file system takes it, and some cluster file systems keep each machine's
    locks to that machine (BeeGFS by default, Lustre mounted localflock, NFS mounted nolock or local_lock). There a
    torchrun rank's save of its mask removed the temporary file a rank on another node was filling, and that save
    failed ("No such file or directory"). A live save writes its file as it goes; a run taking the folder's lock
    (no `target`) runs before the other ranks write, and a save of the same file is one writer's.
    """
    now = time.time()
    for leftover in folder.glob(f".*{TEMP_TAG}*"):
        match = _TEMP_NAME.fullmatch(leftover.name)
        if match is None:
            continue
        with contextlib.suppress(OSError):  # held (Windows: open), gone meanwhile, not a file, not ours to open
            if (target is None or match["target"] == _target_in_temp_name(target)
                    or now - leftover.lstat().st_mtime >= _QUIET_SECONDS):
                _remove_unless_held(leftover)


def _remove_unless_held(path: Path) -> None:
    """Remove `path` unless a live writer holds it (`_hold`). Elsewhere than on Windows this takes the file's lock
    first, so only a dead writer's file goes; the name is checked to still be that file's while the lock is held.
    Only a plain file is ours: a named pipe (which O_NONBLOCK opens without waiting for a writer) or a device under
    one of our names is someone's, and flock takes their locks too."""
    if _OPEN_FILES_STAY:
        path.unlink()  # refused while a writer has it open
        return
    with open(os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK), "r+b", buffering=0) as handle:
        if stat.S_ISREG(os.fstat(handle.fileno()).st_mode) and try_lock(handle) and same_file(handle, path):
            path.unlink()


def _target_in_temp_name(name: str) -> str:
    """`name` cut to `_TARGET_ROOM` bytes: a target whose name is near the file system's limit (a mask named after
    a long scan name) must still get a temporary name, or it could not be written at all ('File name too long').
    The clean-up cuts a target's name the same way to find its leftovers. Cut by whole characters, never inside one."""
    while len(os.fsencode(name)) > _TARGET_ROOM:
        name = name[:-1]
    return name


def _umask() -> int:
    """The process's umask, read where the system tells it (Linux: /proc/self/status). Elsewhere it can only be set
    and set back, and for that instant a file or folder another thread makes (napari's, a DataLoader's) would be
    writable by everyone."""
    with contextlib.suppress(OSError, ValueError, IndexError, StopIteration):
        with open("/proc/self/status", encoding="ascii") as status:
            return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _dtype_names() -> dict[torch.dtype, str]:
    """safetensors' names of the dtypes a model or a resume state may hold. torch is imported here, not with the
    module: napari's reader and writer write through this module on the viewer's thread, and importing torch there
    froze the viewer for 1.2 s at the first File > Open or Save of a session."""
    import torch

    return {
        torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
        torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
    }


def write_tensors_atomic(target: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """A safetensors file (8-byte header length, JSON header, raw little-endian data), through our own temporary file.

    Written here rather than by safetensors: its `save` builds the whole file in memory while holding the GIL, which
    froze the viewer for 0.2-0.6 s at every epoch end of a training started from the GUI (150 MB of weights and
    optimizer state); its `save_file` releases the GIL but makes its own `.tmpXXXXXX` beside the target, which a
    kill leaves behind under a name our clean-up cannot claim. Each tensor goes to the file straight from its
    memory, and the file's writes release the GIL. As in safetensors' own files, tensors with larger elements come
    first, so each starts aligned to its element size, and metadata that is not text or names that are not valid
    UTF-8 are refused before the file is touched. The bytes are the machine's: little-endian on every platform
    PyTorch ships for. safetensors' reader loads the file (tests/engine/test_atomic.py).
    """
    import torch

    if not all(isinstance(key, str) and isinstance(value, str) for key, value in metadata.items()):
        raise TypeError("safetensors metadata maps text to text")
    dtype_names = _dtype_names()
    unknown = [f"{name} ({tensor.dtype})" for name, tensor in tensors.items() if tensor.dtype not in dtype_names]
    if unknown:
        raise TypeError(f"cannot write tensors of these dtypes to a model file: {', '.join(unknown)}")
    names = sorted(tensors, key=lambda name: (-tensors[name].element_size(), name))
    data = {name: tensors[name].detach().cpu().contiguous().reshape(-1).view(torch.uint8) for name in names}
    header: dict[str, object] = {"__metadata__": metadata}
    offset = 0
    for name in names:
        size = data[name].numel()
        header[name] = {"dtype": dtype_names[tensors[name].dtype], "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # the data that follows starts at a multiple of 8 bytes
    with atomic_path(target) as tmp, open(tmp, "wb") as file:
        file.write(len(encoded).to_bytes(8, "little"))
        file.write(encoded)
        for name in names:
            file.write(data[name].numpy())
