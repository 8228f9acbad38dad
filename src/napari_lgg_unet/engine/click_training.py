"""Simulated clicks on the network's own errors, so one network learns both to segment alone and to be corrected.

As in RITM / DeepEdit: for a share of each batch the network first predicts without clicks (no gradient), a
simulated user clicks the pixel deepest inside the largest wrong region (positive where tumour was missed, negative
where false tumour was drawn), again after seeing the corrected prediction for up to `rounds` clicks in a row (as the
benchmark's user clicks 5 times), and the network then trains on the batch with those click maps. The rest of the
batch trains without clicks, which keeps the automatic segmentation as good as a model without click inputs. Some
clicks are rendered as if placed 1 or 2 slices away, since a user's click also acts on the neighbouring slices where
the same structure continues.

In use such a click can be wrong where it lands on a neighbour: a "not tumour" click on a false rim of slice z
reaches slice z+2, where the tumour may have grown under it. With `decoys`, that share of the clicked samples also
gets a click rendered as if placed 1-2 slices away, at a pixel near this slice's tumour edge where it is wrong here
(a "not tumour" click on tumour, a "tumour" click on background), with the target unchanged: the network learns that
a click on another slice does not override what this slice shows.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from scipy import ndimage

from .backends import forward
from .model_input import Click, InputConfig, assemble, click_maps
from .precision import Precision

NEIGHBOUR_CLICKS = 0.3  # share of clicks rendered as if placed on a slice 1 or 2 away
DECOY_EDGE = 4  # pixels from this slice's tumour edge within which a decoy click lands


def next_click(predicted: np.ndarray, truth: np.ndarray) -> Click | None:
    """Where a careful user clicks on one slice (or volume): the point deepest inside the largest wrong region.

    `predicted` and `truth` are bool arrays of one shape, (H, W) or (Z, H, W); None when nothing is wrong.
    """
    wrong = predicted != truth
    if not wrong.any():
        return None
    labels, n = ndimage.label(wrong)
    largest = 1 + int(np.argmax(np.bincount(labels.ravel(), minlength=n + 1)[1:]))
    region = np.pad(labels == largest, 1)
    depth = ndimage.distance_transform_edt(region)[(slice(1, -1),) * wrong.ndim]
    point = np.unravel_index(int(np.argmax(depth)), wrong.shape)
    coords = (0,) * (3 - wrong.ndim) + tuple(int(c) for c in point)
    return Click(*map(float, coords), positive=bool(truth[point]))


def with_simulated_clicks(
    network: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, inputs: InputConfig, precision: Precision,
    fraction: float, rng: np.random.Generator, rounds: int = 2, decoys: float = 0.0,
) -> torch.Tensor:
    """Batch x (n, channels without clicks, S, S) and masks y (n, 1, S, S) -> x with click maps appended.

    A share `fraction` of the samples gets clicks from `network`'s own errors (see the module docstring): each
    batch draws 1 to `rounds` clicks in a row, uniformly. The network's train/eval mode is restored afterwards.
    """
    maps = torch.zeros((len(x), 2) + tuple(x.shape[-2:]))
    chosen = np.flatnonzero(rng.random(len(x)) < fraction)
    if not len(chosen):
        return assemble(x, None, maps, _clicks_only(inputs))
    was_training = network.training
    network.eval()
    clicks: dict[int, list[Click]] = {int(i): [] for i in chosen}
    truth = y[:, 0].cpu().numpy() > 0.5
    try:
        for _ in range(rounds - int(rng.random() * rounds)):
            batch = assemble(x[chosen], None, maps[chosen], _clicks_only(inputs)).to(precision.device)
            with torch.inference_mode():
                predicted = forward(network, batch, precision, "torch")[:, 0].cpu().numpy() > 0
            for row, i in enumerate(chosen):
                click = next_click(predicted[row], truth[i])
                if click is not None:
                    away = float(rng.choice([1, 2])) if rng.random() < NEIGHBOUR_CLICKS else 0.0
                    clicks[int(i)].append(Click(away, click.y, click.x, click.positive))
                    maps[i] = click_maps(clicks[int(i)], np.zeros(1), tuple(x.shape[-2:]), inputs.click_sigma,
                                         inputs.click_reach)[0]
    finally:
        network.train(was_training)
    for i in chosen if decoys else ():  # no draws without decoys: the recipes before them replay exactly
        decoy = _decoy_click(truth[i], rng) if rng.random() < decoys else None
        if decoy is not None:
            clicks[int(i)].append(decoy)
            maps[i] = click_maps(clicks[int(i)], np.zeros(1), tuple(x.shape[-2:]), inputs.click_sigma,
                                 inputs.click_reach)[0]
    return assemble(x, None, maps, _clicks_only(inputs))


def _decoy_click(truth: np.ndarray, rng: np.random.Generator) -> Click | None:
    """A click as if placed 1-2 slices away and wrong on this slice (see the module docstring): a negative one on
    tumour or a positive one on background, within DECOY_EDGE pixels of the tumour's edge; None without tumour."""
    if not truth.any() or truth.all():
        return None
    positive = bool(rng.random() < 0.5)
    wrong_here = ~truth if positive else truth
    near_edge = ndimage.distance_transform_edt(wrong_here) <= DECOY_EDGE
    candidates = np.argwhere(wrong_here & near_edge)
    y, x = candidates[rng.integers(len(candidates))]
    return Click(float(rng.choice([1, 2])), float(y), float(x), positive)


def _clicks_only(inputs: InputConfig) -> InputConfig:
    """`assemble` settings for a batch that already holds its sequences and neighbours and lacks only clicks."""
    return replace(inputs, context_slices=0, clicks=True)
