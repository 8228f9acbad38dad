"""Training data: patient-level splits, volumes at model size, augmented slices, tumour-aware and hard-negative
sampling."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, WeightedRandomSampler

from .augment import augment_pair, skull_strip_view
from .backends import forward
from .errors import InputError, few_names
from .io import Scan
from .model_input import InputConfig, assemble, neighbour_indices
from .precision import Precision
from .sequences import FLAIR_CHANNEL as FLAIR
from .preprocess import PreprocessConfig, binarise_mask, channel_view, intensity_ranges, normalise, to_model_size
from .settings import AugmentConfig, TrainConfig, check_setting, check_split
from .stopping import unless_stopped

_INSTITUTION = re.compile(r"^TCGA_(?P<site>[A-Z0-9]+)_")


@dataclass
class TrainingVolume:
    """One scan ready for training: image (Z, 3, S, S) float16 in [0, 1], mask (Z, S, S) bool."""

    name: str
    image: np.ndarray
    mask: np.ndarray

    def network_input(self, slices: np.ndarray, inputs: InputConfig) -> torch.Tensor:
        """Slices `slices` with their neighbours' FLAIR as `inputs` asks (no clicks), (n, channels, S, S) float32."""
        image = torch.from_numpy(self.image[slices].astype(np.float32))
        neighbours = None
        if inputs.context_slices:
            around = neighbour_indices(slices, len(self.mask), inputs)
            neighbours = torch.from_numpy(self.image[around, FLAIR].astype(np.float32))
        return assemble(image, neighbours, None, inputs)


def volume_logits(
    network: torch.nn.Module, volume: TrainingVolume, inputs: InputConfig, batch_size: int, precision: Precision
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """(slice indices, logits (n, 1, S, S) float32) of a whole training volume without clicks, a batch at a time:
    the one inference loop of validation and hard-negative mining (prediction feeds scans the same way)."""
    with torch.inference_mode():
        for start in range(0, len(volume.mask), batch_size):
            slices = np.arange(start, min(start + batch_size, len(volume.mask)))
            yield slices, forward(
                network, volume.network_input(slices, inputs).to(precision.device), precision, "torch"
            )


def institution(name: str) -> str:
    """The TCGA site code ('CS' in TCGA_CS_4941_19960909); other names form one group."""
    match = _INSTITUTION.match(name)
    return match["site"] if match else ""


def check_patient_names(names: list[str]) -> None:
    """Refuse training scans that share a name: names identify patients in the split (`split_patients`) and in the
    model's record, so two of one name would be one patient, perhaps on both sides of the split. The one check for
    the engine, as a run prepares its scans, and for the Train widget, before its run starts (a pair made in napari
    is named after its layer, one opened from a file after the file, and the two may meet)."""
    if repeated := sorted({name for name in names if names.count(name) > 1}):
        raise InputError(f"training scans with the same name: {few_names(repeated)}; names identify patients in the "
                         "split, so give each scan its own name")


def split_patients(
    names: list[str], val_fraction: float, test_fraction: float = 0.0, seed: int = 0
) -> tuple[list[str], list[str], list[str]]:
    """Split patient names into train / validation / test, stratified by institution, deterministic per seed.

    Every patient lands on exactly one side; each non-zero fraction gets at least one patient when possible.
    """
    check_split(val_fraction, test_fraction)
    rng = np.random.default_rng(seed)
    groups: dict[str, list[str]] = {}
    for name in sorted(set(names)):
        groups.setdefault(institution(name), []).append(name)
    # Interleave institutions in shuffled order so any prefix is roughly stratified.
    ordered: list[str] = []
    shuffled = {k: list(rng.permutation(v)) for k, v in sorted(groups.items())}
    positions = []
    for members in shuffled.values():
        offset = rng.random()
        positions += [((i + offset) / len(members), str(m)) for i, m in enumerate(members)]
    ordered = [name for _, name in sorted(positions)]
    total = len(ordered)
    n_test = math.ceil(total * test_fraction - 1e-9) if test_fraction and total > 2 else 0
    n_val = math.ceil(total * val_fraction - 1e-9) if val_fraction and total - n_test > 1 else 0
    test, val, train = ordered[:n_test], ordered[n_test : n_test + n_val], ordered[n_test + n_val :]
    return sorted(train), sorted(val), sorted(test)


def prepare_training_volume(
    scan: Scan, preprocess: PreprocessConfig, skip_unlabelled: bool = False, stop: Callable[[], bool] | None = None
) -> TrainingVolume:
    """Normalise and resize a scan with its mask once, so each epoch only augments. A refusal names the scan. `stop`
    is asked before each 16 slices (raising `stopping.Stopped`): a scan takes 0.6-1.4 s (88 slices of 256 pixels, a
    BraTS scan of 155 at 240, on 2 cores), more at 512 pixels, and training asked only between scans."""
    if scan.mask is None:
        raise InputError(f"{scan.name}: training needs a mask")
    try:
        return _prepared(scan, preprocess, skip_unlabelled, stop)
    except InputError as error:
        raise InputError(f"{scan.name}: {error}") from None


def _prepared(scan: Scan, preprocess: PreprocessConfig, skip_unlabelled: bool,
              stop: Callable[[], bool] | None) -> TrainingVolume:
    """`prepare_training_volume`'s work, 16 slices at a time from the scan as read, as `predict` reads a scan: the
    whole scan normalised at once took 3 float32 copies of it (about 0.8 GB more for a 512 x 512 x 200 scan of
    int16, whose painted labels may cover 20 slices), and normalised the slices without labels only to drop them."""
    view = channel_view(scan.image, scan.rgb)
    ranges = intensity_ranges(view, preprocess, task="training")
    mask = binarise_mask(scan.mask)
    if mask.ndim == 2:
        mask = mask[None]
    if mask.shape != view.shape[:3]:
        raise InputError(f"labels shape {mask.shape} does not match image shape {view.shape[:3]}")
    kept = np.flatnonzero(mask.reshape(len(mask), -1).any(axis=1)) if skip_unlabelled else np.arange(len(mask))
    side = preprocess.image_size
    image, resized = np.zeros((len(kept), 3, side, side), np.float16), np.zeros((len(kept), side, side), bool)
    for start in unless_stopped(range(0, len(kept), 16), stop):
        slices = kept[start : start + 16]
        chunk = torch.from_numpy(normalise(view[slices], ranges, task="training")).permute(0, 3, 1, 2)
        image[start : start + len(slices)] = to_model_size(chunk, side).half().numpy()
        m = torch.from_numpy(mask[slices, None].astype(np.float32))
        resized[start : start + len(slices)] = to_model_size(m, side, mode="bilinear")[:, 0].numpy() > 0.5
    return TrainingVolume(scan.name, image, resized)


def split_single_volume(volume: TrainingVolume, val_fraction: float) -> tuple[TrainingVolume, TrainingVolume]:
    """With only one scan, hold out its last contiguous block of slices (neighbours would leak otherwise): at least
    one, and at most all but one (a large fraction of a few slices rounded to all of them, and a scan of 2 labelled
    slices was told it needed 2)."""
    if len(volume.mask) < 2:
        raise InputError("a single scan needs at least 2 labelled slices to train with validation")
    n_val = min(max(1, round(len(volume.mask) * val_fraction)), len(volume.mask) - 1)
    cut = len(volume.mask) - n_val
    return (
        TrainingVolume(volume.name, volume.image[:cut], volume.mask[:cut]),
        TrainingVolume(volume.name + " (held-out slices)", volume.image[cut:], volume.mask[cut:]),
    )


class SliceDataset(Dataset):
    """Slices of several volumes; with `augment`, each read draws a fresh random transform.

    When skull stripping is on, every volume's brain mask is computed here once, in the main process, before
    loader workers start (about 15 ms per 256-pixel slice), so workers only index it. `stop` is asked before each
    and between its passes over the slices (raising `stopping.Stopped`): they took 70 s for kaggle_3m's 72 training
    patients on 2 busy cores, and a Stop waited for them all, then for the volume in progress (1-4 s).
    """

    def __init__(self, volumes: list[TrainingVolume], augment: AugmentConfig | None = None, seed: int = 0,
                 inputs: InputConfig = InputConfig(), single_slice: float = 0.0,
                 stop: Callable[[], bool] | None = None) -> None:
        self.volumes = volumes
        self.inputs = replace(inputs, clicks=False)  # clicks come from the model's own errors, in the training step
        self.single_slice = single_slice
        self.index = [(v, z) for v, volume in enumerate(volumes) for z in range(len(volume.mask))]
        self.augment = augment if augment is not None and augment.enabled else None
        strip = self.augment is not None and self.augment.skull_strip > 0
        self.stripped = [skull_strip_view(v.image, v.mask, stop) if len(v.mask) else None
                         for v in unless_stopped(volumes, stop)] if strip else [None] * len(volumes)
        self.seed = seed
        self._reads = 0

    def __len__(self) -> int:
        return len(self.index)

    def has_tumour(self) -> np.ndarray:
        return np.array([self.volumes[v].mask[z].any() for v, z in self.index], dtype=bool)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A slice with its neighbours' FLAIR, all moved by one random transform, and its mask.

        With `single_slice` probability the neighbours are the slice itself, as a 2D image would give them.
        """
        v, z = self.index[item]
        volume = self.volumes[v]
        if self.augment is None:
            return (
                volume.network_input(np.array([z]), self.inputs)[0],
                torch.from_numpy(volume.mask[z][None].astype(np.float32)),
            )
        worker = torch.utils.data.get_worker_info()
        self._reads += 1
        stream = (self.seed, worker.id + 1 if worker else 0, torch.initial_seed() % 2**32, self._reads)
        image, mask = self._augmented(v, z, stream)
        if not self.inputs.context_slices:
            return image, mask
        around = neighbour_indices(np.array([z]), len(volume.mask), self.inputs)[0]
        if np.random.default_rng(stream + (1,)).random() < self.single_slice:
            around[:] = z
        flair = torch.stack([self._augmented(v, int(n), stream)[0][FLAIR] for n in around])
        return assemble(image[None], flair[None], None, self.inputs)[0], mask

    def _augmented(self, v: int, z: int, stream: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        """Slice z of volume v under the random transform that `stream` draws (the same stream, the same transform)."""
        volume = self.volumes[v]
        image = torch.from_numpy(volume.image[z].astype(np.float32))
        mask = torch.from_numpy(volume.mask[z][None].astype(np.float32))
        view = self.stripped[v]
        stripped = (view.keep[z], view.ranges) if view is not None else None
        return augment_pair(image, mask, self.augment, np.random.default_rng(stream), stripped)


def hard_negative_weights(
    network: torch.nn.Module, volumes: list[TrainingVolume], precision: Precision, batch_size: int = 16,
    inputs: InputConfig = InputConfig(), stop: Callable[[], bool] | None = None,
) -> np.ndarray | None:
    """How wrong `network` is outside the tumour on each slice, in `SliceDataset(volumes)` order (float64).

    The weight of a slice is its false-positive probability mass: the sum of the predicted probability over
    pixels outside the true mask where it reaches 0.5 (0 where the model is right). One inference pass without
    augmentation; the network's train/eval mode is restored afterwards.

    `stop` is asked after every batch: the pass runs the network over every training slice (minutes on a CPU), and a
    Stop (or Ctrl-C) waited for its end. None when it stopped: the weights of part of the slices are no weights.
    """
    was_training = network.training
    network.eval()
    weights = []
    try:
        for volume in volumes:
            for slices, logits in volume_logits(network, volume, inputs, batch_size, precision):
                prob = torch.sigmoid(logits)[:, 0].cpu().numpy()
                wrong = np.where((prob >= 0.5) & ~volume.mask[slices], prob, 0.0)
                weights.append(wrong.reshape(len(wrong), -1).sum(axis=1, dtype=np.float64))
                if stop is not None and stop():
                    return None
    finally:
        network.train(was_training)
    return np.concatenate(weights) if weights else np.zeros(0)


def sampling_weights(
    has_tumour: np.ndarray, tumour_fraction: float | None,
    negative_weights: np.ndarray | None = None, hard_negatives: float = 0.0,
) -> np.ndarray:
    """Per-slice draw probabilities: about `tumour_fraction` of draws show tumour (None: the natural mix).

    Among the empty slices, a share `hard_negatives` of the draws goes in proportion to `negative_weights`
    (see `hard_negative_weights`), the rest uniformly; with no weight anywhere, all of it goes uniformly.
    """
    check_setting(TrainConfig, "hard_negatives", hard_negatives)
    has = np.asarray(has_tumour, dtype=bool)
    n_tumour, n_empty = int(has.sum()), int((~has).sum())
    weights = np.full(len(has), 1.0 / max(len(has), 1))
    if tumour_fraction is not None and n_tumour and n_empty:
        weights[has] = tumour_fraction / n_tumour
        weights[~has] = (1 - tumour_fraction) / n_empty
    if negative_weights is not None and hard_negatives > 0 and n_empty:
        if len(negative_weights) != len(has):
            raise InputError(f"{len(negative_weights)} hard-negative weights for {len(has)} slices")
        difficulty = np.clip(np.asarray(negative_weights, dtype=np.float64)[~has], 0, None)
        if difficulty.sum() > 0:
            empty_share = weights[~has].sum()
            mix = (1 - hard_negatives) / n_empty + hard_negatives * difficulty / difficulty.sum()
            weights[~has] = empty_share * mix
    return weights


def tumour_aware_sampler(
    dataset: SliceDataset, num_samples: int, tumour_fraction: float | None, seed: int,
    negative_weights: np.ndarray | None = None, hard_negatives: float = 0.0,
) -> WeightedRandomSampler:
    """Draw slices so that about `tumour_fraction` of them show tumour (None keeps the natural mix), with
    empty slices drawn partly by difficulty (see `sampling_weights`).

    The sampler reads its `weights` at the start of every epoch, so refreshed hard-negative weights take effect
    by assigning `sampler.weights = torch.from_numpy(sampling_weights(...))`, even with persistent workers.
    """
    weights = sampling_weights(dataset.has_tumour(), tumour_fraction, negative_weights, hard_negatives)
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(torch.from_numpy(weights), num_samples, replacement=True, generator=generator)
