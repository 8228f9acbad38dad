"""Choose where the U-Net runs: CUDA, then Apple MPS, then CPU, unless the user says otherwise."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path
from typing import Iterator

import psutil
import torch

from .errors import DeviceError
from .settings import TrainConfig, check_device, check_setting, option_and_flag

_CPU_OR_AUTO = option_and_flag("device", "cpu", "auto")  # the advice when a requested device is missing


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def auto_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_device(requested: str | torch.device | None = "auto") -> torch.device:
    """Resolve 'auto' / 'cpu' / 'cuda[:N]' / 'mps' (or a torch.device) to a device this machine really has."""
    if isinstance(requested, torch.device) and requested.type != "cuda":
        requested = requested.type  # a tensor's device reads 'mps:0' or 'cpu:0'; only CUDA devices are numbered here
    name = check_device("device", str(requested or "auto"))
    if name == "auto":
        return auto_device()
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device 'cuda' was requested but no CUDA GPU is available; use {_CPU_OR_AUTO}")
        index, count = torch.device(name).index, torch.cuda.device_count()
        if index is not None and index >= count:
            raise DeviceError(f"device {name!r} was requested but this machine has {count} CUDA GPU(s), "
                              f"cuda:0 to cuda:{count - 1}")
        return torch.device(name)
    if name == "mps":
        if not _mps_available():
            raise DeviceError(f"device 'mps' was requested but Apple MPS is not available; use {_CPU_OR_AUTO}")
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device) -> str:
    """A short label for the UI, e.g. 'cuda (NVIDIA H100)' or 'cpu (2 threads)'."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device.type


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo's on Linux, where platform.processor() is often empty): written next to
    every benchmark figure, and part of the key under which 'auto' precision remembers its measurement."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")) and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def physical_cores() -> int:
    """Physical cores this process may use: hyper-threads share a core's vector units, so they add little to a U-Net."""
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(psutil.cpu_count(logical=False) or allowed, allowed))


def set_threads(threads: int | None = None) -> int:
    """Set PyTorch's CPU threads: `threads` if given, else OMP_NUM_THREADS if set, else the physical cores.

    Returns the number in use. Call once at start-up (the CLI's --threads, the widgets with None). A given number is
    checked as TrainConfig declares it, for every command that takes --threads.
    """
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        threads = int(env) if env.isdigit() and int(env) > 0 else physical_cores()
    else:
        threads = check_setting(TrainConfig, "threads", threads)
    torch.set_num_threads(threads)
    return threads


def is_out_of_memory(error: BaseException) -> bool:
    """True for the allocation failures of CUDA, MPS and CPU, which all deserve the same advice."""
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


OOM_ADVICE = "the device ran out of memory: lower the batch size or the image size, or use the CPU"


@contextlib.contextmanager
def out_of_memory_as_advice() -> Iterator[None]:
    """Turn any allocation failure inside the block into a DeviceError that tells the user what to change."""
    try:
        yield
    except (RuntimeError, MemoryError) as error:
        if is_out_of_memory(error):
            raise DeviceError(OOM_ADVICE) from None
        raise


def release_memory(device: torch.device) -> None:
    """Give cached GPU memory back so other programs (and the next run) can use it."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()
