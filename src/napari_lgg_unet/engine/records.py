"""What a model folder records about how it was made: its training provenance and its calibration.

They are typed so that train.py writes, calibrate.py adds to, and the CLI reads the same fields by name. They load
from config.json with `validate.from_json` (unknown keys ignored, missing ones default), so config.json files written
before a field existed, e.g. the shipped default model's, still load.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class KeepLargestScore:
    """The best "keep only the largest piece" setting calibration scored, beside the one it chose."""

    threshold: float = 0.5
    mean_dice: float = 0.0


@dataclass(frozen=True)
class Calibration:
    """Where a model's threshold and clean-up were chosen (`calibrate.calibrate`) and how well they scored."""

    patients: list[str] = field(default_factory=list)
    input_variants: list[str] = field(default_factory=lambda: ["as-is"])
    mean_dice: float = 0.0
    best_keep_largest: KeepLargestScore | None = None
    adopted_from: str | None = None  # the model of the same recipe these settings were chosen for, if not this one


@dataclass(frozen=True)
class TrainingRecord:
    """How a model was trained: its settings (`TrainConfig.to_dict()`), patient split, data, device and history.

    `history` holds one `EpochRecord.row()` per finished epoch, as history.json does. `averaged_from` names the
    checkpoints whose mean the weights are (scripts/average_weights.py); `best_epoch` is then None, since no single
    epoch's weights were kept.
    """

    config: dict = field(default_factory=dict)
    split: dict[str, list[str]] = field(default_factory=dict)
    train_slices: int = 0
    device: str = ""
    processes: int = 1
    best_epoch: int | None = None
    history: list[dict] = field(default_factory=list)
    calibration: Calibration | None = None
    averaged_from: list[str] = field(default_factory=list)

    def patients(self, split: str) -> list[str]:
        """The patients of one split ('train', 'validation' or 'test'); none for a model trained elsewhere."""
        return list(self.split.get(split, []))
