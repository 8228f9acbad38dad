"""Who runs the forward pass: PyTorch itself, or OpenVINO when the optional `fast-cpu` extra is installed.

OpenVINO runs our U-Net faster than PyTorch's best path on the CPUs we measured (docs/benchmarks.md), but converting
a network costs about a second. So 'auto' converts a network only after PyTorch has spent `CONVERT_AFTER_SECONDS`
running it in this process: a single small scan never waits for a conversion, long stacks and sessions of many scans
get OpenVINO, and the total time is never more than about twice the better of the two. The conversion happens in
memory from the loaded network (nothing is read from or written to disk, nothing is downloaded) and is kept for the
life of the network; PyTorch is the fallback whenever OpenVINO is absent or cannot take the network.

PyTorch runs a network in eval mode as a copy with each batch norm folded into the convolution before it: the same
function (outputs within 1e-5), one pass over the activations less per layer (measured: docs/benchmarks.md). The
copy is made on first use and again whenever the weights change, so training's validation never runs stale weights.
"""

from __future__ import annotations

import copy
import importlib.util
import time
import warnings
import weakref
from dataclasses import dataclass
from typing import Any

import torch

from .errors import DeviceError
from .model_input import input_channels
from .precision import Precision, autocast, prepare_batch
from .settings import BACKEND_CHOICES, option_and_flag
from .validate import check_choice
CONVERT_AFTER_SECONDS = 2.0
_OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


@dataclass
class _NetworkState:
    """What we know about one network in this process: PyTorch time spent on it and its OpenVINO form."""

    torch_seconds: float = 0.0
    compiled: Any = None  # openvino.CompiledModel
    compiled_for: tuple = ()
    failed: bool = False
    folded: torch.nn.Module | None = None
    folded_for: tuple = ()


_states: "weakref.WeakKeyDictionary[torch.nn.Module, _NetworkState]" = weakref.WeakKeyDictionary()


def _weights_version(network: torch.nn.Module) -> tuple[int, ...]:
    """Changes whenever a parameter or buffer is modified in place (an optimiser step, batch-norm statistics, a
    loaded state), so a stale conversion or folded copy is never used."""
    return tuple(t._version for t in (*network.parameters(), *network.buffers()))


def forward(network: torch.nn.Module, batch: torch.Tensor, precision: Precision, backend: str = "auto") -> torch.Tensor:
    """Logits (float32, on the batch's device) of an (N, C, H, W) float32 batch (C: the model's input channels), by
    the backend that `backend` picks.

    Call it inside `torch.inference_mode()`, with the network in eval mode and prepared by
    `precision.prepare_network` (once; the memory layout only affects speed).
    """
    check_choice("backend", backend, BACKEND_CHOICES)
    state = _states.setdefault(network, _NetworkState())
    compiled = _openvino_for(network, state, precision, backend)
    if compiled is not None:
        return torch.from_numpy(compiled(batch.numpy())[0])
    started = time.perf_counter()
    with autocast(precision):
        logits = _torch_network(network, state, precision)(prepare_batch(batch, precision)).float()
    state.torch_seconds += time.perf_counter() - started
    return logits


def _torch_network(network: torch.nn.Module, state: _NetworkState, precision: Precision) -> torch.nn.Module:
    """What PyTorch runs: in training mode the network itself, in eval mode its batch-norm-folded copy."""
    if network.training:
        return network
    key = (precision.name, _weights_version(network))
    if state.folded is None or state.folded_for != key:
        with torch.inference_mode(False), torch.no_grad():
            state.folded, state.folded_for = fold_batch_norms(copy.deepcopy(network)), key
    return state.folded


def fold_batch_norms(network: torch.nn.Module) -> torch.nn.Module:
    """Fold every eval-mode BatchNorm2d into the Conv2d it follows, in place, replacing it by an identity.

    The pairs are found the two ways our networks hold them: a convolution followed by a batch norm in a Sequential
    (smp's decoder, ResNet's downsampling) and sibling attributes `convN` / `bnN` (ResNet's stem and blocks). Other
    batch norms stay as they are."""
    for module in list(network.modules()):
        if isinstance(module, torch.nn.Sequential):
            for i in range(len(module) - 1):
                if _fold(module[i], module[i + 1]):
                    module[i + 1] = torch.nn.Identity()
        for name, conv in list(module.named_children()):
            norm_name = "bn" + name[len("conv"):]
            if name.startswith("conv") and _fold(conv, getattr(module, norm_name, None)):
                setattr(module, norm_name, torch.nn.Identity())
    return network


def _fold(conv: torch.nn.Module, norm: torch.nn.Module | None) -> bool:
    if not (isinstance(conv, torch.nn.Conv2d) and isinstance(norm, torch.nn.BatchNorm2d)) or norm.training:
        return False
    if norm.running_mean is None or norm.running_var is None:
        return False
    scale = norm.running_var.add(norm.eps).rsqrt()
    if norm.affine:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale + (norm.bias if norm.affine else 0.0)
    bias = shift if conv.bias is None else conv.bias * scale + shift
    conv.weight = torch.nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1), requires_grad=False)
    conv.bias = torch.nn.Parameter(bias, requires_grad=False)
    return True


def backend_in_use(network: torch.nn.Module, precision: Precision) -> str:
    """'openvino' if the last `forward` on this network ran there, else 'torch' (for the progress label)."""
    state = _states.get(network)
    uses_openvino = state is not None and state.compiled is not None and state.compiled_for == _key(network, precision)
    return "openvino" if uses_openvino else "torch"


def describe(network: torch.nn.Module, precision: Precision) -> str:
    """The progress line's label, e.g. 'cpu, bf16, openvino, 2 threads' or 'cpu, fp32, 2 threads'."""
    if backend_in_use(network, precision) == "openvino":
        return precision.label.replace(f", {precision.name},", f", {precision.name}, openvino,")
    return precision.label


def _key(network: torch.nn.Module, precision: Precision) -> tuple:
    return (precision.name, torch.get_num_threads(), _weights_version(network))


def _openvino_for(network: torch.nn.Module, state: _NetworkState, precision: Precision, backend: str):
    if backend == "torch" or precision.device.type != "cpu" or precision.name not in _OPENVINO_PRECISIONS:
        if backend == "openvino":
            raise DeviceError("the OpenVINO backend runs on the CPU in fp32 or bf16 only; use "
                              f"{option_and_flag('backend', 'torch', 'auto')}")
        return None
    if backend == "openvino" and not openvino_installed():
        raise DeviceError("the OpenVINO backend is not installed; "
                          f"pip install 'napari-lgg-unet[fast-cpu]' or use {option_and_flag('backend', 'auto')}")
    if backend == "auto" and (state.failed or not openvino_installed() or state.torch_seconds < CONVERT_AFTER_SECONDS):
        return None
    key = _key(network, precision)
    if state.compiled is None or state.compiled_for != key:
        try:
            state.compiled, state.compiled_for = _convert(network, precision), key
        except Exception as error:  # noqa: BLE001 - any failure inside OpenVINO means: stay on PyTorch
            if backend == "openvino":
                raise DeviceError(f"OpenVINO cannot run this model ({type(error).__name__}); use "
                                  f"{option_and_flag('backend', 'torch')}") from None
            state.failed = True
            warnings.warn(f"OpenVINO could not convert the model, staying on PyTorch: {error}", RuntimeWarning)
            return None
    return state.compiled


def _convert(network: torch.nn.Module, precision: Precision):
    """Trace the network once and compile it for this CPU: any batch size and image size, `precision`'s arithmetic."""
    import openvino

    channels = input_channels(network)
    example = torch.zeros(1, channels, 64, 64)
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about smp's shape checks, which hold for our inputs
        model = openvino.convert_model(network, example_input=example, input=[(-1, channels, -1, -1)])
    config = {
        "INFERENCE_PRECISION_HINT": _OPENVINO_PRECISIONS[precision.name],
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        "PERFORMANCE_HINT": "LATENCY",
    }
    return openvino.Core().compile_model(model, "CPU", config)
