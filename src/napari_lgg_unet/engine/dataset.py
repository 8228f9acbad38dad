"""Training data: patient-level splits, volumes at model size, joint image/mask augmentation, tumour-aware sampling."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, WeightedRandomSampler

from .errors import InputError
from .io import Scan
from .preprocess import PreprocessConfig, binarise_mask, prepare_volume, to_model_size

_INSTITUTION = re.compile(r"^TCGA_(?P<site>[A-Z0-9]+)_")


@dataclass
class TrainingVolume:
    """One scan ready for training: image (Z, 3, S, S) float16 in [0, 1], mask (Z, S, S) bool."""

    name: str
    image: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class AugmentConfig:
    """Random affine (rotation, shifts, zoom, shear), horizontal flip and intensity jitter.

    The reference workflow used the same geometric family; intensity jitter (per-channel gamma and contrast)
    is our addition, because unseen scanners differ mostly in contrast.
    """

    enabled: bool = True
    rotation_degrees: float = 15.0
    shift_fraction: float = 0.05
    zoom_fraction: float = 0.1
    shear_degrees: float = 5.0
    horizontal_flip: bool = True
    intensity: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


def institution(name: str) -> str:
    """The TCGA site code ('CS' in TCGA_CS_4941_19960909); other names form one group."""
    match = _INSTITUTION.match(name)
    return match["site"] if match else ""


def split_patients(
    names: list[str], val_fraction: float, test_fraction: float = 0.0, seed: int = 0
) -> tuple[list[str], list[str], list[str]]:
    """Split patient names into train / validation / test, stratified by institution, deterministic per seed.

    Every patient lands on exactly one side; each non-zero fraction gets at least one patient when possible.
    """
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise InputError("validation and test fractions must be in [0, 1) and sum to less than 1")
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
    scan: Scan, preprocess: PreprocessConfig, skip_unlabelled: bool = False
) -> TrainingVolume:
    """Normalise and resize a scan with its mask once, so each epoch only augments."""
    if scan.mask is None:
        raise InputError(f"{scan.name}: training needs a mask")
    normalised = prepare_volume(scan.image, scan.rgb, preprocess)
    mask = binarise_mask(scan.mask)
    if mask.ndim == 2:
        mask = mask[None]
    if mask.shape != normalised.shape[:3]:
        raise InputError(f"{scan.name}: labels shape {mask.shape} does not match image shape {normalised.shape[:3]}")
    if skip_unlabelled:
        keep = mask.reshape(len(mask), -1).any(axis=1)
        normalised, mask = normalised[keep], mask[keep]
    images, masks = [], []
    for start in range(0, len(mask), 16):
        chunk = torch.from_numpy(normalised[start : start + 16]).permute(0, 3, 1, 2)
        images.append(to_model_size(chunk, preprocess.image_size).half().numpy())
        m = torch.from_numpy(mask[start : start + 16, None].astype(np.float32))
        masks.append(to_model_size(m, preprocess.image_size, mode="bilinear")[:, 0].numpy() > 0.5)
    if not images:
        return TrainingVolume(scan.name, np.zeros((0, 3, preprocess.image_size, preprocess.image_size), np.float16),
                              np.zeros((0, preprocess.image_size, preprocess.image_size), bool))
    return TrainingVolume(scan.name, np.concatenate(images), np.concatenate(masks))


def split_single_volume(volume: TrainingVolume, val_fraction: float) -> tuple[TrainingVolume, TrainingVolume]:
    """With only one scan, hold out its last contiguous block of slices (neighbours would leak otherwise)."""
    n_val = max(1, round(len(volume.mask) * val_fraction))
    if len(volume.mask) - n_val < 1:
        raise InputError("a single scan needs at least 2 labelled slices to train with validation")
    cut = len(volume.mask) - n_val
    return (
        TrainingVolume(volume.name, volume.image[:cut], volume.mask[:cut]),
        TrainingVolume(volume.name + " (held-out slices)", volume.image[cut:], volume.mask[cut:]),
    )


def _affine_matrix(config: AugmentConfig, rng: np.random.Generator) -> torch.Tensor:
    angle = math.radians(rng.uniform(-config.rotation_degrees, config.rotation_degrees))
    shear = math.radians(rng.uniform(-config.shear_degrees, config.shear_degrees))
    zoom = rng.uniform(1 - config.zoom_fraction, 1 + config.zoom_fraction)
    tx, ty = rng.uniform(-config.shift_fraction, config.shift_fraction, size=2) * 2  # grid units span 2
    flip = -1.0 if config.horizontal_flip and rng.random() < 0.5 else 1.0
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    shearing = np.array([[1.0, math.tan(shear)], [0.0, 1.0]])
    linear = rotation @ shearing @ np.diag([flip, 1.0]) / zoom
    return torch.tensor([[*linear[0], tx], [*linear[1], ty]], dtype=torch.float32)


def augment_pair(
    image: torch.Tensor, mask: torch.Tensor, config: AugmentConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply one random geometric transform to image (3, S, S) and mask (1, S, S) together."""
    theta = _affine_matrix(config, rng)[None]
    stacked = torch.cat([image, mask])[None]
    grid = F.affine_grid(theta, list(stacked.shape), align_corners=False)
    warped = F.grid_sample(stacked, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    image, mask = warped[:3], (warped[3:] > 0.5).float()
    if config.intensity > 0:
        gamma = torch.from_numpy(np.exp(rng.uniform(-config.intensity, config.intensity, size=(3, 1, 1)) * 2)).float()
        contrast = torch.from_numpy(1 + rng.uniform(-config.intensity, config.intensity, size=(3, 1, 1))).float()
        image = (image.clamp(0, 1) ** gamma * contrast).clamp(0, 1)
    return image, mask


class SliceDataset(Dataset):
    """Slices of several volumes; with `augment`, each read draws a fresh random transform."""

    def __init__(self, volumes: list[TrainingVolume], augment: AugmentConfig | None = None, seed: int = 0) -> None:
        self.volumes = volumes
        self.index = [(v, z) for v, volume in enumerate(volumes) for z in range(len(volume.mask))]
        self.augment = augment if augment is not None and augment.enabled else None
        self.seed = seed
        self._reads = 0

    def __len__(self) -> int:
        return len(self.index)

    def has_tumour(self) -> np.ndarray:
        return np.array([self.volumes[v].mask[z].any() for v, z in self.index], dtype=bool)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        v, z = self.index[item]
        image = torch.from_numpy(self.volumes[v].image[z].astype(np.float32))
        mask = torch.from_numpy(self.volumes[v].mask[z][None].astype(np.float32))
        if self.augment is not None:
            worker = torch.utils.data.get_worker_info()
            self._reads += 1
            stream = (self.seed, worker.id + 1 if worker else 0, torch.initial_seed() % 2**32, self._reads)
            image, mask = augment_pair(image, mask, self.augment, np.random.default_rng(stream))
        return image, mask


def tumour_aware_sampler(
    dataset: SliceDataset, num_samples: int, tumour_fraction: float | None, seed: int
) -> WeightedRandomSampler:
    """Draw slices so that about `tumour_fraction` of them show tumour (None keeps the natural mix)."""
    has = dataset.has_tumour()
    weights = np.ones(len(has))
    n_tumour = int(has.sum())
    if tumour_fraction is not None and 0 < n_tumour < len(has):
        weights[has] = tumour_fraction / n_tumour
        weights[~has] = (1 - tumour_fraction) / (len(has) - n_tumour)
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(torch.from_numpy(weights), num_samples, replacement=True, generator=generator)
