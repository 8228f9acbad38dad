"""Pieces to review: each 3D piece of a mask with its size, slices and confidence."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lgg_unet.engine.errors import InputError
from napari_lgg_unet.engine.pieces import (
    describe_pieces, doubtful_first, label_pieces, list_pieces, piece_evidence,
)

from piece_maps import three_pieces


def test_pieces_match_their_labels_and_report_size_slices_and_place():
    probability = three_pieces()
    labels, pieces = list_pieces(probability, probability >= 0.5, voxel_volume=0.5)
    assert labels.dtype == np.int32 and labels.shape == probability.shape
    assert sorted(p.index for p in pieces) == list(range(1, labels.max() + 1)) == [1, 2, 3]
    for piece in pieces:
        voxels = labels == piece.index
        assert piece.voxels == voxels.sum()
        assert piece.size == pytest.approx(piece.voxels * 0.5)
        slices = np.flatnonzero(voxels.any(axis=(1, 2)))
        assert piece.slices == (slices[0], slices[-1])
        assert piece.extent == tuple((int(axis.min()), int(axis.max())) for axis in np.nonzero(voxels))
        assert labels[tuple(round(c) for c in piece.centre)] == piece.index
        assert 0.0 <= piece.confidence <= 1.0
    tumour = next(p for p in pieces if p.slices == (2, 5))
    assert all(tumour.confidence > other.confidence for other in pieces if other is not tumour)


def test_without_a_voxel_volume_sizes_are_voxels_only_and_a_2d_mask_is_one_slice():
    probability = three_pieces()[3]
    labels, [piece] = list_pieces(probability, probability >= 0.5)
    assert labels.shape == probability.shape and piece.size is None
    assert piece.slices == (0, 0) and piece.voxels == 36


def test_pieces_of_a_2d_grid_already_labelled_are_those_of_a_one_slice_scan():
    """The correction widget lists a 2D layer's pieces from labels it already has: rows must not count as slices."""
    probability = np.zeros((40, 40), np.float32)
    probability[1:4, 5:9] = probability[20:30, 10:20] = probability[37:39, 30:33] = 0.9
    labels, pieces = list_pieces(probability, probability >= 0.5)
    assert describe_pieces(probability, labels, len(pieces)) == pieces
    assert all(p.slices == (0, 0) and len(p.centre) == 3 for p in pieces)


def test_doubtful_pieces_come_first():
    probability = three_pieces()
    _, pieces = list_pieces(probability, probability >= 0.5)
    ordered = doubtful_first(pieces)
    assert [p.confidence for p in ordered] == sorted(p.confidence for p in pieces)


def test_a_fragment_beside_the_main_piece_is_surer_than_the_same_piece_far_from_it():
    """Small true pieces are fragments of the tumour, small false ones lie away from it (docs/piece-confidence.md)."""
    probability = np.zeros((9, 40, 40), np.float32)
    probability[2:7, 5:20, 5:20] = 0.95  # the main piece
    probability[4, 5:8, 21:24] = 0.7  # a fragment one voxel beside it
    probability[4, 30:33, 35:38] = 0.7  # the same fragment far away
    labels, n = label_pieces(probability >= 0.5)
    evidence = piece_evidence(probability, labels, n)
    main, near, far = (labels[4, 10, 10], labels[4, 6, 22], labels[4, 31, 36])
    assert evidence.gap[main - 1] == 0.0
    assert evidence.gap[near - 1] == pytest.approx(2.0)  # (4, x, 21) to (4, x, 19)
    assert evidence.gap[far - 1] == pytest.approx(np.hypot(30 - 19, 35 - 19))
    _, pieces = list_pieces(probability, probability >= 0.5)
    confidence = {p.index: p.confidence for p in pieces}
    assert confidence[main] > confidence[near] > confidence[far]


def test_mismatched_shapes_are_refused_with_our_error():
    with pytest.raises(InputError, match="grid"):
        list_pieces(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))
