"""Shift proxies: a scan as a FLAIR-only or a skull-stripped user would hand it over, to validate against those shifts."""

from __future__ import annotations

import numpy as np

from .augment import FLAIR
from .brain_mask import brain_mask
from .errors import InputError
from .preprocess import channel_view

INPUT_VARIANTS = ("as-is", "flair-only", "skull-stripped")


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
