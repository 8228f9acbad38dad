"""One object owns a training output folder: its file names, its lock, its resume state and its history.

The lock is an OS file lock, so the system releases it when a run is killed: a stale lock is taken over without
guessing from process ids. The resume state is one safetensors file (weights, Adam moments, RNG) whose metadata
holds the JSON parts (progress, settings, optimizer groups, grad scaler), so it is replaced atomically as a set and
never unpickles anything.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import stat
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterator

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from .atomic import remove_leftover_temp_files, write_tensors_atomic, write_text_atomic
from .errors import InputError, ModelError
from .model import CONFIG_FILE, WEIGHTS_FILE, in_packaged_weights
from .validate import from_json

RESUME_FILE = "resume.safetensors"
RESUME_FORMAT = "napari-lgg-unet-resume/2"
LOCK_FILE = ".lock"
LOCK_TEXT = "{task} (process {pid})"  # what a run writes into its lock while it holds it, and empties at the end
# A lock of ours: LOCK_TEXT or empty (what a killed run or an ended one leaves). Bounded, so that reading
# _LOCK_READ characters sees the whole of any file that matches.
_OUR_LOCK = re.compile(r"(.{1,200} \(process \d{1,10}\))?")
_LOCK_READ = 256
_LOCK_ATTEMPTS = 5  # to take a lock file that failing holders keep removing (see _release)
HISTORY_JSON, HISTORY_CSV = "history.json", "history.csv"
PATIENTS = "patients"  # in a resume state's settings: the scans the run trains on (none in states before 2026-12-02)


@dataclass
class RunProgress:
    """Where a run stands after its last finished epoch."""

    epochs_done: int = 0
    best_epoch: int | None = None
    best_val_loss: float | None = None
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)


class RunFolder:
    """A training output folder. Use `with folder.locked():` around everything that writes to it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.resume_file = self.path / RESUME_FILE

    def holds_model(self) -> bool:
        """A config or weights: a first save killed between its two renames leaves weights only, and they load."""
        return (self.path / CONFIG_FILE).exists() or (self.path / WEIGHTS_FILE).exists()

    def holds_resume_state(self) -> bool:
        return self.resume_file.is_file()

    def check_writable(self) -> None:
        """Refuse a folder that may not be written: a file, or the installed package's weights folder or anything
        inside it."""
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"{self.path} is a file, not a folder; choose another output folder")
        if in_packaged_weights(self.path):
            raise InputError(f"the default model is part of the installed package, and nothing is written into its "
                             f"weights folder ({self.path}); copy the model folder and use the copy, or choose an "
                             "output folder outside the package")

    @contextlib.contextmanager
    def locked(self, task: str = "training run") -> Iterator["RunFolder"]:
        """Hold the folder's exclusive lock for `task` (what the refusal of a second writer names: training and
        calibration both write the folder, so each refuses while the other holds it).

        What this call created is removed again when the block fails: the lock file, then each folder it made, from
        the deepest, while it is empty, all before the lock is let go (a run taking the folder then finds it gone and
        makes it anew, as its own). So a refused or failed first run leaves no empty folders behind (not even the
        parents of `train --out a/b/c`), and a refused run leaves an existing folder as it was.
        """
        self.check_writable()
        made: list[Path] = []  # the folders this call created, top first; grows if a failing holder removes them

        def make_folders() -> None:
            made.extend(_make_folders(self.path))

        try:
            make_folders()
            with _lock_file(self.path / LOCK_FILE, task, made, make_folders):
                yield self
        except BaseException:
            _remove_empty_folders(made)  # those made before the lock was taken: a refusal (or a file in the way)
            raise

    def check_start(self, settings: dict, resume: bool) -> None:
        """Refuse to start over a model, or to resume without a matching resume state; say what to do instead.

        `settings` are those a resumed run must share with the saved one (`TrainConfig.must_match_on_resume`)."""
        if not resume:
            if self.holds_model() or self.holds_resume_state():
                raise InputError(f"{self.path} already holds a model; choose a new output folder, or continue its run with --resume")
            taken = [name for name in (HISTORY_JSON, HISTORY_CSV) if (self.path / name).exists()]
            if taken:  # not a run's (it would have left a model or resume state): perhaps the user's own log
                raise InputError(f"{self.path} already holds {' and '.join(taken)}, which a run writes; choose a new "
                                 "output folder")
            return
        if not self.holds_resume_state():
            what = "a model but no resume state (its run finished or was not made by this version)" if self.holds_model() else "no run to resume"
            raise InputError(f"{self.path} holds {what}; start a new run in a new folder (or fine-tune with --init)")
        saved = self._metadata()["settings"]
        differences = [
            f"{key} {saved.get(key)!r} -> {settings.get(key)!r}"
            for key in sorted(settings)
            if key != PATIENTS and saved.get(key) != settings[key]
        ]
        if PATIENTS in saved and PATIENTS in settings and saved[PATIENTS] != settings[PATIENTS]:
            differences.append(_patients_differ(saved[PATIENTS], settings[PATIENTS]))
        if differences:
            raise InputError(f"cannot resume {self.path} with other settings: {'; '.join(differences)}")

    def save_resume_state(
        self, network: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
        progress: RunProgress, settings: dict,
    ) -> None:
        """Write everything needed to continue after `progress.epochs_done` epochs, as one atomic file."""
        tensors = {f"network.{k}": v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
        state = optimizer.state_dict()
        for index, values in state["state"].items():
            for key, value in values.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
        tensors["rng.torch"] = torch.get_rng_state()
        metadata = {
            "format": RESUME_FORMAT,
            "progress": json.dumps(asdict(progress)),
            "settings": json.dumps(settings),
            "param_groups": json.dumps(state["param_groups"]),
            "scaler": json.dumps(scaler.state_dict()),
        }
        write_tensors_atomic(self.resume_file, tensors, metadata)

    def load_resume_state(
        self, network: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler
    ) -> RunProgress:
        """Restore weights, optimizer, scaler and RNG in place after checking every part; return the progress."""
        metadata = self._metadata()
        try:
            tensors = load_file(str(self.resume_file))
        except (SafetensorError, OSError, ValueError, RuntimeError) as error:
            raise ModelError(f"cannot resume from {self.resume_file}: it is corrupt ({error})") from None
        try:
            progress = from_json(RunProgress, metadata["progress"], ModelError, prefix="progress.")
        except ModelError as error:
            raise ModelError(f"cannot resume from {self.resume_file}: its {error}") from None
        try:
            network.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("network.")})
            moments: dict[int, dict[str, torch.Tensor]] = {}
            for key, value in tensors.items():
                if key.startswith("optimizer."):
                    index, name = key[10:].split(".", 1)
                    moments.setdefault(int(index), {})[name] = value
            optimizer.load_state_dict({"state": moments, "param_groups": metadata["param_groups"]})
            if metadata["scaler"]:
                scaler.load_state_dict(metadata["scaler"])
            torch.set_rng_state(tensors["rng.torch"])
        except (KeyError, ValueError, RuntimeError, TypeError) as error:
            first = (str(error).strip().splitlines() or [""])[0]
            raise ModelError(f"cannot resume from {self.resume_file}: it does not match this run ({first})") from None
        return progress

    def _metadata(self) -> dict[str, Any]:
        """The resume file's JSON parts, each checked to be present and well-formed."""
        try:
            with safe_open(str(self.resume_file), "pt") as handle:
                raw = handle.metadata() or {}
        except (SafetensorError, OSError, ValueError, RuntimeError) as error:
            raise ModelError(f"cannot resume from {self.resume_file}: it is corrupt ({error})") from None
        if raw.get("format") != RESUME_FORMAT:
            raise ModelError(f"cannot resume from {self.resume_file}: not a {RESUME_FORMAT} state")
        parsed = {}
        for key, kind in (("progress", dict), ("settings", dict), ("param_groups", list), ("scaler", dict)):
            try:
                parsed[key] = json.loads(raw[key])
            except (KeyError, json.JSONDecodeError, RecursionError):
                parsed[key] = None
            if not isinstance(parsed[key], kind):
                raise ModelError(f"cannot resume from {self.resume_file}: its {key} is missing or corrupt")
        return parsed

    def write_history(self, history: list[dict]) -> None:
        """history.json always; history.csv once there is a row (one per epoch)."""
        write_text_atomic(self.path / HISTORY_JSON, json.dumps(history, indent=1) + "\n")
        if history:
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=list(history[-1].keys()))
            writer.writeheader()
            writer.writerows(history)
            write_text_atomic(self.path / HISTORY_CSV, buffer.getvalue())


def _make_folders(path: Path) -> list[Path]:
    """Make `path` and its missing parents; return those this call created, top first (a folder another process
    makes meanwhile is not counted: it is not this call's to remove)."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    made = []
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            if not folder.is_dir():
                raise InputError(f"cannot create the output folder {folder}: something that is not a folder is "
                                 "in its place; choose another output folder") from None
        except OSError as error:  # a file where a parent folder should be, a read-only place
            raise InputError(f"cannot create the output folder {missing[0]}: {error.strerror or error}; choose "
                             "another output folder") from None
        else:
            made.append(folder)
    return made


def _remove_empty_folders(folders: list[Path]) -> None:
    """Remove `folders` (top first), from the deepest, while they are empty: what a run wrote stays, with the folders
    above it."""
    while folders:
        try:
            folders[-1].rmdir()
        except OSError:
            return
        folders.pop()


@contextlib.contextmanager
def _lock_file(path: Path, task: str, made: list[Path], make_folders: Callable[[], None]) -> Iterator[None]:
    """Hold the lock file `path` for `task`, naming the task in it. When the block fails, the lock file (if this
    call created it) and the empty folders in `made` (the caller's, top first) are removed before the lock is let go.
    `make_folders` makes the folder again if a failing holder removed it while this call waited."""
    handle, created = _take(path, make_folders)
    failed = False
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(LOCK_TEXT.format(task=task, pid=os.getpid()))
        handle.flush()
        remove_leftover_temp_files(path.parent)
        yield
    except BaseException:
        failed = True
        raise
    finally:
        handle.truncate(0)
        _release(handle, (path if created else None, made) if failed else None)


def _take(path: Path, make_folders: Callable[[], None]) -> tuple[IO[str], bool]:
    """The lock file opened and held, and whether this call created it. Refused: a lock another process holds
    (naming its task), and anything that is not a lock of ours (a link, a folder, a file with other text: someone's
    own, so it is left untouched)."""
    for _ in range(_LOCK_ATTEMPTS):
        opened = _open_lock(path)
        if opened is None:  # a failing holder removed the folder it made: make it anew
            make_folders()
            continue
        handle, created = opened
        if not _try_lock(handle):
            text = _read(handle)
            handle.close()
            holder = text if text and _OUR_LOCK.fullmatch(text) else "run (another process)"
            raise InputError(f"{path.parent} is in use by another {holder}; wait for it to end or choose another "
                             "folder")
        if _same_file(handle, path):
            break
        _release(handle, None)  # its holder removed it after this call opened it: the folder is free, open it anew
    else:  # a file system that reports no stable file identity, or runs that keep coming and failing
        raise InputError(f"{path} keeps being replaced while this run takes it; wait for other runs into "
                         f"{path.parent} to end or choose another folder")
    text = _read(handle)
    if text is not None and _OUR_LOCK.fullmatch(text):
        return handle, created
    _release(handle, None)
    raise InputError(_not_ours(path, "a file holding other text"))


def _open_lock(path: Path) -> tuple[IO[str], bool] | None:
    """`path` opened for reading and writing, created if missing, never through a link: its target, perhaps any
    file of the user's, would be written. O_NOFOLLOW closes the gap between the check and the open where the system
    has it. Returns the file and whether this call created it (O_EXCL says so, where a check before would race
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
    except OSError as error:  # a read-only folder; a link or folder put there since the check
        raise InputError(f"cannot open the lock file {path}: {error.strerror or error}; choose another output "
                         "folder") from None
    return os.fdopen(descriptor, "r+", encoding="utf-8", errors="replace"), created


def _read(handle: IO[str]) -> str | None:
    """The lock's text (its start, if it is longer than a lock of ours), or None where it cannot be read: Windows
    refuses to read a byte another process has locked."""
    try:
        handle.seek(0)
        return handle.read(_LOCK_READ)
    except OSError:
        return None


def _same_file(handle: IO[str], path: Path) -> bool:
    """Whether `path` still names the file `handle` holds: a failing run removes the lock it created."""
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.lstat(path))
    except OSError:
        return False


def _not_ours(path: Path, kind: str) -> str:
    return (f"{path} is {kind}, not the lock file lgg-unet keeps in an output folder, and is left as it is; move or "
            "rename it, or choose another output folder")


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(handle: Any) -> bool:
        try:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _release(handle: Any, remove: tuple[Path | None, list[Path]] | None) -> None:
        """Unlock and close, then remove `remove` (see `_remove_made`): Windows removes no open file, so this fails
        (and the file stays) when another process has opened it since, and no two runs ever hold two files of one
        name."""
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        handle.close()
        _remove_made(remove)

else:
    import fcntl

    def _try_lock(handle: Any) -> bool:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _release(handle: Any, remove: tuple[Path | None, list[Path]] | None) -> None:
        """Remove `remove` (see `_remove_made`) while still holding the lock, then unlock and close: a run that opened
        it meanwhile finds it gone once it holds it (`_same_file`) and opens the new one, so no two runs ever hold
        two files of one name; and it finds the folders gone too, so it makes them as its own, and removes them if
        it fails in turn (let go first, a folder held by that run could be removed by neither)."""
        _remove_made(remove)
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()


def _remove_made(remove: tuple[Path | None, list[Path]] | None) -> None:
    """Remove what a failed run made: its lock file (None: one it found), then its folders while they are empty."""
    if remove is None:
        return
    lock, folders = remove
    if lock is not None:
        with contextlib.suppress(OSError):
            lock.unlink()
    _remove_empty_folders(folders)


def _patients_differ(saved: list[str], now: list[str]) -> str:
    """The scans a resumed run would train on that the saved run did not, and the reverse, in a few names."""
    added, missing = sorted(set(now) - set(saved)), sorted(set(saved) - set(now))

    def few(names: list[str]) -> str:
        return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")

    parts = ([f"{len(added)} new ({few(added)})"] if added else []) + ([f"{len(missing)} gone ({few(missing)})"]
                                                                      if missing else [])
    return f"the training scans differ: {'; '.join(parts)}; their split would not be the saved run's"
