"""Choose a model's threshold and clean-up on validation patients, so its config carries the best settings.

The network runs once per patient; every (threshold, min_size, keep_largest) candidate re-uses the probabilities.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import product
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import InputError
from .io import load_scan
from .metrics import volume_scores
from .model import LoadedModel, PostprocessConfig, write_config
from .predict import postprocess, segment_volume

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
MIN_SIZES = (0, 50, 200, 500, 1000)


def candidate_scores(
    model: LoadedModel, folders: list[Path], tta: bool = False
) -> Iterator[tuple[PostprocessConfig, float]]:
    """Mean per-volume Dice over `folders` of every post-processing candidate."""
    if not folders:
        raise InputError("no validation patients to calibrate on")
    cases = []
    for folder in folders:
        scan = load_scan(folder, require_mask=True)
        cases.append((segment_volume(model, scan.image, rgb=scan.rgb, tta=tta).probability, scan.mask))
    for threshold, min_size, keep_largest in product(THRESHOLDS, MIN_SIZES, (False, True)):
        if keep_largest and min_size:
            continue  # keeping only the largest piece makes a size floor moot
        config = PostprocessConfig(threshold, min_size, keep_largest)
        dice = [volume_scores(postprocess(prob, config), truth).dice for prob, truth in cases]
        yield config, float(np.mean(dice))


def calibrate(model: LoadedModel, folders: list[Path], model_dir: str | Path, tta: bool = False) -> tuple[PostprocessConfig, float]:
    """Write the best candidate into the model folder's config.json (weights untouched) and return it with its mean Dice."""
    best, best_dice = max(candidate_scores(model, folders, tta), key=lambda item: item[1])
    training = {**model.config.training, "calibration": {"patients": [f.name for f in folders], "mean_dice": best_dice}}
    write_config(replace(model.config, postprocess=best, training=training), model_dir)
    return best, best_dice
