import numpy as np
import pytest

from napari_lgg_unet.engine.metrics import count, slice_scores, summarise, volume_scores


def test_scores_on_hand_made_masks():
    truth = np.zeros((4, 4), bool)
    truth[0, :] = True  # 4 pixels
    pred = np.zeros((4, 4), bool)
    pred[0, :2] = True
    pred[1, 0] = True  # tp 2, fp 1, fn 2, tn 11
    s = volume_scores(pred, truth)
    assert s.dice == pytest.approx(4 / 7)
    assert s.iou == pytest.approx(2 / 5)
    assert s.accuracy == pytest.approx(13 / 16)
    assert s.precision == pytest.approx(2 / 3)
    assert s.recall == pytest.approx(2 / 4)


def test_empty_prediction_on_empty_truth_scores_one_and_never_nan():
    empty = np.zeros((3, 5, 5), np.uint8)
    s = volume_scores(empty, empty)
    assert (s.dice, s.iou, s.accuracy, s.precision, s.recall) == (1.0, 1.0, 1.0, 1.0, 1.0)
    full = np.ones((3, 5, 5), np.uint8)
    missed = volume_scores(empty, full)
    assert (missed.dice, missed.iou, missed.precision, missed.recall) == (0.0, 0.0, 0.0, 0.0)
    assert volume_scores(full, empty).recall == 0.0


def test_per_volume_pools_voxels_while_per_slice_scores_each_slice():
    truth = np.zeros((2, 4, 4), bool)
    truth[0, :2] = True
    pred = truth.copy()
    pred[1, 0, 0] = True  # one false positive on an empty slice
    per_slice = slice_scores(pred, truth)
    assert [s.dice for s in per_slice] == [1.0, 0.0]
    assert volume_scores(pred, truth).dice == pytest.approx(16 / 17)
    assert count(pred, truth).fp == 1


def test_summary_gives_mean_and_median_over_volumes():
    a = volume_scores(np.ones((2, 2)), np.ones((2, 2)))
    b = volume_scores(np.zeros((2, 2)), np.ones((2, 2)))
    c = volume_scores(np.ones((2, 2)), np.ones((2, 2)))
    summary = summarise({"a": a, "b": b, "c": c})
    assert summary["mean_dice"] == pytest.approx(2 / 3)
    assert summary["median_dice"] == 1.0
