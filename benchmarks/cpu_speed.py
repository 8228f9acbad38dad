"""How fast does the default U-Net run on this machine by each path we could ship? One run prints the whole table.

Inference (batch 8, 256x256, best of --repeats): eager fp32 (what the engine did before issue 8), channels-last,
bf16 autocast, TorchScript freeze, ONNX Runtime, OpenVINO, ours as shipped (the whole segment_volume pipeline with
its automatic choices), and the fp32 / bf16 matmul ceilings of the same cores, measured in the same run. Then
training samples/s (fwd + bwd + Adam) eager fp32 vs our choice at 128 and 256 px, peak memory and end-to-end seconds
for a 155-slice 240x240 volume in a fresh process, and per-patient Dice of ours vs eager fp32 on validation patients.
Run by hand on an otherwise idle machine; results go in docs/benchmarks.md.

    PYTHONPATH=src python benchmarks/cpu_speed.py --lgg ../shared/data/lgg/kaggle_3m --patients 5
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import io
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from napari_lgg_unet.engine import backends
from napari_lgg_unet.engine.device import set_threads
from napari_lgg_unet.engine.io import load_patient
from napari_lgg_unet.engine.losses import SegmentationLoss
from napari_lgg_unet.engine.metrics import volume_scores
from napari_lgg_unet.engine.model import build_network, load_model, read_config
from napari_lgg_unet.engine.precision import (
    Precision, autocast, choose, native_bf16_cpu, prepare_batch, prepare_network,
)
from napari_lgg_unet.engine.predict import SegmentOptions, segment_steps, segment_volume
from timing import best_of, cpu_model

BATCH, SIZE = 8, 256
SECTIONS = ("inference", "training", "memory", "answers")
CPU = torch.device("cpu")
SHIPPED = read_config("default")  # its architecture and inputs (9 channels since r2: neighbouring slices, clicks)


def flops_per_slice(network: torch.nn.Module) -> float:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        network(torch.zeros(1, SHIPPED.inputs.channels, SIZE, SIZE))
    return float(counter.get_total_flops())


def matmul_ceiling(dtype: torch.dtype, repeats: int, n: int = 2048) -> float:
    """GFLOP/s of one large square matmul: what these cores can do at best in `dtype`."""
    a, b = torch.rand(n, n).to(dtype), torch.rand(n, n).to(dtype)
    return 2 * n**3 / best_of(repeats, lambda: torch.mm(a, b)) / 1e9


def torch_path(network: torch.nn.Module, precision: Precision) -> Callable[[torch.Tensor], object]:
    prepare_network(network, precision)

    def run(x: torch.Tensor) -> object:
        with torch.inference_mode(), autocast(precision):
            return network(prepare_batch(x, precision))

    return run


def jit_freeze_path(network: torch.nn.Module) -> Callable[[torch.Tensor], object]:
    prepare_network(network, choose(CPU, "fp32"))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frozen = torch.jit.freeze(
            torch.jit.trace(network.eval(), torch.zeros(BATCH, SHIPPED.inputs.channels, SIZE, SIZE))
        )
    return lambda x: frozen(x)


def onnxruntime_path(network: torch.nn.Module) -> Callable[[torch.Tensor], object]:
    import onnxruntime

    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(network, (torch.zeros(1, SHIPPED.inputs.channels, SIZE, SIZE),), buffer, dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "n"}}, opset_version=17)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = torch.get_num_threads(), 1
    session = onnxruntime.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x.numpy()})


def openvino_path(network: torch.nn.Module, precision: str) -> Callable[[torch.Tensor], object]:
    precision_ = choose(CPU, precision)
    return lambda x: backends.forward(network, x, precision_, "openvino")


def inference_paths() -> dict[str, Callable[[torch.nn.Module], Callable[[torch.Tensor], object]]]:
    paths = {
        "eager fp32 (the engine before issue 8)": lambda n: torch_path(n, choose(CPU, "fp32")),
        "eager fp32, channels_last": lambda n: torch_path(n, Precision(CPU, "fp32", True)),
        "bf16 autocast": lambda n: torch_path(n, Precision(CPU, "bf16", False)),
        "bf16 autocast + channels_last": lambda n: torch_path(n, Precision(CPU, "bf16", True)),
        "torch.jit trace + freeze (BN folded)": jit_freeze_path,
    }
    if all(importlib.util.find_spec(name) for name in ("onnx", "onnxruntime")):  # onnx: torch's exporter needs it
        paths["ONNX Runtime fp32"] = onnxruntime_path
    if backends.openvino_installed():
        paths["OpenVINO fp32"] = lambda n: openvino_path(n, "fp32")
        paths["OpenVINO bf16"] = lambda n: openvino_path(n, "bf16")
    return paths


def shipped_ms_per_slice(repeats: int, backend: str = "auto") -> tuple[float, str]:
    """Ours as shipped: segment_volume with its automatic choices on a 48-slice 256x256 scan, after the process has
    warmed up long enough for 'auto' to settle on its backend (the whole pipeline: normalise, batch, sigmoid,
    restore size, clean-up)."""
    model = load_model("default")
    image = np.random.default_rng(0).integers(0, 255, (48, SIZE, SIZE, 3), dtype=np.uint8)
    warm_until = time.perf_counter() + 2 * backends.CONVERT_AFTER_SECONDS + 1
    options = SegmentOptions(backend=backend)
    while time.perf_counter() < warm_until:
        label = list(segment_steps(model, image, options, rgb=True))[-1].runs_on
    return 1000 * best_of(repeats, lambda: segment_volume(model, image, options, rgb=True)) / len(image), label


def print_inference_table(repeats: int) -> None:
    """Each row is printed as soon as it is measured, so a path that fails still leaves the rows before it."""
    x = torch.rand(BATCH, SHIPPED.inputs.channels, SIZE, SIZE)
    gflop = flops_per_slice(build_network(SHIPPED).eval()) / 1e9
    ceilings = {"fp32": matmul_ceiling(torch.float32, repeats), "bf16": matmul_ceiling(torch.bfloat16, repeats)}
    best_ceiling = max(ceilings.values())
    print(f"\nInference: default model, batch {BATCH}, {SIZE}x{SIZE}, {gflop:.2f} GFLOP/slice, best of {repeats}\n")
    print("| path | ms/slice | GFLOP/s | x eager fp32 | % of best ceiling |\n|---|---|---|---|---|")
    eager = None
    for name, measure in timed_paths(x, repeats).items():
        ms, label = measure()
        eager = eager or ms
        rate = gflop / ms * 1000
        print(f"| {name}{label} | {ms:.1f} | {rate:.0f} | {eager / ms:.2f} | {100 * rate / best_ceiling:.0f} |")
    for kind, rate in ceilings.items():
        print(f"| matmul ceiling {kind} (2048^3, same cores) | {1000 * gflop / rate:.1f} | {rate:.0f} | "
              f"{eager * rate / gflop / 1000:.2f} | {100 * rate / best_ceiling:.0f} |")


def timed_paths(x: torch.Tensor, repeats: int) -> dict[str, Callable[[], tuple[float, str]]]:
    """(ms/slice, what ran) of each candidate path on batch `x`, then of ours as shipped, measured when called."""

    def measure(make: Callable[[torch.nn.Module], Callable[[torch.Tensor], object]]) -> tuple[float, str]:
        run = make(load_model("default").network)
        return 1000 * best_of(repeats, lambda: run(x)) / BATCH, ""

    paths = {name: functools.partial(measure, make) for name, make in inference_paths().items()}
    paths["ours without the fast-cpu extra, pipeline included, ran as: "] = (
        lambda: shipped_ms_per_slice(repeats, "torch")
    )
    paths["**ours as shipped**, pipeline included, ran as: "] = lambda: shipped_ms_per_slice(repeats)
    return paths


def training_samples_per_second(precision: Precision, size: int, steps: int) -> float:
    """A bare training step (forward, Dice+BCE, backward, Adam) on a fixed batch: the model's share of training."""
    torch.manual_seed(0)
    network = prepare_network(build_network(SHIPPED).train(), precision)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    loss_fn = SegmentationLoss()
    x = prepare_batch(torch.rand(BATCH, SHIPPED.inputs.channels, size, size), precision)
    y = (torch.rand(BATCH, 1, size, size) > 0.7).float()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(precision):
            loss = loss_fn(network(x), y)
        loss.backward()
        optimizer.step()

    return BATCH * steps / best_of(1, lambda: [step() for _ in range(steps)])


def print_training_table(steps: int) -> None:
    ours = choose(CPU, "auto")
    print(f"\nTraining: bare step (fwd + Dice+BCE + bwd + Adam), batch {BATCH}, {steps} steps after one warm-up\n")
    print("| image size | eager fp32 samples/s | ours samples/s | ours | speed-up |\n|---|---|---|---|---|")
    for size in (128, 256):
        eager = training_samples_per_second(choose(CPU, "fp32"), size, steps)
        fast = training_samples_per_second(ours, size, steps)
        print(f"| {size} | {eager:.1f} | {fast:.1f} | {ours.label} | {fast / eager:.2f} |")


def resident_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_probe(precision: str, backend: str) -> None:
    """Run in a fresh process: peak RSS growth and seconds of one 155-slice 240x240 RGB volume, end to end. The peak
    is reset after loading (Linux clear_refs), so loading's own transient peak cannot hide the pipeline's."""
    model = load_model("default")
    image = np.random.default_rng(0).integers(0, 4000, (155, 240, 240, 3), dtype=np.uint16)
    Path("/proc/self/clear_refs").write_text("5")
    before = resident_mib("VmRSS")
    started = time.perf_counter()
    last = list(segment_steps(model, image, SegmentOptions(precision=precision, backend=backend), rgb=True))[-1]
    seconds = time.perf_counter() - started
    peak = resident_mib("VmHWM")
    outputs = (last.result.probability.nbytes + last.result.mask.nbytes) / 2**20
    print(json.dumps({"label": last.runs_on, "seconds": seconds, "growth_mb": peak - before, "outputs_mb": outputs,
                      "input_mb": image.nbytes / 2**20}))


def print_memory_table(threads: int) -> None:
    print("\nOne 155-slice 240x240 RGB volume in a fresh process (model loaded; includes the automatic choice)\n")
    print("| path | seconds | peak RSS growth MiB | input / outputs MiB, for scale |\n|---|---|---|---|")
    for precision, backend in (("fp32", "torch"), ("auto", "auto"), ("auto", "openvino")):
        if backend == "openvino" and not backends.openvino_installed():
            continue
        out = subprocess.run(
            [sys.executable, __file__, "--threads", str(threads), "--memory-probe", precision, backend],
            capture_output=True, text=True, check=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"| {r['label']} (precision={precision}, backend={backend}) | {r['seconds']:.2f} | "
              f"{r['growth_mb']:.0f} | {r['input_mb']:.0f} / {r['outputs_mb']:.0f} |")


def print_equivalence_table(lgg: Path, patients: int) -> None:
    """Dice against the manual masks, eager fp32 vs ours, on the default model's validation patients."""
    names = load_model("default").config.training.patients("validation")[:patients]
    eager, shipped = load_model("default"), load_model("default")
    print(f"\nSame answers: {len(names)} validation patients, per-volume Dice against the manual mask\n")
    print("| patient | slices | eager fp32 | ours | change | Dice ours vs eager |\n|---|---|---|---|---|---|")
    changes = []
    for name in names:
        scan = load_patient(lgg / name, require_masks=True)
        reference = segment_volume(
            eager, scan.image, SegmentOptions(precision="fp32", backend="torch"), rgb=scan.rgb
        ).mask
        last = list(segment_steps(shipped, scan.image, rgb=scan.rgb))[-1]
        a, b = volume_scores(reference, scan.mask).dice, volume_scores(last.result.mask, scan.mask).dice
        changes.append(b - a)
        print(f"| {name} ({last.runs_on}) | {len(scan.image)} | {a:.4f} | {b:.4f} | {b - a:+.4f} | "
              f"{volume_scores(last.result.mask, reference).dice:.4f} |")
    print(f"\nlargest |change| {max(abs(c) for c in changes):.4f}, mean change {np.mean(changes):+.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="default: OMP_NUM_THREADS, else physical cores")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--lgg", type=Path, help="kaggle_3m folder for the same-answers table")
    parser.add_argument("--patients", type=int, default=5)
    parser.add_argument("--only", type=lambda v: v.split(","), default=list(SECTIONS),
                        help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})")
    parser.add_argument("--memory-probe", nargs=2, metavar=("PRECISION", "BACKEND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    threads = set_threads(args.threads)
    sys.stdout.reconfigure(line_buffering=True)  # every row reaches a log as soon as it is measured
    if args.memory_probe:
        memory_probe(*args.memory_probe)
        return
    print(f"CPU: {cpu_model()}; {threads} threads; native bf16: {native_bf16_cpu()}; torch {torch.__version__}; "
          f"automatic choice: {choose(CPU).label}")
    if "inference" in args.only:
        print_inference_table(args.repeats)
    if "training" in args.only:
        print_training_table(args.train_steps)
    if "memory" in args.only:
        print_memory_table(threads)
    if args.lgg and "answers" in args.only:
        print_equivalence_table(args.lgg, args.patients)


if __name__ == "__main__":
    main()
