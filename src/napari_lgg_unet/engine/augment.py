"""Random per-sample transforms that imitate the scans users bring, not only the training scanners.

Each sample is a normalised slice (3, S, S) in [0, 1] (channels: pre-contrast, FLAIR, post-contrast) with its mask.
Besides the geometric family of the reference workflow (rotation, shift, zoom, shear, flip), it imitates:
skull-stripped scans (brain mask from the scan itself, re-normalised as `preprocess` would normalise such a scan),
missing sequences (replaced by FLAIR, as the dataset itself did; all three = a FLAIR-only user), lower in-plane
resolution, a smooth coil bias field, gamma / contrast, and bright outliers. Everything runs on the CPU in the
data-loading workers, so each step is a handful of small tensor operations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .brain_mask import brain_mask
from .preprocess import intensity_ranges
from .sequences import FLAIR_CHANNEL as FLAIR
from .settings import AugmentConfig

BIAS_GRID = 4  # control points per side of the smooth bias field


@dataclass
class SkullStripView:
    """How one training volume looks skull-stripped: `keep` (Z, S, S) bool and the (3, 2) per-channel
    (low, high) percentiles that the stripped volume would be normalised with."""

    keep: np.ndarray
    ranges: np.ndarray


def skull_strip_view(image: np.ndarray, mask: np.ndarray, stop: Callable[[], bool] | None = None) -> SkullStripView:
    """Brain mask of a normalised volume (Z, 3, S, S) from its FLAIR, united with the tumour `mask` (Z, S, S)
    so that stripping never removes labelled tumour; `stop` may end the brain mask (`brain_mask`)."""
    keep = brain_mask(image[:, FLAIR], stop) | mask
    stripped = image.astype(np.float32) * keep[:, None]
    return SkullStripView(keep, intensity_ranges(stripped.transpose(0, 2, 3, 1)))


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


def _warp(image: torch.Tensor, mask: torch.Tensor, config: AugmentConfig, rng: np.random.Generator):
    theta = _affine_matrix(config, rng)[None]
    stacked = torch.cat([image, mask])[None]
    grid = F.affine_grid(theta, list(stacked.shape), align_corners=False)
    warped = F.grid_sample(stacked, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    return warped[:3], (warped[3:] > 0.5).float()


def skull_strip(image: torch.Tensor, keep: np.ndarray, ranges: np.ndarray) -> torch.Tensor:
    """Zero (3, S, S) outside `keep` (S, S) and rescale each channel with the stripped volume's `ranges`."""
    low = torch.from_numpy(ranges[:, :1, None]).float()
    span = torch.from_numpy(np.maximum(ranges[:, 1:, None] - ranges[:, :1, None], 1e-6)).float()
    return ((image * torch.from_numpy(keep) - low) / span).clamp(0, 1)


def _replace_sequences(image: torch.Tensor, config: AugmentConfig, rng: np.random.Generator) -> torch.Tensor:
    if rng.random() < config.flair_only:
        return image[FLAIR : FLAIR + 1].expand(3, -1, -1).clone()
    if rng.random() < config.missing_sequence:
        image = image.clone()
        image[int(rng.choice([c for c in range(3) if c != FLAIR]))] = image[FLAIR]
    return image


def _low_resolution(image: torch.Tensor, config: AugmentConfig, rng: np.random.Generator) -> torch.Tensor:
    size = image.shape[-2:]
    factors = rng.uniform(1.0, config.max_downsample, size=2)
    small = [max(2, round(s / f)) for s, f in zip(size, factors)]
    coarse = F.interpolate(image[None], size=small, mode="bilinear", align_corners=False, antialias=True)
    return F.interpolate(coarse, size=tuple(size), mode="bilinear", align_corners=False)[0]


def _bias_field(image: torch.Tensor, config: AugmentConfig, rng: np.random.Generator) -> torch.Tensor:
    control = torch.from_numpy(rng.uniform(-1, 1, size=(1, 3, BIAS_GRID, BIAS_GRID))).float()
    field = F.interpolate(control, size=tuple(image.shape[-2:]), mode="bicubic", align_corners=True)[0]
    return image * torch.exp(config.bias_strength * field.clamp(-1, 1))


def _gamma_contrast(image: torch.Tensor, config: AugmentConfig, rng: np.random.Generator) -> torch.Tensor:
    gamma = torch.from_numpy(np.exp(rng.uniform(-config.intensity, config.intensity, size=(3, 1, 1)) * 2)).float()
    contrast = torch.from_numpy(1 + rng.uniform(-config.intensity, config.intensity, size=(3, 1, 1))).float()
    return image.clamp(0, 1) ** gamma * contrast


def _outliers(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    image = image.clone()
    height, width = image.shape[-2:]
    for _ in range(int(rng.integers(1, 6))):
        radius = int(rng.integers(0, 3))
        y, x = int(rng.integers(0, height)), int(rng.integers(0, width))
        channels = [c for c in range(3) if rng.random() < 0.5] or [int(rng.integers(0, 3))]
        image[
            channels, max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1
        ] = float(rng.uniform(0.8, 1.0))
    return image


def augment_pair(
    image: torch.Tensor,
    mask: torch.Tensor,
    config: AugmentConfig,
    rng: np.random.Generator,
    stripped: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One random draw of every transform for image (3, S, S) in [0, 1] and mask (1, S, S) in {0, 1}.

    `stripped` is (keep (S, S) bool, ranges (3, 2)) of this slice's volume (see `skull_strip_view`); without it
    skull stripping is skipped. The result stays in [0, 1]; the mask stays binary and moves with the image.
    """
    if stripped is not None and rng.random() < config.skull_strip:
        image = skull_strip(image, *stripped)
    image = _replace_sequences(image, config, rng)
    image, mask = _warp(image, mask, config, rng)
    if rng.random() < config.low_resolution:
        image = _low_resolution(image, config, rng)
    if rng.random() < config.bias_field:
        image = _bias_field(image, config, rng)
    if config.intensity > 0:
        image = _gamma_contrast(image, config, rng)
    if rng.random() < config.outliers:
        image = _outliers(image.clamp(0, 1), rng)
    return image.clamp(0, 1), mask
