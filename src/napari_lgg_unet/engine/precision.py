"""Which number format and memory layout the U-Net runs in on a device.

Plain fp32 leaves most of a modern CPU idle: CPUs with native bf16 (AVX512-BF16, AMX) run bf16 convolutions
several times faster, and channels-last memory helps oneDNN even in fp32. But bf16 is emulated, and slower, on CPUs
without those units, so on a CPU the automatic choice is measured on this machine, never assumed. Training keeps
fp32 master weights in every case (autocast only changes the arithmetic); only fp16 needs a GradScaler.

The measurement is remembered per machine (CPU, torch, threads) in the user's cache folder: timed again on every
run, a busy moment flipped the choice between bf16 and fp32, and with it a few voxels of the same scan's mask.
`LGG_UNET_REMEASURE_PRECISION=1` times the candidates again (after a BIOS change, or on an idle machine).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch

from .atomic import write_text_atomic
from .device import cpu_model, describe_device
from .errors import DeviceError, FolderInUse, InputError, InputWarning, describe
from .folder_lock import held_folder
from .settings import PRECISION_CHOICES, option_and_flag
from .stopping import check_stop
from .validate import check_choice
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
RESOLVED = tuple(_DTYPES)  # the names a chosen Precision has: PRECISION_CHOICES but 'auto'
# A candidate must beat plain fp32 by this factor to be chosen, so timing noise never picks a slower path.
_MIN_SPEEDUP = 1.1
REMEASURE_ENV = "LGG_UNET_REMEASURE_PRECISION"
_CHOICES_FILE = "precision.json"  # in the cache folder: {machine key: {"name", "channels_last", "measured"}}
_LOCK_WAIT = 2.0  # seconds a run waits for another's update of the choices file (milliseconds) before not remembering
_PROBE = "resnet18 features, 1x3x256x256, inference"  # what `_fastest` times: another probe's verdicts do not count
_NOT_BF16 = option_and_flag("precision", "fp16", "fp32", "auto")  # the advice where bf16 cannot run


@dataclass(frozen=True)
class Precision:
    """How to run a network on `device`: autocast to `dtype` (None: plain fp32) and channels-last or not."""

    device: torch.device
    name: str
    channels_last: bool
    why: str = field(default="", compare=False)  # for 'auto' on a CPU: "auto: measured on DAY", "... remembered ..."

    @property
    def dtype(self) -> torch.dtype | None:
        return _DTYPES[self.name]

    @property
    def label(self) -> str:
        """What progress lines and records show, e.g. 'cpu, bf16, 2 threads; auto: measured on 2025-06-02' or
        'cuda (NVIDIA H100), bf16'."""
        if self.device.type == "cpu":
            where = f"cpu, {self.name}, {torch.get_num_threads()} threads"
        else:
            where = f"{describe_device(self.device)}, {self.name}"
        return f"{where}; {self.why}" if self.why else where


def native_bf16_cpu() -> bool:
    """True when this CPU computes bf16 in hardware (AVX512-BF16 or AMX), as PyTorch's oneDNN sees it."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return torch.backends.mkldnn.is_available() and any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def choose(device: torch.device | str, requested: str = "auto", keep: Precision | None = None,
           stop: Callable[[], bool] | None = None) -> Precision:
    """Resolve 'auto' / 'fp32' / 'bf16' / 'fp16' for `device`; 'auto' on a CPU is measured once per machine.

    `keep` is the precision a resumed training run trained in: 'auto' keeps it when it is one 'auto' could choose on
    `device`, so a run does not change its arithmetic half-way because a measurement or the machine changed.
    `stop` is asked between the measurement's timed passes (`_fastest`); asked to stop, it raises `stopping.Stopped`
    and neither remembers nor memoises a choice.
    """
    device = torch.device(device)
    requested = check_choice("precision", requested, PRECISION_CHOICES)
    if device.type == "cuda" and requested == "bf16" and not torch.cuda.is_bf16_supported():
        raise DeviceError(f"this GPU has no bf16 support; use {_NOT_BF16}")
    if device.type == "mps" and requested == "bf16":
        raise DeviceError(f"bf16 is not supported on Apple MPS here; use {_NOT_BF16}")
    if requested != "auto":
        return Precision(device, requested, channels_last=device.type != "mps" and requested != "fp32")
    if keep is not None and keep in _candidates(device):
        return Precision(device, keep.name, keep.channels_last, "auto: kept from the resumed run")
    return _auto(device, torch.get_num_threads(), stop)


def _candidates(device: torch.device) -> list[Precision]:
    """What 'auto' chooses from on `device`; on a CPU the first, plain fp32, is the baseline the others must beat."""
    if device.type == "cuda":
        return [Precision(device, "bf16" if torch.cuda.is_bf16_supported() else "fp16", channels_last=True)]
    if device.type != "cpu":
        return [Precision(device, "fp32", channels_last=False)]
    candidates = [Precision(device, "fp32", False), Precision(device, "fp32", True)]
    if native_bf16_cpu():
        candidates.append(Precision(device, "bf16", True))
    return candidates


_CHOSEN: dict[tuple[torch.device, int], Precision] = {}  # 'auto' as `_auto` resolved it in this process


def _auto(device: torch.device, threads: int, stop: Callable[[], bool] | None) -> Precision:
    """'auto' on `device` with `threads` CPU threads, decided once per process (`_CHOSEN`; not when `stop` ended the
    measurement): this machine's remembered choice is read once, and a measurement's verdict stands for the process."""
    if (device, threads) not in _CHOSEN:
        _CHOSEN[device, threads] = _resolved_auto(device, threads, stop)
    return _CHOSEN[device, threads]


def _resolved_auto(device: torch.device, threads: int, stop: Callable[[], bool] | None) -> Precision:
    """'auto' on `device` with `threads` CPU threads (the timing depends on them): on a CPU, this machine's remembered
    measurement, else one made now (`stop` asked between its passes) and remembered."""
    candidates = _candidates(device)
    if len(candidates) == 1:
        return candidates[0]
    key = _machine_key(threads)
    remembered = None if os.environ.get(REMEASURE_ENV, "").strip() not in ("", "0") else _remembered(key)
    if remembered is not None:
        name, channels_last, day = remembered
        chosen = Precision(device, name, channels_last, f"auto: remembered from {day}")
        if chosen in candidates:
            return chosen
    fastest, day = _fastest(candidates, stop), datetime.date.today().isoformat()
    _remember(key, fastest, day)
    # The day, not 'now': this choice stands for the rest of the process, and a napari session that measured on
    # Monday and trained on Wednesday recorded a measurement 'now' in the model, which the cache dates to Monday.
    return Precision(device, fastest.name, fastest.channels_last, f"auto: measured on {day}")


def choices_file() -> Path:
    """Where the measured choices are remembered: $XDG_CACHE_HOME/napari-lgg-unet, else ~/.cache/napari-lgg-unet. A
    relative XDG_CACHE_HOME is ignored, as the XDG spec says: it would put the cache in whatever folder a command
    happened to run from."""
    root = Path(os.environ.get("XDG_CACHE_HOME", "").strip())
    return (root if root.is_absolute() else Path.home() / ".cache") / "napari-lgg-unet" / _CHOICES_FILE


def _machine_key(threads: int) -> str:
    """What a CPU measurement depends on: the CPU (its model, and what oneDNN can use on it), torch and threads."""
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "?")()
    bf16 = "native bf16" if native_bf16_cpu() else "no native bf16"
    return f"{cpu_model()} ({capability}, {bf16}) | torch {torch.__version__} | {threads} threads | {_PROBE}"


def _read_choices() -> dict:
    """The remembered choices; an unreadable or corrupt file counts as none (it is rewritten at the next choice)."""
    try:
        data = json.loads(choices_file().read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError, RuntimeError):  # RuntimeError: Path.home() without a home
        return {}
    return data if isinstance(data, dict) else {}


def _remembered(key: str) -> tuple[str, bool, str] | None:
    entry = _read_choices().get(key)
    if not isinstance(entry, dict):
        return None
    name, channels_last, day = entry.get("name"), entry.get("channels_last"), entry.get("measured")
    if name not in RESOLVED or not isinstance(channels_last, bool) or not isinstance(day, str):
        return None
    return name, channels_last, day


def _remember(key: str, chosen: Precision, day: str) -> None:
    """Add this machine's measurement to the file, under the cache folder's lock and re-read under it: two runs
    deciding at once (a CLI run and the napari widget, runs with other thread counts) each rewrote the whole file from
    what they had read, so one verdict was lost and measured again later, perhaps differently. A lock held longer
    than `_LOCK_WAIT` is given up on, never waited for: this measurement is then not remembered, and the next run
    remembers its own.

    A cache that cannot be written (a folder named precision.json, a read-only cache folder) costs a measurement
    on every run, never an error, but is warned of (once per process, as `_auto` decides once): silently, each run
    said 'measured' and could choose differently, the very flip the file is there to prevent, with no hint why.
    """
    entry = {"name": chosen.name, "channels_last": chosen.channels_last, "measured": day}
    try:
        with held_folder(_cache_folder(), "choice of precision", wait=_LOCK_WAIT):
            choices = _read_choices()
            choices[key] = entry
            write_text_atomic(choices_file(), json.dumps(choices, indent=1, sort_keys=True) + "\n")
    except FolderInUse:
        pass  # another run's update takes unusually long: nothing to fix, and the next run remembers its own
    except InputError as error:
        warnings.warn(InputWarning(
            f"the 'auto' precision cannot be remembered ({error}), so each run measures it again and may choose "
            "differently (a mask then differs by a few voxels); move what is in the way, or set XDG_CACHE_HOME to a "
            "folder you can write"), stacklevel=1)


def _cache_folder() -> Path:
    """The choices file's folder, made if missing; an InputError naming it where it cannot be (held_folder's would
    call it an output folder and suggest choosing another)."""
    try:
        folder = choices_file().parent
    except RuntimeError as error:  # Path.home() without a home
        raise InputError(f"no cache folder: {describe(error)}") from None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create {folder}: {error.strerror or describe(error)}") from None
    return folder


def _fastest(candidates: list[Precision], stop: Callable[[], bool] | None = None, rounds: int = 5) -> Precision:
    """Time a few forward passes of a ResNet-18 feature extractor (our encoder) in each candidate, interleaved.

    On one slice at the models' 256x256: at 128x128 autocast's per-call cost of casting the weights to bf16 hid most
    of AMX's gain (1.3x there against 2.1x at 256x256 and 3x for a training step of 8 slices, on a 2-core Xeon with
    AMX), so one busy moment during the probe was enough to pick fp32 for a whole training run. About a second, once
    per machine (`_auto` remembers the result). The first candidate (plain fp32) is the baseline the others must beat.

    `stop` is asked before each timed pass: the 18 passes took 20 s on 2 cores busy with other work, and a Stop
    pressed while the first run on a machine measured waited for them all.
    """
    from torchvision.models import resnet18

    probe = torch.nn.Sequential(*list(resnet18(weights=None).children())[:-2]).eval()
    x = torch.rand(1, 3, 256, 256)
    best = [float("inf")] * len(candidates)
    with torch.inference_mode():
        for round_ in range(rounds + 1):  # round 0 warms oneDNN's kernel caches up and is not counted
            for i, candidate in enumerate(candidates):
                check_stop(stop)
                net, batch = prepare_network(probe, candidate), prepare_batch(x, candidate)
                started = time.perf_counter()
                with autocast(candidate):
                    net(batch)
                if round_:
                    best[i] = min(best[i], time.perf_counter() - started)
    baseline = best[0]
    winner = min(range(len(candidates)), key=lambda i: best[i])
    return candidates[winner] if best[winner] * _MIN_SPEEDUP < baseline else candidates[0]


@contextlib.contextmanager
def autocast(precision: Precision) -> Iterator[None]:
    """Autocast to the precision's dtype on its device; plain fp32 is a no-op."""
    with torch.autocast(
        precision.device.type, dtype=precision.dtype or torch.float32, enabled=precision.dtype is not None
    ):
        yield


def _memory_format(precision: Precision) -> torch.memory_format:
    return torch.channels_last if precision.channels_last else torch.contiguous_format


def prepare_network(network: torch.nn.Module, precision: Precision) -> torch.nn.Module:
    """Put the weights in the precision's memory layout, in place (they stay fp32); returns `network`."""
    return network.to(memory_format=_memory_format(precision))


def prepare_batch(batch: torch.Tensor, precision: Precision) -> torch.Tensor:
    """An (N, C, H, W) batch in the precision's memory layout (its dtype is left to autocast)."""
    return batch.contiguous(memory_format=_memory_format(precision))


def grad_scaler(precision: Precision) -> torch.amp.GradScaler:
    """Loss scaling for training: needed only for fp16 (bf16 has fp32's range); a disabled scaler is a no-op."""
    return torch.amp.GradScaler(precision.device.type, enabled=precision.name == "fp16")
