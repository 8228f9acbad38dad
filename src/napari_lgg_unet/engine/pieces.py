"""The 3D pieces of a tumour mask, each with its size, the slices it spans and how much to trust it.

A user reviewing a mask wants the doubtful pieces first. The evidence for a piece is what the network said inside it
(peak and mean probability), how large it is, where it sits among the slices and how far it lies from the main piece:
on the LGG validation patients the large confident false pieces lie on the first or last slices (rims at the top of
the head, the skull base), the true tumours in between, and the small true pieces are fragments beside the main
tumour while the small false ones lie away from it. The combination in `confidence` and its measured ranking power
are in docs/piece-confidence.md (benchmarks/piece_confidence.py); the brain mask's evidence (share inside the brain,
share of brain slices above) was measured there too and ranked no better than slice position alone, which needs no
scan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from .errors import InputError
from .postprocess import piece_peaks


@dataclass(frozen=True)
class Piece:
    """Piece `index` (its value in the piece-label volume): `voxels`, `size` (`voxels` times the voxel volume its
    lister was given: mm³ for a scan, mm² for a 2D image, see `units.voxel_volume`; None without one), the first and
    last index it touches along each axis (`extent`, z, y, x), its centre (z, y, x) in voxels and `confidence` in
    [0, 1] (1: surely tumour). `size` has no unit in its name: a 2D image's pieces are areas."""

    index: int
    voxels: int
    size: float | None
    extent: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    centre: tuple[float, float, float]
    confidence: float

    @property
    def slices(self) -> tuple[int, int]:
        """The first and last slice it touches."""
        return self.extent[0]


@dataclass(frozen=True)
class PieceEvidence:
    """Per-piece evidence for pieces 1..n, each an array of length n (see the module docstring)."""

    peak: np.ndarray
    mean: np.ndarray
    voxels: np.ndarray
    depth: np.ndarray  # how far the piece's centre lies from the nearer end slice, as a share of the slices (0-0.5)
    gap: np.ndarray  # voxels from the piece to the nearest voxel of the main piece (0 for the main piece itself)
    centres: np.ndarray  # (n, 3) centre of each piece (z, y, x) in voxels


EDGE_SHARE = 0.25  # pieces centred in the outer quarter of the slices at either end are doubted, linearly to the end
GAP_SCALE = 3.0  # voxels: a piece this far from the main piece counts half as sure, one 3x as far a quarter


def label_pieces(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """int32 piece labels (0 background, 1..n) of a (Z, H, W) or (H, W) mask, pieces connected by faces in 3D,
    the same pieces `postprocess` keeps or drops."""
    labels, n = ndimage.label(np.asarray(mask) > 0)
    return labels.astype(np.int32, copy=False), int(n)


def piece_evidence(probability: np.ndarray, labels: np.ndarray, n: int) -> PieceEvidence:
    """The evidence of pieces 1..n of `labels` (Z, H, W) from the probabilities they were cut from. A one-slice scan
    says nothing about depth: its pieces get the middle's (0.5)."""
    where = np.nonzero(labels)  # the pieces' voxels only: sums over the whole volume cost 10x more on a real scan
    inside = labels[where]
    voxels = np.bincount(inside, minlength=n + 1)[1:]
    sums = np.bincount(inside, weights=probability[where], minlength=n + 1)[1:]
    centres = np.stack([np.bincount(inside, weights=axis, minlength=n + 1)[1:] for axis in where], axis=1)
    centres = centres / np.maximum(voxels, 1)[:, None]
    last = len(labels) - 1
    depth = np.minimum(centres[:, 0], last - centres[:, 0]) / last if last > 0 else np.full(n, 0.5)
    mean = sums / np.maximum(voxels, 1)
    main = int(np.argmax(voxels * _inner_trust(mean, depth))) + 1 if n else 0
    gap = _gaps(np.stack(where, axis=1), inside, labels, main, n)
    return PieceEvidence(piece_peaks(probability, labels, n), mean, voxels, depth, gap, centres)


def _inner_trust(mean: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Mean probability scaled down near the first and last slices (see `confidence`)."""
    return np.clip(mean, 0.0, 1.0) * np.minimum(1.0, depth / EDGE_SHARE)


def _gaps(points: np.ndarray, inside: np.ndarray, labels: np.ndarray, main: int, n: int) -> np.ndarray:
    """Distance in voxels from each piece 1..n (its voxels `points` with labels `inside`) to piece `main`: the
    nearest pair of voxels, found from the main piece's surface with a k-d tree (a distance transform of the whole
    scan took 10x longer, too slow to redo on every click)."""
    gap = np.zeros(n)
    others = inside != main
    if not n or not others.any():
        return gap
    mine = points[~others]
    low, high = mine.min(axis=0), mine.max(axis=0) + 1
    own = labels[tuple(slice(a, b) for a, b in zip(low, high))] == main
    surface = np.argwhere(own & ~ndimage.binary_erosion(own)) + low
    distance, _ = cKDTree(surface).query(points[others])
    gap[:] = np.inf
    np.minimum.at(gap, inside[others] - 1, distance)
    gap[main - 1] = 0.0
    return gap


def confidence(evidence: PieceEvidence, gap_scale: float = GAP_SCALE) -> np.ndarray:
    """How sure each piece is to be tumour, in [0, 1]: the network's mean probability inside it, scaled down for
    pieces centred near the first or last slices (where the confident false rims of the top of the head and the skull
    base lie) and for pieces away from the main piece (the surest large one: small true pieces are its fragments).
    Monotone in each; measured in docs/piece-confidence.md (`gap_scale` inf: the rule before the gap term)."""
    return _inner_trust(evidence.mean, evidence.depth) / (1.0 + evidence.gap / gap_scale)


def list_pieces(
    probability: np.ndarray, mask: np.ndarray, voxel_volume: float | None = None
) -> tuple[np.ndarray, list[Piece]]:
    """(piece labels int32, pieces in label order) of `mask` (0/1) given the `probability` it came from, both the
    scan's spatial shape; `voxel_volume` is one voxel's volume in mm^3 (mm^2 for a 2D image; None: sizes in voxels
    only): the caller knows the geometry (a napari layer's scale, affine and units: `units.voxel_volume`), so it
    hands over the volume, not the axes. A 2D mask is a one-slice scan: its pieces span slice 0."""
    probability, mask = np.asarray(probability), np.asarray(mask)
    if probability.shape != mask.shape or mask.ndim not in (2, 3):
        raise InputError(f"mask {mask.shape} and probability {probability.shape} must be one (Z, H, W) or (H, W) grid")
    volume = mask.reshape((1,) * (3 - mask.ndim) + mask.shape)
    labels, n = label_pieces(volume)
    pieces = describe_pieces(probability.reshape(volume.shape), labels, n, voxel_volume)
    return labels.reshape(mask.shape), pieces


def describe_pieces(probability: np.ndarray, labels: np.ndarray, n: int,
                    voxel_volume: float | None = None) -> list[Piece]:
    """The pieces 1..n of `labels` (Z, H, W), already labelled (e.g. by `postprocess.kept_labels`), in label order.
    A 2D grid is a one-slice scan, as in `list_pieces`."""
    if labels.ndim == 2:
        probability, labels = np.asarray(probability)[None], labels[None]
    evidence = piece_evidence(probability, labels, n)
    trust = confidence(evidence)
    found = ndimage.find_objects(labels, max_label=n)
    sizes = [None] * n if voxel_volume is None else [float(voxels) * voxel_volume for voxels in evidence.voxels]
    return [
        Piece(k + 1, int(evidence.voxels[k]), sizes[k], tuple((span.start, span.stop - 1) for span in found[k]),
              tuple(float(c) for c in evidence.centres[k]), float(trust[k]))
        for k in range(n)
    ]


def doubtful_first(pieces: list[Piece]) -> list[Piece]:
    """The order a reviewer wants: least confident first, the larger of two equally sure pieces first."""
    return sorted(pieces, key=lambda piece: (piece.confidence, -piece.voxels, piece.index))
