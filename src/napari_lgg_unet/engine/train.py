"""The training loop as a generator of progress events.

The CLI drives it with a progress bar, the napari widget from a thread worker, tests by iterating it.
Asking it to stop (the `stop` callable returns True) ends it between steps; the best model so far is kept.
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from .atomic import write_text_atomic
from .checkpoint import has_resume_state, load_resume_state, save_resume_state
from .dataset import (
    AugmentConfig,
    SliceDataset,
    TrainingVolume,
    prepare_training_volume,
    split_patients,
    split_single_volume,
    tumour_aware_sampler,
)
from .device import OOM_ADVICE, is_out_of_memory, pick_device, release_memory
from .errors import DeviceError, InputError
from .io import Scan
from .losses import SegmentationLoss
from .metrics import Counts, count, scores
from .model import CONFIG_FILE, ModelConfig, build_network, load_model, save_model
from .preprocess import PreprocessConfig


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; defaults follow the reference workflow (Adam 1e-4, batch 32, 10 epochs)."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-4
    lr_schedule: str = "constant"
    val_fraction: float = 0.1
    test_fraction: float = 0.0
    seed: int = 0
    image_size: int = 256
    encoder: str = "resnet18"
    decoder_channels: tuple[int, ...] = (128, 64, 32, 16, 8)
    loss: str = "dice+bce"
    bce_weight: float = 1.0
    augment: AugmentConfig = AugmentConfig()
    tumour_fraction: float | None = 0.5
    hard_negatives: float = 0.0  # share of empty-slice draws weighted by the model's false positives
    hard_negatives_every: int = 1  # epochs between refreshes of those weights
    skip_unlabelled: bool = False
    workers: int | None = None
    device: str = "auto"
    init: str | None = None
    amp: bool = True
    steps_per_epoch: int | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise InputError("epochs and batch size must be at least 1 and the learning rate positive")
        if self.lr_schedule not in ("constant", "cosine"):
            raise InputError("learning-rate schedule must be 'constant' or 'cosine'")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["decoder_channels"] = list(self.decoder_channels)
        return data


@dataclass
class TrainingEvent:
    """One progress report. kind: 'prepared', 'step', 'epoch' or 'finished'."""

    kind: str
    epoch: int
    epochs: int
    step: int = 0
    steps: int = 0
    loss: float | None = None
    metrics: dict = field(default_factory=dict)
    eta_seconds: float | None = None
    best_epoch: int | None = None
    best_val_loss: float | None = None
    model_dir: str = ""
    message: str = ""
    stopped: bool = False
    history: list[dict] = field(default_factory=list)


@dataclass
class _Split:
    train: list[TrainingVolume]
    val: list[TrainingVolume]
    names: dict[str, list[str]]


def _prepare(scans: list[Scan], config: TrainConfig, preprocess: PreprocessConfig) -> _Split:
    if not scans:
        raise InputError("no scans to train on")
    names = [s.name for s in scans]
    if len(set(names)) != len(names):
        raise InputError("two training scans have the same name; names identify patients in the split")
    train_names, val_names, test_names = split_patients(names, config.val_fraction, config.test_fraction, config.seed)
    volumes = {s.name: prepare_training_volume(s, preprocess, config.skip_unlabelled) for s in scans}
    volumes = {name: v for name, v in volumes.items() if len(v.mask)}
    if not volumes:
        raise InputError("no labelled slices to learn from: paint tumour on at least one slice")
    if not any(v.mask.any() for v in volumes.values()):
        raise InputError("the labels are empty: paint tumour on at least one slice")
    train = [volumes[n] for n in train_names if n in volumes]
    val = [volumes[n] for n in val_names if n in volumes]
    if len(volumes) == 1 and config.val_fraction > 0:
        only = next(iter(volumes.values()))
        if len(only.mask) >= 2:
            held_in, held_out = split_single_volume(only, config.val_fraction)
            train, val = [held_in], [held_out]
    if not train:
        raise InputError("nothing left to train on after the validation split; lower the validation fraction")
    return _Split(train, val, {"train": train_names, "validation": val_names, "test": test_names})


def _learning_rate(config: TrainConfig, progress: float) -> float:
    if config.lr_schedule == "cosine":
        return config.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return config.lr


def _validate(
    network: torch.nn.Module, volumes: list[TrainingVolume], loss_fn: SegmentationLoss,
    device: torch.device, batch_size: int,
) -> dict:
    """Validation loss (mean over slices) and per-volume Dice/IoU/accuracy (mean over volumes)."""
    network.eval()
    total_loss, slices, per_volume = 0.0, 0, []
    with torch.no_grad():
        for volume in volumes:
            counts = Counts(0, 0, 0, 0)
            for start in range(0, len(volume.mask), batch_size):
                x = torch.from_numpy(volume.image[start : start + batch_size].astype(np.float32)).to(device)
                y = torch.from_numpy(volume.mask[start : start + batch_size, None]).to(device)
                logits = network(x)
                total_loss += float(loss_fn(logits, y)) * len(x)
                slices += len(x)
                counts = counts + count((logits > 0).cpu().numpy(), y.cpu().numpy())
            per_volume.append(scores(counts))
    network.train()
    return {
        "val_loss": total_loss / max(slices, 1),
        "val_dice": float(np.mean([s.dice for s in per_volume])),
        "val_iou": float(np.mean([s.iou for s in per_volume])),
        "val_accuracy": float(np.mean([s.accuracy for s in per_volume])),
    }


def _write_history(folder: Path, history: list[dict]) -> None:
    write_text_atomic(folder / "history.json", json.dumps(history, indent=1) + "\n")
    if history:
        buffer = _io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(history[-1].keys()))
        writer.writeheader()
        writer.writerows(history)
        write_text_atomic(folder / "history.csv", buffer.getvalue())


def _initial_network(config: TrainConfig, preprocess: PreprocessConfig) -> tuple[torch.nn.Module, ModelConfig]:
    if config.init:
        loaded = load_model(config.init, "cpu")
        model_config = replace(loaded.config, preprocess=replace(loaded.config.preprocess, image_size=preprocess.image_size))
        return loaded.network.train(), model_config
    model_config = ModelConfig(encoder=config.encoder, decoder_channels=config.decoder_channels, preprocess=preprocess)
    return build_network(model_config), model_config


def train_model(
    scans: list[Scan], config: TrainConfig, out_dir: str | Path, stop: Callable[[], bool] | None = None
) -> Iterator[TrainingEvent]:
    """Train on `scans` (each with a mask), saving the best model by validation loss in `out_dir`.

    Yields a 'prepared' event, a 'step' event per optimisation step, an 'epoch' event after each validation
    and one 'finished' event (with stopped=True if `stop` asked for it).
    """
    stop = stop or (lambda: False)
    out = Path(out_dir)
    if not config.resume and (out / CONFIG_FILE).exists():
        raise InputError(f"{out} already holds a model; choose a new output folder, or resume its run with --resume")
    torch.manual_seed(config.seed)
    device = pick_device(config.device)
    preprocess = PreprocessConfig(image_size=config.image_size)
    network, model_config = _initial_network(config, preprocess)
    split = _prepare(scans, config, preprocess)
    network.to(device).train()
    optimizer = torch.optim.Adam(network.parameters(), lr=config.lr)
    loss_fn = SegmentationLoss(config.loss, config.bce_weight)
    dataset = SliceDataset(split.train, config.augment, config.seed)
    steps = config.steps_per_epoch or max(1, len(dataset) // config.batch_size)
    workers = config.workers if config.workers is not None else (os.cpu_count() or 0)
    history: list[dict] = []
    best_loss, best_epoch, start_epoch, elapsed_before = math.inf, None, 0, 0.0
    out.mkdir(parents=True, exist_ok=True)
    if config.resume and has_resume_state(out):
        progress = load_resume_state(out, network, optimizer)
        history, start_epoch = progress["history"], progress["epochs_done"]
        best_loss, best_epoch = progress["best_val_loss"], progress["best_epoch"]
        elapsed_before = progress.get("seconds", 0.0)
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    provenance = {
        "config": config.to_dict(),
        "split": split.names,
        "train_slices": len(dataset),
        "device": str(device),
    }
    yield TrainingEvent(
        "prepared", start_epoch, config.epochs, steps=steps, model_dir=str(out),
        message=f"{len(split.train)} training and {len(split.val)} validation volumes, {len(dataset)} slices, on {device}",
    )
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=tumour_aware_sampler(dataset, steps * config.batch_size, config.tumour_fraction, config.seed + start_epoch),
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",
        drop_last=len(dataset) >= config.batch_size,
        worker_init_fn=_single_thread_worker,
    )
    started, step_times = time.perf_counter(), []
    stopped = False
    total_steps = config.epochs * steps
    try:
        for epoch in range(start_epoch, config.epochs):
            epoch_loss, seen = 0.0, 0
            for step, (x, y) in enumerate(loader, start=1):
                if stop():
                    stopped = True
                    break
                t0 = time.perf_counter()
                for group in optimizer.param_groups:
                    group["lr"] = _learning_rate(config, (epoch * steps + step - 1) / total_steps)
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                    loss = loss_fn(network(x), y)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise InputError("training diverged (loss is not finite); lower the learning rate")
                epoch_loss += value * len(x)
                seen += len(x)
                step_times.append(time.perf_counter() - t0)
                remaining = (config.epochs - epoch) * steps - step
                yield TrainingEvent(
                    "step", epoch + 1, config.epochs, step, steps, loss=value,
                    eta_seconds=float(np.mean(step_times[-50:])) * remaining * 1.1,
                    best_epoch=best_epoch, best_val_loss=None if best_epoch is None else best_loss, model_dir=str(out),
                )
            if stopped and best_epoch is not None:
                break  # stop promptly; the best model is already on disk
            metrics = _validate(network, split.val, loss_fn, device, config.batch_size) if split.val else {}
            train_loss = epoch_loss / max(seen, 1)
            record = {"epoch": epoch + 1, "train_loss": train_loss, "lr": optimizer.param_groups[0]["lr"],
                      "seconds": round(elapsed_before + time.perf_counter() - started, 1), **metrics}
            history.append(record)
            monitored = metrics.get("val_loss", train_loss)
            if monitored < best_loss or best_epoch is None:
                best_loss, best_epoch = monitored, epoch + 1
                training = {**provenance, "best_epoch": best_epoch, "history": history}
                save_model(network, replace(model_config, training=training), out)
            _write_history(out, history)
            save_resume_state(out, network, optimizer, {
                "epochs_done": epoch + 1, "history": history, "best_val_loss": best_loss,
                "best_epoch": best_epoch, "seconds": record["seconds"],
            })
            yield TrainingEvent(
                "epoch", epoch + 1, config.epochs, steps, steps, loss=train_loss, metrics=record,
                best_epoch=best_epoch, best_val_loss=best_loss, model_dir=str(out), history=list(history),
                stopped=stopped,
            )
            if stopped:
                break
    except RuntimeError as error:
        if is_out_of_memory(error):
            raise DeviceError(OOM_ADVICE) from None
        raise
    finally:
        release_memory(device)
    yield TrainingEvent(
        "finished", len(history) and history[-1]["epoch"], config.epochs, best_epoch=best_epoch,
        best_val_loss=best_loss if best_epoch else None, model_dir=str(out), stopped=stopped,
        history=list(history),
        message=f"best epoch {best_epoch} (validation loss {best_loss:.4f}), model in {out}" if best_epoch else "no epoch finished",
    )


def _single_thread_worker(_: int) -> None:
    """Loader workers do light work; one thread each keeps them from fighting the training threads."""
    torch.set_num_threads(1)
