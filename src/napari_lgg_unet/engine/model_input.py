"""What the network sees besides the slice itself: neighbouring slices (2.5D context) and click maps.

One network serves automatic segmentation and click corrections. Its input channels are, in this order:
the slice's 3 sequences (pre-contrast, FLAIR, post-contrast); FLAIR of the `context_slices` neighbours on each
side (offsets -k..-1, then +1..+k; indices clamped at the ends of the scan, so a single 2D image repeats itself);
and, when the model takes clicks, a positive and a negative click map (zero when there are no clicks).

Why FLAIR only for the neighbours: tumour extent and the false "tumour" at the top of the head are both FLAIR
findings, and FLAIR is the sequence every user has. Why clamping: the slice at the end of a scan then sees its own
FLAIR beyond the end, which is also what a 2D image gives, so both are in the training distribution.

Training and inference build the channels with the same two functions (`neighbour_indices`, `assemble`), so a
model is fed identically by the widgets, the CLI, cohorts, calibration, evaluation and training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from .settings import MAX_CONTEXT
from .validate import check_bool, check_float, check_int, store

SEQUENCES = 3  # pre-contrast, FLAIR, post-contrast


@dataclass(frozen=True)
class InputConfig:
    """The network's extra inputs. `click_sigma` is a click's Gaussian radius in network pixels (at image_size);
    `click_reach` how many slices away a click still acts (with weight exp(-d^2 / 2) at distance d slices)."""

    context_slices: int = 0
    clicks: bool = False
    click_sigma: float = 3.0
    click_reach: int = 2

    def __post_init__(self) -> None:
        store(self, context_slices=check_int("context slices", self.context_slices, 0, MAX_CONTEXT),
              clicks=check_bool("clicks", self.clicks),
              click_sigma=check_float("click radius", self.click_sigma, 0.5, 64),
              click_reach=check_int("click reach", self.click_reach, 0, 16))

    @property
    def channels(self) -> int:
        return SEQUENCES + 2 * self.context_slices + (2 if self.clicks else 0)

    @property
    def offsets(self) -> tuple[int, ...]:
        k = self.context_slices
        return tuple(range(-k, 0)) + tuple(range(1, k + 1))

    def to_dict(self) -> dict:
        return asdict(self)


def neighbour_indices(slices: np.ndarray, total: int, config: InputConfig) -> np.ndarray:
    """For slice indices (n,), the (n, 2k) indices of their neighbours in `config.offsets` order, clamped to the
    scan."""
    slices = np.asarray(slices, dtype=np.int64)
    offsets = np.asarray(config.offsets, dtype=np.int64)
    return np.clip(slices[:, None] + offsets[None, :], 0, max(total - 1, 0))


def assemble(image: torch.Tensor, neighbours_flair: torch.Tensor | None, clicks: torch.Tensor | None,
             config: InputConfig) -> torch.Tensor:
    """(n, 3, H, W) sequences + (n, 2k, H, W) neighbour FLAIR + (n, 2, H, W) click maps -> (n, channels, H, W).

    Missing click maps are zeros (no clicks: automatic segmentation); `neighbours_flair` may be None only when the
    config has no context.
    """
    parts = [image]
    if config.context_slices:
        if neighbours_flair is None or neighbours_flair.shape[1] != 2 * config.context_slices:
            raise ValueError("the model takes neighbouring slices; pass their FLAIR channels")
        parts.append(neighbours_flair.to(image.dtype))
    if config.clicks:
        if clicks is None:
            clicks = image.new_zeros((len(image), 2) + tuple(image.shape[-2:]))
        parts.append(clicks.to(image.dtype))
    return torch.cat(parts, dim=1) if len(parts) > 1 else image


@dataclass(frozen=True)
class Click:
    """A click on a scan: slice `z`, row `y`, column `x` (pixels, may be fractional); positive = 'this is tumour'."""

    z: float
    y: float
    x: float
    positive: bool = True


def click_maps(
    clicks: list[Click], slices: np.ndarray, shape: tuple[int, int], sigma: float, reach: int
) -> torch.Tensor:
    """(n, 2, H, W) float32 maps (positive, negative) for slices `slices` (n,): each click is a Gaussian of radius
    `sigma` pixels, weighted exp(-d^2 / 2) on slices d <= `reach` away, and maps take the maximum over clicks."""
    slices = np.asarray(slices, dtype=np.float64)
    maps = np.zeros((len(slices), 2) + tuple(shape), dtype=np.float32)
    rows = np.arange(shape[0], dtype=np.float32)[:, None]
    cols = np.arange(shape[1], dtype=np.float32)[None, :]
    for click in clicks:
        distance = np.abs(slices - click.z)
        near = np.flatnonzero(distance <= reach + 1e-6)
        if not len(near):
            continue
        blob = np.exp(-((rows - click.y) ** 2 + (cols - click.x) ** 2) / (2 * sigma**2))
        channel = 0 if click.positive else 1
        for i in near:
            np.maximum(maps[i, channel], np.float32(np.exp(-distance[i] ** 2 / 2)) * blob, out=maps[i, channel])
    return torch.from_numpy(maps)


def input_channels(network: torch.nn.Module) -> int:
    """How many input channels `network` takes (its first convolution's)."""
    first = next(m for m in network.modules() if isinstance(m, torch.nn.Conv2d))
    return int(first.in_channels)
