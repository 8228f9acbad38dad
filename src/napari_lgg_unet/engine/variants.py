"""Shift proxies: a scan as a FLAIR-only or a skull-stripped user would hand it over, to validate against those
shifts."""

from __future__ import annotations

from typing import Callable

import numpy as np

from .brain_mask import brain_mask
from .errors import InputError
from .preprocess import channel_view, intensity_ranges
from .sequences import FLAIR_CHANNEL as FLAIR
from .settings import INPUT_VARIANTS, check_variants


def input_variant(image: np.ndarray, rgb: bool | None, variant: str) -> tuple[np.ndarray, bool]:
    """`image` transformed as `variant` (one of INPUT_VARIANTS) as (Z, H, W, C), and whether the last axis holds
    channels (so `segment_volume(model, *input_variant(...))` reads it right)."""
    if variant not in INPUT_VARIANTS:
        raise InputError(f"unknown input variant {variant!r}; choose one of {', '.join(INPUT_VARIANTS)}")
    view = channel_view(image, rgb)  # (Z, H, W, C), C = 1 (FLAIR) or 3
    flair = view[..., FLAIR if view.shape[-1] == 3 else 0]
    if variant == "flair-only":
        return flair, False
    if variant == "skull-stripped":
        return view * brain_mask(flair)[..., None].astype(view.dtype), True
    return view, True


def normalised_variant(image: np.ndarray, variant: str, stop: Callable[[], bool] | None = None) -> np.ndarray:
    """A normalised training volume (Z, 3, S, S) in [0, 1] as `variant` would reach the model after preprocessing.

    Unlike the training augmentation, skull stripping here uses the brain mask alone (never the true tumour mask),
    so validation sees what a user's skull-stripped scan would give. `stop` may end the brain mask (`brain_mask`).
    """
    check_variants("input variant", (variant,))
    if variant == "flair-only":
        return np.repeat(image[:, FLAIR : FLAIR + 1], 3, axis=1)
    if variant == "skull-stripped":
        keep = brain_mask(image[:, FLAIR], stop)
        stripped = image.astype(np.float32) * keep[:, None]
        low, high = intensity_ranges(stripped.transpose(0, 2, 3, 1)).T[:, None, :, None, None]
        return np.clip((stripped - low) / np.maximum(high - low, 1e-6), 0, 1).astype(image.dtype)
    return image
