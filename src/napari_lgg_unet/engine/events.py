"""What the training generator reports: one small type per kind of moment, handled with `match` by its drivers."""

from __future__ import annotations

from dataclasses import dataclass, field

from .settings import AS_IS


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
class ValidationScores:
    """Validation figures of one input variant: loss (mean over slices), Dice / IoU / accuracy (mean over volumes)."""

    loss: float
    dice: float
    iou: float
    accuracy: float

    def row(self, variant: str) -> dict[str, float]:
        """As history columns: val_dice for as-is, val_dice_flair_only for the others."""
        return {_column(name, variant): value for name, value in vars(self).items()}

    @classmethod
    def from_row(cls, row: dict, variant: str) -> "ValidationScores | None":
        """The figures of `variant` in a history row; None when the row has none for it."""
        values = {name: row.get(_column(name, variant)) for name in cls.__dataclass_fields__}
        return None if None in values.values() else cls(**values)


def _column(name: str, variant: str) -> str:
    return f"val_{name}" + ("" if variant == AS_IS else "_" + variant.replace("-", "_"))


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch: what history.json / history.csv hold as one row (`row()`), typed.

    `validation` holds the figures of each validated input variant (none without validation patients);
    `selection_loss`, their mean loss, picks the best model.
    """

    epoch: int
    train_loss: float
    lr: float
    seconds: float
    validation: dict[str, ValidationScores] = field(default_factory=dict)
    selection_loss: float | None = None

    @property
    def main_validation(self) -> ValidationScores | None:
        """The as-is figures, else the first variant's (what a progress line or the loss plot shows)."""
        return self.validation.get(AS_IS, next(iter(self.validation.values()), None))

    def row(self) -> dict:
        scores = {key: value for variant, s in self.validation.items() for key, value in s.row(variant).items()}
        chosen = {} if self.selection_loss is None else {"selection_loss": self.selection_loss}
        return {"epoch": self.epoch, "train_loss": self.train_loss, "lr": self.lr, "seconds": self.seconds,
                **scores, **chosen}

    @classmethod
    def from_row(cls, row: dict, variants: tuple[str, ...]) -> "EpochRecord":
        """A history row back as a record; `variants` are the input variants the run validated on."""
        validation = {v: s for v in variants if (s := ValidationScores.from_row(row, v)) is not None}
        return cls(row["epoch"], row["train_loss"], row["lr"], row["seconds"], validation, row.get("selection_loss"))


@dataclass(frozen=True)
class EpochEnd:
    """An epoch was validated; `record` is its figures, `history` every finished epoch's so far."""

    epoch: int
    epochs: int
    record: EpochRecord
    best_epoch: int
    best_val_loss: float
    history: list[EpochRecord] = field(default_factory=list)


@dataclass(frozen=True)
class Finished:
    """Training ended, normally or because it was asked to stop; the best model is in `model_dir`."""

    model_dir: str
    best_epoch: int | None
    best_val_loss: float | None
    stopped: bool
    history: list[EpochRecord] = field(default_factory=list)
    message: str = ""


TrainingEvent = Prepared | Step | EpochEnd | Finished
