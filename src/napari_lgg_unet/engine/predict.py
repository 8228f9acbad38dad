"""Batched inference on scans of any length and size, returning masks at the input's exact shape.

Memory grows with one batch, not with the stack: slices are normalised, resized and run a batch at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
from scipy import ndimage

from .backends import describe, forward
from .device import OOM_ADVICE, is_out_of_memory
from .errors import DeviceError
from .model import LoadedModel, PostprocessConfig
from .precision import Precision, choose, prepare_network
from .preprocess import channel_view, spatial_shape, intensity_ranges, normalise, restore_size, to_model_size


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


def postprocess(probability: np.ndarray, config: PostprocessConfig) -> np.ndarray:
    """Threshold, drop 3D-connected specks smaller than `min_size` voxels, optionally keep the largest one."""
    mask = np.asarray(probability) >= config.threshold
    if (config.min_size > 0 or config.keep_largest) and mask.any():
        labels, n = ndimage.label(mask)
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        sizes[0] = 0
        keep = sizes >= max(config.min_size, 1)
        if config.keep_largest:
            keep = np.zeros_like(keep)
            keep[int(np.argmax(sizes))] = True
        keep[0] = False
        mask = keep[labels]
    return mask.astype(np.uint8)


def _forward(network: torch.nn.Module, batch: torch.Tensor, tta: bool, precision: Precision, backend: str) -> torch.Tensor:
    prob = torch.sigmoid(forward(network, batch, precision, backend))
    if tta:
        prob = 0.5 * (prob + torch.sigmoid(forward(network, batch.flip(-1), precision, backend)).flip(-1))
    return prob


def segment_steps(
    model: LoadedModel,
    image: np.ndarray,
    rgb: bool | None = None,
    batch_size: int = 8,
    tta: bool = False,
    postprocessing: PostprocessConfig | None = None,
    stop: Callable[[], bool] | None = None,
    precision: str = "auto",
    backend: str = "auto",
) -> Iterator[SegmentProgress]:
    """Segment a scan, yielding progress after each batch; the last item carries the result.

    `image` may be (H, W), (H, W, 3), (Z, H, W) or (Z, H, W, 3); see `preprocess.channel_view`.
    If `stop` returns True the generator ends early without a result. `precision` ('auto', 'fp32', 'bf16',
    'fp16') and `backend` ('auto', 'torch', 'openvino') are explained in `engine/precision.py` and
    `engine/backends.py`; 'fp32' with 'torch' is plain eager PyTorch.
    """
    view = channel_view(image, rgb)
    ranges = intensity_ranges(view, model.config.preprocess)
    network = model.network
    device = next(network.parameters()).device
    chosen = choose(device, precision)
    prepare_network(network, chosen)
    size = model.config.preprocess.image_size
    total, (height, width) = len(view), view.shape[1:3]
    probability = np.empty((total, height, width), dtype=np.float32)
    yield SegmentProgress(0, total, runs_on=describe(network, chosen))
    try:
        with torch.inference_mode():
            for start in range(0, total, batch_size):
                if stop is not None and stop():
                    return
                chunk = normalise(view[start : start + batch_size], ranges)
                batch = to_model_size(torch.from_numpy(chunk).permute(0, 3, 1, 2).to(device), size)
                prob = restore_size(_forward(network, batch, tta, chosen, backend), height, width)
                probability[start : start + len(chunk)] = prob[:, 0].float().cpu().numpy()
                yield SegmentProgress(min(start + batch_size, total), total, runs_on=describe(network, chosen))
    except RuntimeError as error:
        if is_out_of_memory(error):
            raise DeviceError(OOM_ADVICE) from None
        raise
    mask = postprocess(probability, postprocessing or model.config.postprocess)
    out_shape = spatial_shape(image, rgb)
    result = Segmentation(probability.reshape(out_shape), mask.reshape(out_shape))
    yield SegmentProgress(total, total, result, runs_on=describe(network, chosen))


def segment_volume(model: LoadedModel, image: np.ndarray, **options) -> Segmentation:
    """Segment a whole scan at once (see `segment_steps` for the options)."""
    for progress in segment_steps(model, image, **options):
        if progress.result is not None:
            return progress.result
    raise RuntimeError("segmentation was stopped")
