import json
from dataclasses import asdict

import numpy as np
import pytest
from scipy import ndimage

from napari_lgg_unet.engine.pieces import label_pieces
from napari_lgg_unet.engine.postprocess import PostprocessConfig, kept_labels, postprocess


def _two_confident_pieces_and_a_hesitant_one() -> np.ndarray:
    prob = np.zeros((4, 30, 30), np.float32)
    prob[0:4, 0:10, 0:10] = 0.97  # confident false piece at the top of the head: 400 voxels
    prob[1:3, 20:25, 20:25] = 0.95  # the real, smaller tumour: 50 voxels
    prob[0:4, 12:18, 22:28] = 0.7  # a large but hesitant piece: 144 voxels
    prob[2, 28, 0] = 0.99  # a confident speck
    return prob


def test_confident_pieces_rule_keeps_every_confident_piece_and_drops_hesitant_ones_and_specks():
    mask = postprocess(
        _two_confident_pieces_and_a_hesitant_one(), PostprocessConfig(0.5, min_size=10, min_confidence=0.9)
    )
    assert mask.dtype == np.uint8
    assert mask[1:3, 20:25, 20:25].all() and mask[:, 0:10, 0:10].all()
    assert not mask[:, 12:18, 22:28].any() and mask[2, 28, 0] == 0
    assert mask.sum() == 450


def test_keeping_only_the_largest_piece_can_delete_the_tumour():
    mask = postprocess(_two_confident_pieces_and_a_hesitant_one(), PostprocessConfig(0.5, keep_largest=True))
    assert not mask[1:3, 20:25, 20:25].any()


def test_models_without_a_confidence_level_keep_their_old_behaviour():
    prob = _two_confident_pieces_and_a_hesitant_one()
    assert postprocess(prob, PostprocessConfig(0.5)).sum() == 400 + 50 + 144 + 1
    assert postprocess(prob, PostprocessConfig(0.5, min_size=2)).sum() == 400 + 50 + 144


@pytest.mark.parametrize("config", [PostprocessConfig(min_size=30), PostprocessConfig(min_confidence=0.9),
                                    PostprocessConfig(keep_largest=True), PostprocessConfig()])
def test_kept_labels_are_the_pieces_of_the_postprocessed_mask_labelled_once(config):
    probability = ndimage.gaussian_filter(np.random.default_rng(3).random((6, 40, 40)), 1.5)
    probability = (probability - probability.min()) / np.ptp(probability)
    labels, n = kept_labels(probability, config, keep_at=((0, 0, 0),))
    expected, m = label_pieces(postprocess(probability, config, keep_at=((0, 0, 0),)))
    assert n == m >= 1
    np.testing.assert_array_equal(labels, expected)


def test_the_largest_remains_of_each_earlier_piece_are_kept_below_the_minimum_size():
    earlier = np.zeros((1, 20, 40), np.int32)
    earlier[0, 2:12, 2:12] = 1  # two pieces the clean-up kept before
    earlier[0, 2:12, 20:30] = 2
    probability = np.zeros((1, 20, 40), np.float32)
    probability[0, 2:5, 2:12] = 0.9  # piece 1 cut in two: 30 and 10 voxels remain
    probability[0, 10:12, 2:7] = 0.9
    probability[0, 15:17, 33:39] = 0.9  # a new 12-voxel speck, never kept
    labels, n = kept_labels(probability, PostprocessConfig(0.5, min_size=50), earlier=earlier)
    assert n == 1 and labels[0, 2:5, 2:12].all() and labels.astype(bool).sum() == 30
    labels, n = kept_labels(probability, PostprocessConfig(0.5, min_size=50))
    assert n == 0


def test_numpy_scalars_make_the_same_clean_up_as_python_numbers():
    """A threshold and size read from a table of results, or computed with numpy, are plain numbers in the config."""
    config = PostprocessConfig(threshold=np.float32(0.4), min_size=np.int64(500), keep_largest=np.bool_(False),
                               min_confidence=np.float16(0.5))
    assert config == PostprocessConfig(threshold=0.4, min_size=500, min_confidence=0.5)
    assert json.loads(json.dumps(asdict(config))) == asdict(config)
