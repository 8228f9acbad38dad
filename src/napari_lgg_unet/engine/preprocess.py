"""Turn any supported scan into the model's input and map its output back, identically in training and inference.

Steps: channels -> 3 (one channel is FLAIR, repeated, as the dataset filled missing sequences); robust per-volume,
per-channel percentile scaling to [0, 1] (so uint8, uint16 and float copies of a scan give the same input);
each slice padded to a square and resized to `image_size`; `restore_size` undoes that geometry exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError
from .validate import check_float, check_int, store

if TYPE_CHECKING:  # torch is imported where it is used: napari's reader checks TIFFs with `resolve_rgb` on the
    import torch  # viewer's thread, and importing torch there froze the viewer for 1.2 s at the first File > Open

MAX_PERCENTILE_SAMPLES = 4_000_000
FLOAT32_MAX = float(np.finfo(np.float32).max)  # a percentile beyond it is no intensity normalise can scale
MAX_IMAGE_SIZE = 1024  # the network's input side; larger needs more memory than any benefit justifies


@dataclass(frozen=True)
class PreprocessConfig:
    image_size: int = 256
    low_percentile: float = 0.5
    high_percentile: float = 99.5

    def __post_init__(self) -> None:
        store(self, image_size=check_int("image size", self.image_size, 32, MAX_IMAGE_SIZE),
              low_percentile=check_float("low percentile", self.low_percentile, 0, 100),
              high_percentile=check_float("high percentile", self.high_percentile, 0, 100))
        if self.image_size % 32:
            raise InputError(f"image size must be a multiple of 32, not {self.image_size}")
        if self.low_percentile >= self.high_percentile:
            raise InputError("normalisation percentiles must satisfy low < high")

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_rgb(image: np.ndarray, rgb: bool | None) -> bool:
    """Whether the last axis holds channels; None guesses: a short trailing axis (<= 4, e.g. RGB or RGBA). Anything
    but True, False or None is refused: bool("no") is True."""
    if rgb is not None and not isinstance(rgb, (bool, np.bool_)):
        raise InputError(f"rgb must be True (the last axis holds colour channels), False or None (guess), not {rgb!r}")
    if rgb is not None:
        return bool(rgb)
    return image.ndim in (3, 4) and image.shape[-1] <= 4 and image.shape[-1] < image.shape[-2]


def spatial_shape(image: np.ndarray, rgb: bool | None = None) -> tuple[int, ...]:
    """(H, W) or (Z, H, W): the shape a mask of this scan has (`image` may be any array-like, e.g. a nested list)."""
    image = as_image(image)
    return tuple(image.shape[:-1]) if resolve_rgb(image, rgb) else tuple(image.shape)


def as_image(image: np.ndarray, what: str = "images") -> np.ndarray:
    """`image` as a numeric array (any array-like: a nested list, a dask array); anything else is an InputError."""
    try:
        array = np.asarray(image)
    except (TypeError, ValueError) as error:  # e.g. a list of slices of different sizes
        raise InputError(f"{what} must be arrays of numbers ({error})") from None
    if not (array.dtype == bool or np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        given = "" if isinstance(image, (np.ndarray, list, tuple)) else (  # e.g. a path or a whole Scan
            f"; got a {type(image).__name__}, not an array (a scan's pixels are load_scan(path).image)")
        raise InputError(f"{what} must hold numbers, not {array.dtype}{given}")
    return array


def channel_view(image: np.ndarray, rgb: bool | None = None) -> np.ndarray:
    """Any supported layout as a (Z, H, W, C) view with C = 1 or 3, without copying or converting.

    Layouts: (H, W), (H, W, 3), (Z, H, W), (Z, H, W, 3). `rgb` says whether the last axis holds channels;
    None guesses (see `resolve_rgb`).
    """
    image = as_image(image)
    if image.dtype == bool:
        image = image.view(np.uint8)
    rgb = resolve_rgb(image, rgb)
    spatial = image.ndim - 1 if rgb else image.ndim
    if spatial not in (2, 3):
        raise InputError(
            f"expected a 2D or 3D scan (optionally with a channel axis), got shape {image.shape}; "
            "split 4D data into one scan per time point first"
        )
    if not rgb:
        image = image[..., None]
    if spatial == 2:
        image = image[None]
    if image.shape[-1] not in (1, 3):
        raise InputError(
            f"the model takes 3 channels (pre-contrast, FLAIR, post-contrast) or 1 (FLAIR), not {image.shape[-1]}"
        )
    if image.shape[0] == 0:
        raise InputError(f"the scan has no slices (shape {image.shape})")
    if min(image.shape[1:3]) < 2:
        raise InputError(f"slices of shape {image.shape[1:3]} are too small to segment")
    return image


def not_finite(task: str) -> InputError:
    """The refusal of a scan holding NaN or infinity (e.g. a skull-stripped scan whose background is NaN), said where
    the percentiles and where each batch are checked; `task` is what the scan was given for ("segmenting",
    "training"), so the advice names the step the user is at."""
    return InputError(f"the scan contains NaN or infinite values; replace them (e.g. with 0) before {task}")


def intensity_ranges(view: np.ndarray, config: PreprocessConfig = PreprocessConfig(), *,
                     task: str = "segmenting") -> np.ndarray:
    """Per-channel (low, high) percentiles of a (Z, H, W, C) view, shape (C, 2); NaN refused (see `not_finite`), and so
    are percentiles beyond float32's range (a float64 scan of values near 1e300): `normalise` scales in float32, where
    they became infinity and the probabilities NaN, with no word.

    Percentiles are robust to hot pixels and scale with the data, so any linear rescaling of a scan (uint8,
    uint16, float) normalises to the same values. Very large volumes are sampled on every k-th slice.
    """
    stride = max(1, int(np.ceil(view[..., 0].size / MAX_PERCENTILE_SAMPLES)))
    sample = view[::stride] if stride < len(view) else view[:1]
    ranges = np.array(
        [np.percentile(sample[..., c], [config.low_percentile, config.high_percentile]) for c in range(view.shape[-1])],
        dtype=np.float64,
    )
    if not np.isfinite(ranges).all():
        raise not_finite(task)
    if np.abs(ranges).max(initial=0.0) > FLOAT32_MAX:  # float64 data: cast to float32, the scan became inf and NaN
        raise InputError(f"the scan's intensities reach {np.abs(ranges).max():.3g}, beyond the float32 range "
                         f"(about 3.4e38) the network reads; rescale it (e.g. divide by its maximum) before {task}")
    return ranges


def normalise(slices: np.ndarray, ranges: np.ndarray, *, task: str = "segmenting") -> np.ndarray:
    """Scale (n, H, W, C) slices to [0, 1] with `ranges`, as (n, H, W, 3) float32 (one channel is repeated).

    Every value is checked here, since the percentiles may have been sampled on other slices: a NaN would
    otherwise flow silently into the mask.
    """
    if np.issubdtype(slices.dtype, np.floating) and not np.isfinite(slices).all():
        raise not_finite(task)
    out = np.empty(slices.shape[:3] + (slices.shape[-1],), dtype=np.float32)
    for c, (low, high) in enumerate(ranges):
        if high <= low:
            out[..., c] = 0.0
        else:
            with np.errstate(over="ignore"):  # a float64 pixel beyond float32: ±inf, clipped to 0 or 1
                np.clip((slices[..., c].astype(np.float32) - low) / (high - low), 0.0, 1.0, out=out[..., c])
    return np.repeat(out, 3, axis=-1) if out.shape[-1] == 1 else out


def prepare_volume(image: np.ndarray, rgb: bool | None = None, config: PreprocessConfig = PreprocessConfig(), *,
                   task: str = "segmenting") -> np.ndarray:
    """A whole scan as normalised (Z, H, W, 3) float32; `predict` does the same a batch at a time. `task` names what
    the scan is for in a refusal of NaN (see `not_finite`)."""
    view = channel_view(image, rgb)
    return normalise(view, intensity_ranges(view, config, task=task), task=task)


def binarise_mask(mask: np.ndarray) -> np.ndarray:
    """Anything above zero is tumour (masks are 0/255 on disk, 0/1 in napari)."""
    return as_image(mask, "masks") > 0


def to_model_point(y: float, x: float, height: int, width: int, image_size: int) -> tuple[float, float]:
    """Where pixel (y, x) of an (height, width) slice lands in the network's (image_size, image_size) input, the
    geometry of `to_model_size` (pixel centres map to pixel centres)."""
    left, _, top, _ = _square_padding(height, width)
    scale = image_size / max(height, width)
    return (y + top + 0.5) * scale - 0.5, (x + left + 0.5) * scale - 0.5


def _square_padding(height: int, width: int) -> tuple[int, int, int, int]:
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    return left, side - width - left, top, side - height - top


def to_model_size(batch: torch.Tensor, image_size: int, mode: str = "bilinear") -> torch.Tensor:
    """(B, C, H, W) -> (B, C, S, S): pad to a centred square (zeros), then resize; keeps the aspect ratio."""
    import torch.nn.functional as F

    height, width = batch.shape[-2:]
    padded = F.pad(batch, _square_padding(height, width))
    if padded.shape[-1] == image_size:
        return padded
    if mode == "nearest":
        return F.interpolate(padded, size=(image_size, image_size), mode="nearest")
    return F.interpolate(padded, size=(image_size, image_size), mode=mode, align_corners=False, antialias=True)


def restore_size(batch: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Exact inverse geometry of `to_model_size`: (B, C, S, S) -> (B, C, H, W)."""
    import torch.nn.functional as F

    side = max(height, width)
    if batch.shape[-1] != side:
        batch = F.interpolate(batch, size=(side, side), mode="bilinear", align_corners=False)
    left, _, top, _ = _square_padding(height, width)
    return batch[..., top : top + height, left : left + width]
