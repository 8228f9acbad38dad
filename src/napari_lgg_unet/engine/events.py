"""What the training generator reports: one small type per kind of moment, handled with `match` by its drivers."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Prepared:
    """Data is ready and training is about to start (or continue, from `first_epoch`)."""

    message: str
    first_epoch: int
    epochs: int
    steps: int
    model_dir: str


@dataclass(frozen=True)
class Step:
    """One optimisation step finished."""

    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    eta_seconds: float


@dataclass(frozen=True)
class EpochEnd:
    """An epoch was validated; `record` is its history row (train_loss, val_loss, val_dice, ...)."""

    epoch: int
    epochs: int
    record: dict
    best_epoch: int
    best_val_loss: float
    history: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Finished:
    """Training ended, normally or because it was asked to stop; the best model is in `model_dir`."""

    model_dir: str
    best_epoch: int | None
    best_val_loss: float | None
    stopped: bool
    history: list[dict] = field(default_factory=list)
    message: str = ""


TrainingEvent = Prepared | Step | EpochEnd | Finished
