"""Which number format and memory layout the U-Net runs in on a device, chosen once per process.

Plain fp32 leaves most of a modern CPU idle: CPUs with native bf16 (AVX512-BF16, AMX) run bf16 convolutions
several times faster, and channels-last memory helps oneDNN even in fp32. But bf16 is emulated, and slower, on CPUs
without those units, so on a CPU the automatic choice is measured on this machine, never assumed. Training keeps
fp32 master weights in every case (autocast only changes the arithmetic); only fp16 needs a GradScaler.
"""

from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass
from typing import Iterator

import torch

from .device import describe_device
from .errors import DeviceError
from .settings import PRECISION_CHOICES
from .validate import check_choice
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# A candidate must beat plain fp32 by this factor to be chosen, so timing noise never picks a slower path.
_MIN_SPEEDUP = 1.1


@dataclass(frozen=True)
class Precision:
    """How to run a network on `device`: autocast to `dtype` (None: plain fp32) and channels-last or not."""

    device: torch.device
    name: str
    channels_last: bool

    @property
    def dtype(self) -> torch.dtype | None:
        return _DTYPES[self.name]

    @property
    def label(self) -> str:
        """What the progress line shows, e.g. 'cpu, bf16, 2 threads' or 'cuda (NVIDIA H100), bf16'."""
        if self.device.type == "cpu":
            return f"cpu, {self.name}, {torch.get_num_threads()} threads"
        return f"{describe_device(self.device)}, {self.name}"


def native_bf16_cpu() -> bool:
    """True when this CPU computes bf16 in hardware (AVX512-BF16 or AMX), as PyTorch's oneDNN sees it."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return torch.backends.mkldnn.is_available() and any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def choose(device: torch.device | str, requested: str = "auto") -> Precision:
    """Resolve 'auto' / 'fp32' / 'bf16' / 'fp16' for `device`; 'auto' is decided (and on CPU measured) once per process."""
    device = torch.device(device)
    requested = check_choice("precision", requested, PRECISION_CHOICES)
    if device.type == "cuda" and requested == "bf16" and not torch.cuda.is_bf16_supported():
        raise DeviceError("this GPU has no bf16 support; use --precision fp16, fp32 or auto")
    if device.type == "mps" and requested == "bf16":
        raise DeviceError("bf16 is not supported on Apple MPS here; use --precision fp16, fp32 or auto")
    if requested != "auto":
        return Precision(device, requested, channels_last=device.type != "mps" and requested != "fp32")
    return _auto(device)


@functools.lru_cache(maxsize=None)
def _auto(device: torch.device) -> Precision:
    if device.type == "cuda":
        return Precision(device, "bf16" if torch.cuda.is_bf16_supported() else "fp16", channels_last=True)
    if device.type != "cpu":
        return Precision(device, "fp32", channels_last=False)
    candidates = [Precision(device, "fp32", False), Precision(device, "fp32", True)]
    if native_bf16_cpu():
        candidates.append(Precision(device, "bf16", True))
    return _fastest(candidates)


def _fastest(candidates: list[Precision], rounds: int = 5) -> Precision:
    """Time a few forward passes of a ResNet-18 feature extractor (our encoder) in each candidate, interleaved.

    On one slice at the models' 256x256: at 128x128 autocast's per-call cost of casting the weights to bf16 hid most
    of AMX's gain (1.3x there against 2.1x at 256x256 and 3x for a training step of 8 slices, on a 2-core Xeon with
    AMX), so one busy moment during the probe was enough to pick fp32 for a whole training run. About a second once
    per process. The first candidate (plain fp32) is the baseline the others must beat.
    """
    from torchvision.models import resnet18

    probe = torch.nn.Sequential(*list(resnet18(weights=None).children())[:-2]).eval()
    x = torch.rand(1, 3, 256, 256)
    best = [float("inf")] * len(candidates)
    with torch.inference_mode():
        for round_ in range(rounds + 1):  # round 0 warms oneDNN's kernel caches up and is not counted
            for i, candidate in enumerate(candidates):
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
    with torch.autocast(precision.device.type, dtype=precision.dtype or torch.float32, enabled=precision.dtype is not None):
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
