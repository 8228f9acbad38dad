"""Choose a model's threshold and clean-up on validation patients, so its config carries the best settings.

The network runs once per patient, and each threshold labels its 3D pieces once: every (min_size, min_confidence)
candidate then only chooses which pieces to keep, scored from per-piece counts (the same Dice as postprocess()).
"Keep only the largest piece" competes only when asked for: it can delete the tumour on a scan with a larger
false piece, a failure a handful of validation patients rarely shows (see postprocess.py).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from itertools import product
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from scipy import ndimage

from .errors import InputError
from .cohort import PATIENT_FOLDERS, SAME_PATIENTS, check_same_cases, loaded_scans, segment_scan
from .distributed import Group
from .io import ScanSource, check_masks
from .metrics import Counts, scores
from .model import LoadedModel, ModelConfig, read_config, saved_config, write_config
from .postprocess import PostprocessConfig, kept_pieces, piece_peaks
from .predict import SegmentOptions
from .run_folder import CALIBRATION, RunFolder
from .records import Calibration, KeepLargestScore
from .settings import check_variants, option_and_flag

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
MIN_SIZES = (0, 50, 200, 500, 1000)
MIN_CONFIDENCES = (0.0, 0.8, 0.9, 0.95)


def candidates(keep_largest: bool = False) -> Iterator[PostprocessConfig]:
    """Every post-processing setting calibration tries; with `keep_largest`, also largest-piece-only per threshold."""
    for threshold, min_size, min_confidence in product(THRESHOLDS, MIN_SIZES, MIN_CONFIDENCES):
        if min_confidence == 0 or min_confidence > threshold:
            yield PostprocessConfig(threshold, min_size, min_confidence=min_confidence)
    if keep_largest:
        yield from (PostprocessConfig(threshold, keep_largest=True) for threshold in THRESHOLDS)


def validation_cases(
    model: LoadedModel, folders: Sequence[ScanSource], tta: bool = False, variants: tuple[str, ...] = ("as-is",),
    group: Group = Group(),
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(probability, truth) of every patient in `folders` (with a torchrun job's `group`, of this process's share of
    them) under every input variant (see evaluate.INPUT_VARIANTS), patient by patient: a patient's variants follow
    each other, so each scan is read once. Variants are distinct, as `train --validate-on`'s: one named twice counted
    twice in the mean that chooses the setting, and was recorded so, where a user meant it once."""
    folders = list(folders)
    if not folders:
        raise InputError("no validation patients to calibrate on")
    variants = check_variants("calibration input variants", variants)
    check_masks(folders)  # every patient without one named at once, before the model runs
    check_same_cases(group, folders, SAME_PATIENTS, **{option_and_flag("variants", flag="--input-variants"): variants})
    options = SegmentOptions(tta=tta)
    with group.own_failures():  # a patient of this process's share: no other process can say which failed, or why
        return [
            (segment_scan(model, scan, options, variant).result.probability, scan.mask)
            for scan in loaded_scans(group.share(folders), True, 0)
            for variant in variants
        ]


@dataclass(frozen=True)
class Pieces:
    """The 3D pieces of one volume above one threshold: size, peak probability and voxels shared with the truth."""

    sizes: np.ndarray
    peaks: np.ndarray
    overlaps: np.ndarray
    truth_voxels: int
    voxels: int

    @classmethod
    def of(cls, probability: np.ndarray, truth: np.ndarray, threshold: float) -> "Pieces":
        truth = np.asarray(truth) > 0
        if truth.shape != probability.shape:
            raise InputError(f"prediction shape {probability.shape} differs from ground truth shape {truth.shape}")
        labels, n = ndimage.label(probability >= threshold)
        return cls(
            sizes=np.bincount(labels.ravel(), minlength=n + 1)[1:],
            peaks=piece_peaks(probability, labels, n),
            overlaps=np.bincount(labels[truth], minlength=n + 1)[1:],
            truth_voxels=int(np.count_nonzero(truth)),
            voxels=int(probability.size),
        )

    def dice(self, config: PostprocessConfig) -> float:
        """Per-volume Dice of postprocess(probability, config) against the truth, from the piece counts alone."""
        keep = kept_pieces(self.sizes, self.peaks, config)
        tp, predicted = int(self.overlaps[keep].sum()), int(self.sizes[keep].sum())
        fp, fn = predicted - tp, self.truth_voxels - tp
        return scores(Counts(tp, fp, fn, self.voxels - tp - fp - fn)).dice


def candidate_scores(
    model: LoadedModel, folders: Sequence[ScanSource], tta: bool = False, keep_largest: bool = False,
    variants: tuple[str, ...] = ("as-is",), group: Group = Group(),
) -> Iterator[tuple[PostprocessConfig, float]]:
    """Mean per-volume Dice over `folders` (and input `variants`) of every post-processing candidate.

    With a torchrun job's `group` each process segments its share of the patients and scores every candidate on them:
    the means need each volume's Dice per candidate only, gathered on every process, not its probabilities."""
    settings, folders = list(candidates(keep_largest)), list(folders)
    cases = validation_cases(model, folders, tta, variants, group)  # refuses a variant named twice
    pieces = {t: [Pieces.of(prob, truth, t) for prob, truth in cases] for t in sorted({c.threshold for c in settings})}
    dice = [[pieces[config.threshold][case].dice(config) for config in settings] for case in range(len(cases))]
    width = len(variants) * len(settings)  # a patient's row: its Dice per candidate under each variant in turn
    patients = [sum(dice[start : start + len(variants)], []) for start in range(0, len(dice), len(variants))]
    table = np.array(group.gather(patients, len(folders), width)).reshape(-1, len(settings))  # a row per volume
    for column, config in enumerate(settings):
        yield config, float(np.mean(table[:, column]))


def calibrate(
    model: LoadedModel, folders: list[Path], model_dir: str | Path, tta: bool = False, keep_largest: bool = False,
    variants: tuple[str, ...] = ("as-is",), group: Group = Group(),
) -> tuple[PostprocessConfig, Calibration]:
    """Write the best candidate into the model folder's config.json (weights untouched) and return it with the
    calibration record saved beside it (its mean Dice, ...); with several `variants`, the candidate best on average
    over all of them. The best "keep only the largest piece" setting is scored either way and recorded beside the
    choice, so the config says what it lost to.

    The folder is locked as training locks it, for the whole calibration: a training that writes the folder (and
    would replace config.json at its next save) refuses to start, and calibrating a folder in training is refused.
    `model` must be the one the folder holds: a config of other weights written over its config.json would be
    ignored by loading (it pairs weights with their own config) and lose what config.json held.

    With a torchrun job's `group` the patients are shared out (`candidate_scores`); rank 0 alone locks and writes
    the folder, and every process returns the same choice.
    """
    variants = check_variants("calibration input variants", variants)  # before the folder is locked
    with contextlib.ExitStack() as held:

        def claim() -> None:  # rank 0's alone under torchrun: it writes config.json, the others wait for its verdict
            held.enter_context(RunFolder(model_dir).locked(CALIBRATION))
            if saved_config(model_dir).weights_id != model.config.weights_id:  # another's, or a save since loading
                raise InputError(f"{model_dir} no longer holds the model being calibrated (it was saved again after "
                                 "loading, or it is another model's folder); load the model from that folder again")

        group.on_main(claim)
        scored = list(candidate_scores(model, folders, tta, True, variants, group))
        best, best_dice = max((item for item in scored if keep_largest or not item[0].keep_largest), key=lambda i: i[1])
        largest, largest_dice = max((item for item in scored if item[0].keep_largest), key=lambda i: i[1])
        calibration = Calibration([f.name for f in folders], list(variants), best_dice,
                                  KeepLargestScore(largest.threshold, largest_dice))
        training = replace(model.config.training, calibration=calibration)
        if group.is_main:
            write_config(replace(model.config, postprocess=best, training=training), model_dir)
    return best, calibration


def adopt_calibration(source: str | Path, model_dir: str | Path) -> PostprocessConfig:
    """Give the model in `model_dir` the threshold and clean-up chosen for the model `source` (a folder or
    'default'), recording where they came from; returns them.

    For a model trained on every patient with a recipe chosen on a split: it has no validation patients to calibrate
    on, and the recipe's own model was calibrated on that split's, so its choice is the one with evidence behind it.
    """
    chosen = read_config(source)
    if chosen.training.calibration is None:
        raise InputError(f"{source} records no calibration to adopt; calibrate it first (lgg-unet calibrate)")
    _check_same_recipe(source, chosen, saved_config(model_dir))  # before a lock file is made in the folder
    with RunFolder(model_dir).locked(CALIBRATION):
        target = saved_config(model_dir)  # what loading the model reads, as calibrate() keeps the loaded config
        _check_same_recipe(source, chosen, target)  # it may have changed while the lock was free
        adopted_from = f"{source} (weights {chosen.weights_id})"  # a name like 'default' changes meaning later
        calibration = replace(chosen.training.calibration, adopted_from=adopted_from)
        training = replace(target.training, calibration=calibration)
        write_config(replace(target, postprocess=chosen.postprocess, training=training), model_dir)
    return chosen.postprocess


def _check_same_recipe(source: str | Path, chosen: ModelConfig, target: ModelConfig) -> None:
    """Refuse to adopt a calibration across recipes. A threshold and clean-up are read off one network's probabilities;
    they carry over to a network of the same recipe trained on other patients, not to one that reads other inputs
    (image size, intensity normalisation, neighbouring slices, click channels), is built otherwise (encoder, decoder
    widths) or learnt another loss (dice's probabilities are far sharper than BCE's). A click's radius and reach are
    not compared: a calibration segments without clicks."""
    differences = [f"{what} {theirs} vs {ours} here" for what, theirs, ours in (
        ("encoder", chosen.encoder, target.encoder),
        ("decoder channels", chosen.decoder_channels, target.decoder_channels),
        ("image size", chosen.preprocess.image_size, target.preprocess.image_size),
        ("intensity percentiles", (chosen.preprocess.low_percentile, chosen.preprocess.high_percentile),
         (target.preprocess.low_percentile, target.preprocess.high_percentile)),
        ("neighbouring slices", chosen.inputs.context_slices, target.inputs.context_slices),
        ("click inputs", chosen.inputs.clicks, target.inputs.clicks),
        ("loss", _loss(chosen), _loss(target)),
    ) if theirs != ours and None not in (theirs, ours)]
    if differences:
        raise InputError(f"{source} is not of this model's recipe ({'; '.join(differences)}), so its threshold and "
                         f"clean-up would mean nothing here; calibrate this model itself on {PATIENT_FOLDERS} of "
                         "patients with masks")


def _loss(config: ModelConfig) -> str | None:
    """The training loss as recorded, e.g. 'dice+bce (BCE weight 1.0)'; None for a model trained elsewhere."""
    recorded = config.training.config
    if "loss" not in recorded:
        return None
    if recorded["loss"] == "dice+bce":
        return f"dice+bce (BCE weight {recorded.get('bce_weight')})"
    return str(recorded["loss"])
