"""click_training: where a careful user clicks on the network's errors, and how many times in a row."""

import numpy as np
import pytest
import torch

from napari_lgg_unet.engine import click_training
from napari_lgg_unet.engine.click_training import next_click, with_simulated_clicks
from napari_lgg_unet.engine.model_input import InputConfig
from napari_lgg_unet.engine.precision import Precision


def test_a_right_prediction_needs_no_click():
    truth = np.zeros((16, 16), bool)
    truth[4:8, 4:8] = True
    assert next_click(truth.copy(), truth) is None


def test_missed_tumour_gets_a_positive_click_deepest_in_the_largest_miss():
    truth = np.zeros((20, 20), bool)
    truth[2:4, 2:4] = True  # a small miss
    truth[8:17, 5:14] = True  # a large miss, centre (12, 9)
    click = next_click(np.zeros_like(truth), truth)
    assert click.positive and (click.z, click.y, click.x) == (0, 12, 9)


def test_false_tumour_gets_a_negative_click_even_beside_a_smaller_miss():
    truth = np.zeros((20, 20), bool)
    truth[1:3, 1:3] = True  # missed, 4 pixels
    predicted = np.zeros_like(truth)
    predicted[11:18, 11:18] = True  # drawn where there is none, 49 pixels, centre (14, 14)
    click = next_click(predicted, truth)
    assert not click.positive and (click.y, click.x) == (14, 14)


def test_in_3d_the_click_is_on_the_slice_deepest_in_the_region():
    truth = np.zeros((7, 12, 12), bool)
    truth[1:6, 3:8, 3:8] = True  # a cube of 5, centre (3, 5, 5)
    click = next_click(np.zeros_like(truth), truth)
    assert click.positive and (click.z, click.y, click.x) == (3, 5, 5)


def test_a_miss_at_the_border_is_clicked_inside_not_on_the_edge():
    truth = np.zeros((10, 10), bool)
    truth[:, :3] = True  # a strip along the left edge: the image edge is no boundary of the region
    click = next_click(np.zeros_like(truth), truth)
    assert click.positive and click.x == 1


@pytest.mark.parametrize("rounds", [1, 3])
def test_each_batch_draws_one_to_rounds_clicks_in_a_row_on_its_errors(rounds, monkeypatch):
    calls = []

    def misses_everything(network, batch, precision, backend):  # one forward pass per round of clicks
        calls.append(len(batch))
        return torch.full((len(batch), 1, *batch.shape[-2:]), -10.0)

    monkeypatch.setattr(click_training, "forward", misses_everything)
    rng = np.random.default_rng(0)
    x, y = torch.rand(2, 3, 32, 32), torch.zeros(2, 1, 32, 32)
    y[:, :, 8:20, 8:20] = 1.0  # a tumour the network misses: every round clicks it
    precision = Precision(torch.device("cpu"), "fp32", channels_last=False)
    seen = []
    for _ in range(40):
        before = len(calls)
        out = with_simulated_clicks(torch.nn.Identity(), x, y, InputConfig(clicks=True), precision, 1.0, rng, rounds)
        seen.append(len(calls) - before)
        # a click map peaks at 1, or exp(-2) when rendered as if placed 2 slices away; no negative click
        assert out.shape == (2, 5, 32, 32) and out[:, 3].amax() > 0.1 and out[:, 4].amax() == 0
    assert set(seen) == set(range(1, rounds + 1))


def test_decoy_clicks_come_from_a_neighbour_and_are_wrong_on_this_slice_near_its_edge(monkeypatch):
    def right_everywhere(network, batch, precision, backend):  # no errors: every click is a decoy
        return torch.where(truth_map[: len(batch)] > 0, 10.0, -10.0)

    monkeypatch.setattr(click_training, "forward", right_everywhere)
    y = torch.zeros(1, 1, 48, 48)
    y[:, :, 16:32, 16:32] = 1.0
    truth_map = y
    precision = Precision(torch.device("cpu"), "fp32", channels_last=False)
    rng = np.random.default_rng(1)
    kinds = set()
    for _ in range(30):
        out = with_simulated_clicks(torch.nn.Identity(), torch.rand(1, 3, 48, 48), y, InputConfig(clicks=True),
                                    precision, 1.0, rng, 1, decoys=1.0)
        positive, negative = out[0, 3], out[0, 4]
        assert (positive.amax() > 0) != (negative.amax() > 0)  # exactly one decoy, no error click
        peak = positive if positive.amax() > 0 else negative
        assert peak.amax() <= np.exp(-0.5) + 1e-6  # rendered as if 1 or 2 slices away
        cy, cx = np.unravel_index(int(peak.argmax()), peak.shape)
        inside = bool(y[0, 0, cy, cx])
        assert inside == (peak is negative)  # wrong here: "not tumour" on tumour, "tumour" on background
        assert min(abs(cy - 16), abs(cy - 31), abs(cx - 16), abs(cx - 31)) <= 4  # near the tumour's edge
        kinds.add(peak is negative)
    assert kinds == {True, False}
    out = with_simulated_clicks(torch.nn.Identity(), torch.rand(1, 3, 48, 48), y, InputConfig(clicks=True),
                                precision, 1.0, rng, 1, decoys=0.0)
    assert out[0, 3:].amax() == 0  # no errors and no decoys: no click at all
