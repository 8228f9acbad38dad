"""Batched inference on scans of any length and size, returning masks at the input's exact shape.

Memory grows with one batch, not with the stack: slices are normalised, resized and run a batch at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from .backends import describe, forward
from .device import out_of_memory_as_advice
from .model import LoadedModel
from .postprocess import PostprocessConfig, postprocess
from .precision import Precision, choose, prepare_network
from .preprocess import channel_view, spatial_shape, intensity_ranges, normalise, restore_size, to_model_size
from .settings import BACKEND_CHOICES, PRECISION_CHOICES, SEGMENT_BATCH_SIZE
from .validate import check_bool, check_choice, check_int

MAX_BATCH_SIZE = 1024


@dataclass
class Segmentation:
    """`probability` (float32 in [0, 1]) and `mask` (uint8 0/1), both with the input's spatial shape."""

    probability: np.ndarray
    mask: np.ndarray


@dataclass
class SegmentProgress:
    """`runs_on` says which device, precision and backend run, e.g. 'cpu, bf16, 2 threads'."""

    done: int
    total: int
    result: Segmentation | None = None
    runs_on: str = ""


def _forward(network: torch.nn.Module, batch: torch.Tensor, tta: bool, precision: Precision, backend: str) -> torch.Tensor:
    prob = torch.sigmoid(forward(network, batch, precision, backend))
    if tta:
        prob = 0.5 * (prob + torch.sigmoid(forward(network, batch.flip(-1), precision, backend)).flip(-1))
    return prob


@dataclass(frozen=True)
class SegmentOptions:
    """How a model is run on a scan: one typed object for the API, the CLI, the widgets and their workers.

    `postprocess` None means the model's own calibrated settings. `precision` ('auto', 'fp32', 'bf16', 'fp16') and
    `backend` ('auto', 'torch', 'openvino') are explained in `engine/precision.py` and `engine/backends.py`;
    'fp32' with 'torch' is plain eager PyTorch.
    """

    batch_size: int = SEGMENT_BATCH_SIZE
    tta: bool = False
    postprocess: PostprocessConfig | None = None
    precision: str = "auto"
    backend: str = "auto"

    def __post_init__(self) -> None:
        check_int("batch size", self.batch_size, 1, MAX_BATCH_SIZE)
        check_bool("test-time augmentation", self.tta)
        check_choice("precision", self.precision, PRECISION_CHOICES)
        check_choice("backend", self.backend, BACKEND_CHOICES)


def runs_on(model: LoadedModel, options: SegmentOptions) -> str:
    """What `segment_steps` will run on with these options, e.g. 'cpu, bf16, 2 threads, openvino'."""
    return describe(model.network, choose(next(model.network.parameters()).device, options.precision))


def segment_steps(
    model: LoadedModel,
    image: np.ndarray,
    options: SegmentOptions = SegmentOptions(),
    *,
    rgb: bool | None = None,
    stop: Callable[[], bool] | None = None,
) -> Iterator[SegmentProgress]:
    """Segment a scan, yielding progress after each batch; the last item carries the result.

    `image` may be (H, W), (H, W, 3), (Z, H, W) or (Z, H, W, 3); see `preprocess.channel_view`.
    If `stop` returns True the generator ends early without a result.
    """
    view = channel_view(image, rgb)
    ranges = intensity_ranges(view, model.config.preprocess)
    network = model.network
    device = next(network.parameters()).device
    chosen = choose(device, options.precision)
    prepare_network(network, chosen)
    size = model.config.preprocess.image_size
    total, (height, width), batch_size = len(view), view.shape[1:3], options.batch_size
    probability = np.empty((total, height, width), dtype=np.float32)
    yield SegmentProgress(0, total, runs_on=describe(network, chosen))
    with out_of_memory_as_advice(), torch.inference_mode():
        for start in range(0, total, batch_size):
            if stop is not None and stop():
                return
            chunk = normalise(view[start : start + batch_size], ranges)
            batch = to_model_size(torch.from_numpy(chunk).permute(0, 3, 1, 2).to(device), size)
            prob = restore_size(_forward(network, batch, options.tta, chosen, options.backend), height, width)
            probability[start : start + len(chunk)] = prob[:, 0].float().cpu().numpy()
            yield SegmentProgress(min(start + batch_size, total), total, runs_on=describe(network, chosen))
    mask = postprocess(probability, options.postprocess or model.config.postprocess)
    out_shape = spatial_shape(image, rgb)
    result = Segmentation(probability.reshape(out_shape), mask.reshape(out_shape))
    yield SegmentProgress(total, total, result, runs_on=describe(network, chosen))  # the backend may change mid-scan


def segment_volume(
    model: LoadedModel, image: np.ndarray, options: SegmentOptions = SegmentOptions(), *, rgb: bool | None = None
) -> Segmentation:
    """Segment a whole scan at once (see `segment_steps`)."""
    for progress in segment_steps(model, image, options, rgb=rgb):
        if progress.result is not None:
            return progress.result
    raise AssertionError("segment_steps ended without a result although nothing asked it to stop")
