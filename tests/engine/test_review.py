"""review.PieceReview: pieces a user removed stay removed across a new threshold, and come back when restored."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lgg_unet.engine.errors import InputError
from napari_lgg_unet.engine.postprocess import PostprocessConfig, postprocess
from napari_lgg_unet.engine.review import PieceReview, SaidTumour

from piece_maps import three_pieces


def test_a_removed_piece_stays_removed_when_the_threshold_moves_and_can_be_restored():
    probability = three_pieces()
    probability[2:6, 4:10, 10] = 0.7  # a rim that joins the tumour only at low thresholds
    review = PieceReview(probability)
    review.update(postprocess(probability, PostprocessConfig(0.6)))
    blob = next(p.index for p in review.pieces if p.slices == (7, 7))
    mask = review.remove(blob)
    assert not mask[7].any() and mask[3, 5, 5] == 1
    # Lower threshold: the blob is renumbered but is still the rejected piece; the tumour is still kept.
    mask = review.update(postprocess(probability, PostprocessConfig(0.5)))
    assert not mask[7].any() and mask[3, 5, 5] == 1 and len(review.removed) == 1
    # Higher threshold: the blob is gone from the mask altogether, nothing is removed any more.
    review.update(postprocess(probability, PostprocessConfig(0.9)))
    assert review.removed == set()
    mask = review.update(postprocess(probability, PostprocessConfig(0.6)))
    assert not mask[7].any()
    blob = next(p.index for p in review.pieces if p.slices == (7, 7))
    assert review.restore(blob)[7].sum() == 24
    assert review.update(postprocess(probability, PostprocessConfig(0.5)))[7].sum() == 24


def test_removing_a_piece_that_does_not_exist_is_our_error():
    review = PieceReview(three_pieces())
    review.update(three_pieces() >= 0.5)
    with pytest.raises(InputError, match="no piece 9"):
        review.remove(9)


def test_a_fresh_review_returns_the_mask_as_given_and_each_piece_s_voxels():
    probability = three_pieces()
    given = (probability >= 0.5).astype(np.uint8)
    review = PieceReview(probability)
    np.testing.assert_array_equal(review.update(given), given)
    assert review.removed == set()
    together = sum(review.piece_voxels(p.index).astype(int) for p in review.pieces)
    np.testing.assert_array_equal(together, given)


def test_a_tumour_click_inside_a_removed_piece_restores_it_and_only_it():
    probability = three_pieces()
    review = PieceReview(probability)
    mask = postprocess(probability, PostprocessConfig(0.6))
    review.update(mask)
    for piece in list(review.pieces):
        review.remove(piece.index)
    blob = next(p for p in review.pieces if p.slices == (7, 7))
    inside = tuple(int(round(c)) for c in blob.centre)
    shown = review.update(mask, said=SaidTumour(inside, review.removals))
    assert shown[inside] == 1 and shown.sum() == blob.voxels and len(review.removed) == len(review.pieces) - 1
    background = SaidTumour((0, 0, 0), review.removals)
    assert review.update(mask, said=background).sum() == blob.voxels  # a click on background changes nothing
