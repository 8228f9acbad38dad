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
from .errors import InputError
from .model import LoadedModel
from .model_input import Click, assemble, click_maps, neighbour_indices
from .postprocess import PostprocessConfig, postprocess
from .precision import Precision, choose, prepare_network
from .preprocess import channel_view, spatial_shape, intensity_ranges, normalise, restore_size, to_model_size
from .sequences import FLAIR_CHANNEL as FLAIR
from .settings import BACKEND_CHOICES, PRECISION_CHOICES, SEGMENT_BATCH_SIZE
from .stopping import Stopped
from .validate import check_bool, check_choice, check_int, store

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


def forward_probability(
    network: torch.nn.Module, batch: torch.Tensor, tta: bool, precision: Precision, backend: str
) -> torch.Tensor:
    """Probabilities of a network batch, averaged with the mirrored batch's when `tta`."""
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
        store(self, batch_size=check_int("batch size", self.batch_size, 1, MAX_BATCH_SIZE),
              tta=check_bool("test-time augmentation", self.tta),
              precision=check_choice("precision", self.precision, PRECISION_CHOICES),
              backend=check_choice("backend", self.backend, BACKEND_CHOICES))
        if self.postprocess is not None and not isinstance(self.postprocess, PostprocessConfig):
            raise InputError(f"a clean-up must be a PostprocessConfig (or None: the model's own), not "
                             f"{type(self.postprocess).__name__}")

    def postprocess_for(self, model: LoadedModel) -> PostprocessConfig:
        """The clean-up a run of `model` with these options applies: `postprocess`, or the model's own."""
        return self.postprocess or model.config.postprocess


def check_run(model: LoadedModel, options: SegmentOptions | None) -> SegmentOptions:
    """The options to run with (None: the defaults, as `CorrectionSession(model, image, None)` takes them); refuse
    what is not a loaded model or a SegmentOptions (a model's name or folder, a dict of options), which would
    otherwise fail deep inside with an AttributeError."""
    if not isinstance(model, LoadedModel):
        raise InputError(f"the model must be loaded first, e.g. load_model(\"default\") or load_model(folder); "
                         f"got {type(model).__name__} {model!r:.60}")
    if options is None:
        return SegmentOptions()
    if not isinstance(options, SegmentOptions):
        raise InputError(f"options must be SegmentOptions(...), not {type(options).__name__} {options!r:.60}")
    return options


def runs_on(model: LoadedModel, options: SegmentOptions) -> str:
    """What `segment_steps` will run on with these options, e.g. 'cpu, bf16, openvino, 2 threads'."""
    return describe(model.network, choose(next(model.network.parameters()).device, options.precision))


def segment_steps(
    model: LoadedModel,
    image: np.ndarray,
    options: SegmentOptions | None = None,
    *,
    rgb: bool | None = None,
    stop: Callable[[], bool] | None = None,
) -> Iterator[SegmentProgress]:
    """Segment a scan, yielding progress after each batch; the last item carries the result.

    `image` may be (H, W), (H, W, 3), (Z, H, W) or (Z, H, W, 3); see `preprocess.channel_view`.
    If `stop` returns True the generator ends early without a result (asked between batches, and between the timed
    passes of the first 'auto' precision choice on a machine: `precision.choose`). `options` None: the defaults.
    """
    options = check_run(model, options)
    scan = ScanInput.of(model, image, rgb)
    try:
        chosen = scan.prepare(options, stop)
    except Stopped:
        return
    total, (height, width) = len(scan.view), scan.view.shape[1:3]
    probability = np.empty((total, height, width), dtype=np.float32)
    label = describe(model.network, chosen)
    yield SegmentProgress(0, total, runs_on=label)
    done = 0
    for slices, prob in scan.probabilities(np.arange(total), [], options, chosen, stop):
        probability[slices] = prob
        done += len(slices)
        yield SegmentProgress(done, total, runs_on=describe(model.network, chosen))
    if done < total:
        return  # stopped
    mask = postprocess(probability, options.postprocess_for(model))
    out_shape = spatial_shape(image, rgb)
    result = Segmentation(probability.reshape(out_shape), mask.reshape(out_shape))
    # runs_on is described again: the backend may change mid-scan
    yield SegmentProgress(total, total, result, runs_on=describe(model.network, chosen))


@dataclass
class ScanInput:
    """A scan as the model reads it: its (Z, H, W, C) view and per-channel intensity ranges, from which any set of
    slices becomes a network batch (sequences, neighbouring slices, click maps) by the same steps everywhere."""

    model: LoadedModel
    view: np.ndarray
    ranges: np.ndarray

    @classmethod
    def of(cls, model: LoadedModel, image: np.ndarray, rgb: bool | None = None) -> "ScanInput":
        view = channel_view(image, rgb)
        return cls(model, view, intensity_ranges(view, model.config.preprocess))

    def prepare(self, options: SegmentOptions, stop: Callable[[], bool] | None = None) -> Precision:
        """The precision `options` asks for on the model's device (`stop` may end its first timing: `choose`), with
        the network prepared for it."""
        network = self.model.network
        chosen = choose(next(network.parameters()).device, options.precision, stop=stop)
        prepare_network(network, chosen)
        return chosen

    def batch(self, slices: np.ndarray, clicks: list[Click]) -> torch.Tensor:
        """The network's input for slice indices `slices`, at model size, on the model's device."""
        inputs, (height, width) = self.model.config.inputs, self.view.shape[1:3]
        image = torch.from_numpy(normalise(self.view[slices], self.ranges)).permute(0, 3, 1, 2)
        neighbours = None
        if inputs.context_slices:
            c = FLAIR if self.view.shape[-1] > FLAIR else 0
            indices = neighbour_indices(slices, len(self.view), inputs).ravel()
            flair = normalise(self.view[indices][..., c : c + 1], self.ranges[c : c + 1])[..., 0]
            neighbours = torch.from_numpy(flair.reshape(len(slices), -1, height, width))
        maps = None
        if inputs.clicks and clicks:
            sigma = inputs.click_sigma * max(height, width) / self.model.config.preprocess.image_size
            maps = click_maps(clicks, slices, (height, width), sigma, inputs.click_reach)
        device = next(self.model.network.parameters()).device
        return to_model_size(
            assemble(image, neighbours, maps, inputs).to(device), self.model.config.preprocess.image_size
        )

    def probabilities(
        self, slices: np.ndarray, clicks: list[Click], options: SegmentOptions, chosen: Precision,
        stop: Callable[[], bool] | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(slice indices, probabilities (n, H, W) float32) for `slices`, a batch at a time, until `stop` says so."""
        height, width = self.view.shape[1:3]
        with out_of_memory_as_advice(), torch.inference_mode():
            for start in range(0, len(slices), options.batch_size):
                if stop is not None and stop():
                    return
                chunk = np.asarray(slices[start : start + options.batch_size])
                batch = self.batch(chunk, clicks)
                prob = restore_size(
                    forward_probability(self.model.network, batch, options.tta, chosen, options.backend), height, width
                )
                yield chunk, prob[:, 0].float().cpu().numpy()


def segment_volume(
    model: LoadedModel, image: np.ndarray, options: SegmentOptions | None = None, *, rgb: bool | None = None
) -> Segmentation:
    """Segment a whole scan at once (see `segment_steps`)."""
    for progress in segment_steps(model, image, options, rgb=rgb):
        if progress.result is not None:
            return progress.result
    raise AssertionError("segment_steps ended without a result although nothing asked it to stop")
