"""Pieces to review: each 3D piece of a mask with its size, slices and confidence, and removals that outlive a new
threshold."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lgg_unet.engine.errors import InputError
from napari_lgg_unet.engine.pieces import doubtful_first, list_pieces
from napari_lgg_unet.engine.postprocess import PostprocessConfig, postprocess
from napari_lgg_unet.engine.review import PieceReview


def _scan() -> np.ndarray:
    """A sure tumour (slices 2-5), a hesitant blob (slice 7) and a speck the model barely believes (slice 0)."""
    probability = np.zeros((8, 20, 20), np.float32)
    probability[2:6, 4:10, 4:10] = 0.97
    probability[7, 12:16, 12:18] = 0.62
    probability[0, 0, 0] = 0.55
    return probability


def test_pieces_match_their_labels_and_report_size_slices_and_place():
    probability = _scan()
    labels, pieces = list_pieces(probability, probability >= 0.5, spacing=(2.0, 0.5, 0.5))
    assert labels.dtype == np.int32 and labels.shape == probability.shape
    assert sorted(p.index for p in pieces) == list(range(1, labels.max() + 1)) == [1, 2, 3]
    for piece in pieces:
        voxels = labels == piece.index
        assert piece.voxels == voxels.sum()
        assert piece.size_mm3 == pytest.approx(piece.voxels * 2.0 * 0.5 * 0.5)
        slices = np.flatnonzero(voxels.any(axis=(1, 2)))
        assert piece.slices == (slices[0], slices[-1])
        assert labels[tuple(round(c) for c in piece.centre)] == piece.index
        assert 0.0 <= piece.confidence <= 1.0
    tumour = next(p for p in pieces if p.slices == (2, 5))
    assert all(tumour.confidence > other.confidence for other in pieces if other is not tumour)


def test_without_spacing_sizes_are_voxels_only_and_a_2d_mask_is_one_slice():
    probability = _scan()[3]
    labels, [piece] = list_pieces(probability, probability >= 0.5)
    assert labels.shape == probability.shape and piece.size_mm3 is None
    assert piece.slices == (0, 0) and piece.voxels == 36


def test_doubtful_pieces_come_first():
    probability = _scan()
    _, pieces = list_pieces(probability, probability >= 0.5)
    ordered = doubtful_first(pieces)
    assert [p.confidence for p in ordered] == sorted(p.confidence for p in pieces)


def test_mismatched_shapes_are_refused_with_our_error():
    with pytest.raises(InputError, match="grid"):
        list_pieces(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))


def test_a_removed_piece_stays_removed_when_the_threshold_moves_and_can_be_restored():
    probability = _scan()
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
    review = PieceReview(_scan())
    review.update(_scan() >= 0.5)
    with pytest.raises(InputError, match="no piece 9"):
        review.remove(9)
