"""One object owns a training output folder: its file names, its lock, its resume state and its history.

The lock is engine/folder_lock.py's. The resume state is one safetensors file (weights, Adam moments, RNG) whose
metadata holds the JSON parts (progress, settings, optimizer groups, grad scaler, the precision the run trains in), so
it is replaced atomically as a set and never unpickles anything.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from .atomic import write_tensors_atomic, write_text_atomic
from .errors import InputError, ModelError, few_names
from .folder_lock import FolderHold, held_folder
from .model import (
    CONFIG_FILE, UNREADABLE_TENSORS, WEIGHTS_FILE, check_outside_package, check_replaceable, not_a_model_folder,
)
from .precision import RESOLVED, Precision
from .settings import field_and_flag, option_and_flag
from .validate import from_json

RESUME_FILE = "resume.safetensors"
RESUME_FORMAT = "napari-lgg-unet-resume/2"
NETWORK_PREFIX = "network."  # a resume state's network tensors, beside the optimizer's ("optimizer.")
HISTORY_JSON, HISTORY_CSV = "history.json", "history.csv"
PATIENTS = "patients"  # in a resume state's settings: the scans the run trains on (none in states before 2026-12-02)
CALIBRATION = "calibration"  # the task that writes into a model the user names, not into an output folder


@dataclass
class RunProgress:
    """Where a run stands after its last finished epoch."""

    epochs_done: int = 0
    best_epoch: int | None = None
    best_val_loss: float | None = None
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)


class RunFolder:
    """A training output folder. Use `with folder.locked():` around everything that writes to it, and `keep_lock()`
    before each write of a long run."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.resume_file = self.path / RESUME_FILE
        self._hold: FolderHold | None = None  # while `locked`

    def holds_model(self) -> bool:
        """A config or weights: a first save killed between its two renames leaves weights only, and they load."""
        return (self.path / CONFIG_FILE).exists() or (self.path / WEIGHTS_FILE).exists()

    def holds_resume_state(self) -> bool:
        return self.resume_file.is_file()

    def check_writable(self, task: str = "training run") -> None:
        """Refuse a folder that may not be written for `task` (as `locked` names it): a file, or the installed
        package's weights folder or anything inside it. The advice fits what the folder is: an output folder to
        choose again, or (for a calibration) the model the user named."""
        model = task == CALIBRATION
        if self.path.exists() and not self.path.is_dir():
            if model:
                raise InputError(not_a_model_folder(self.path))
            raise InputError(f"{self.path} is a file, not a folder; choose another output folder")
        check_outside_package(self.path, "" if model else ", or choose an output folder outside the package")

    @contextlib.contextmanager
    def locked(self, task: str = "training run") -> Iterator["RunFolder"]:
        """Hold the folder's exclusive lock for `task` (what the refusal of a second writer names: training and
        calibration both write the folder, so each refuses while the other holds it). A refused or failed run
        leaves no folder or lock it made behind (`folder_lock.held_folder`)."""
        self.check_writable(task)
        with held_folder(self.path, task) as self._hold:
            try:
                yield self
            finally:
                self._hold = None

    def keep_lock(self) -> None:
        """Call before each write of a long job inside `locked`: the folder deleted while the job held it is locked
        again as the write makes it anew, so no second job takes it meanwhile (`folder_lock.FolderHold.keep`)."""
        if self._hold is None:
            raise RuntimeError(f"{self.path} is not locked by this job")  # a bug of ours: a write outside `locked`
        self._hold.keep()

    def check_start(self, settings: dict, resume: bool) -> None:
        """Refuse to start over a model, or to resume without a matching resume state; say what to do instead.

        `settings` are those a resumed run must share with the saved one (`TrainConfig.must_match_on_resume`). A
        config.json or model.safetensors that is not a model of ours is named first: it is the user's own file (many
        tools write a config.json), which a run would replace, and "already holds a model; ... continue its run with
        --resume" sent them to resume a run that never was."""
        check_replaceable(self.path)
        if not resume:
            if self.holds_model() or self.holds_resume_state():
                raise InputError(f"{self.path} already holds a model; choose a new output folder, "
                                 f"or continue its run with {option_and_flag('resume', True)}")
            taken = [name for name in (HISTORY_JSON, HISTORY_CSV) if (self.path / name).exists()]
            if taken:  # not a run's (it would have left a model or resume state): perhaps the user's own log
                raise InputError(f"{self.path} already holds {' and '.join(taken)}, which a run writes; choose a new "
                                 "output folder")
            return
        if not self.holds_resume_state():
            what = ("a model but no resume state (its run finished or was not made by this version)"
                    if self.holds_model() else "no run to resume")
            raise InputError(f"{self.path} holds {what}; start a new run in a new folder (or fine-tune with "
                             f"{field_and_flag('init')})")
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
        progress: RunProgress, settings: dict, precision: Precision,
    ) -> None:
        """Write everything needed to continue after `progress.epochs_done` epochs, as one atomic file; `precision`
        is what the run trains in, which a resumed 'auto' keeps (`precision.choose`)."""
        tensors = {NETWORK_PREFIX + k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
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
            "precision": json.dumps({"name": precision.name, "channels_last": precision.channels_last}),
        }
        write_tensors_atomic(self.resume_file, tensors, metadata)

    def load_resume_state(
        self, network: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
        init: str | None = None,
    ) -> RunProgress:
        """Restore weights, optimizer, scaler and RNG in place after checking every part; return the progress.

        `init` is the model the resumed run was built from (--init, None: from scratch). It may change on resume (the
        weights come from the state), but the network is built from it: a run fine-tuned from `--init default` and
        resumed without it was refused as "(Error(s) in loading state_dict for Unet:)", which says nothing of why."""
        metadata = self._metadata()
        try:
            tensors = load_file(str(self.resume_file))
        except UNREADABLE_TENSORS as error:
            raise ModelError(f"cannot resume from {self.resume_file}: it is corrupt ({error})") from None
        progress = self._progress(metadata)
        try:
            network.load_state_dict({k.removeprefix(NETWORK_PREFIX): v for k, v in tensors.items()
                                     if k.startswith(NETWORK_PREFIX)})
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
            why = _other_start(metadata["settings"].get("init"), init) or f" ({first})"
            raise ModelError(f"cannot resume from {self.resume_file}: it does not match this run{why}") from None
        return progress

    def resume_progress(self) -> RunProgress:
        """Where the saved run stands, read without its tensors: what a resumed run stopped before its first step
        reports (its best model and resume state are still those it found)."""
        return self._progress(self._metadata())

    def _progress(self, metadata: dict[str, Any]) -> RunProgress:
        try:
            return from_json(RunProgress, metadata["progress"], ModelError, prefix="progress.")
        except ModelError as error:
            raise ModelError(f"cannot resume from {self.resume_file}: its {error}") from None

    def trained_precision(self, device: torch.device) -> Precision | None:
        """The precision the saved run trained in, on `device`; None for a state saved before it was recorded."""
        with contextlib.suppress(*UNREADABLE_TENSORS):
            with safe_open(str(self.resume_file), "pt") as handle:
                saved = json.loads((handle.metadata() or {}).get("precision", "null"))
            if isinstance(saved, dict) and saved.get("name") in RESOLVED \
                    and isinstance(saved.get("channels_last"), bool):
                return Precision(device, saved["name"], saved["channels_last"])
        return None

    def _metadata(self) -> dict[str, Any]:
        """The resume file's JSON parts, each checked to be present and well-formed."""
        try:
            with safe_open(str(self.resume_file), "pt") as handle:
                raw = handle.metadata() or {}
        except UNREADABLE_TENSORS as error:
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


def _other_start(saved: object, now: str | None) -> str:
    """Why a resumed network may not fit its saved state: the saved run started from another model (or none) than
    this one, and the network is built from that model; empty when both start alike."""
    if saved == now:
        return ""
    started = f"was fine-tuned from {saved}" if saved else "started from scratch"
    again = f"give {option_and_flag('init', saved)} again" if saved else f"leave {field_and_flag('init')} out"
    return f": the saved run {started}, and this one is built from {now or 'scratch'}; {again}"


def _patients_differ(saved: list[str], now: list[str]) -> str:
    """The scans a resumed run would train on that the saved run did not, and the reverse, in a few names."""
    added, missing = sorted(set(now) - set(saved)), sorted(set(saved) - set(now))
    parts = ([f"{len(added)} new ({few_names(added)})"] if added else []) + (
        [f"{len(missing)} gone ({few_names(missing)})"] if missing else [])
    return f"the training scans differ: {'; '.join(parts)}; their split would not be the saved run's"
