"""A user's review of a mask piece by piece: which pieces are removed, kept across a new threshold or clean-up.

Pieces are renumbered whenever the mask changes, so a removal is remembered by where the piece was, not by its
number: after a change, a new piece stays removed when at least half of its voxels lay in removed pieces (a piece
that shrank or grew a little with the threshold is still the piece the user rejected; one that merged into a larger
kept piece is not). Restoring a piece forgets its place.

A "tumour" click brings back the removed piece it falls in, as removed before the click (`SaidTumour`): clicks are
computed in the background, and a piece the user removed while its click was computed or waited its turn came back
when the click landed, undoing the user's later word unseen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .pieces import Piece, list_pieces

STILL_REMOVED = 0.5  # share of a new piece's voxels inside removed places that keeps it removed


@dataclass(frozen=True)
class SaidTumour:
    """A user's "tumour" click: the voxel it fell on, and `removals`, the review's `removals` when the user clicked."""

    voxel: tuple[int, ...]
    removals: int


class PieceReview:
    """The pieces of the current mask (`pieces`, `labels` as `pieces.list_pieces` gives them), the ones removed
    (`removed`, piece indices) and the mask with them removed (`mask`, uint8 0/1)."""

    def __init__(self, probability: np.ndarray, voxel_volume: float | None = None) -> None:
        self.probability, self.voxel_volume = np.asarray(probability), voxel_volume
        self._removed_places = np.zeros(self.probability.shape, dtype=bool)
        self._restored_by_clicks: list[np.ndarray] = []  # per click, the removed places it restored (flat indices)
        self._removal_places: list[np.ndarray] = []  # each removal's places (flat indices), in the order made
        self.removed: set[int] = set()
        self.pieces: list[Piece] = []
        self.labels = np.zeros(self.probability.shape, dtype=np.int32)
        self._full = np.zeros(self.probability.shape, dtype=np.uint8)

    def update(self, mask: np.ndarray, said: SaidTumour | None = None,
               listed: tuple[np.ndarray, list[Piece]] | None = None, step: str | None = None) -> np.ndarray:
        """Take a new mask (a new threshold or clean-up of the same probabilities, or a click's correction); returns
        it with the pieces that are still removed taken out. The piece holding the voxel a "tumour" click fell on
        (`said`) is restored where it was removed before the click: the click is the later and more precise word.
        `listed` is what `list_pieces(self.probability, mask, self.voxel_volume)` gives, when a worker thread already
        made it. `step` is "click" for a click's mask and "undo" for an undone click's: undoing a click removes again
        the pieces that click restored."""
        self._full = np.asarray(mask, dtype=np.uint8)
        self.labels, self.pieces = listed or list_pieces(self.probability, self._full, self.voxel_volume)
        if step == "undo" and self._restored_by_clicks:
            self._removed_places.flat[self._restored_by_clicks.pop()] = True
        before = self._removed_places.copy() if step == "click" else None
        if said is not None and self.labels[said.voxel]:
            restored = self.labels == self.labels[said.voxel]
            for places in self._removal_places[said.removals:]:  # removed since the click: the user's later word
                restored.flat[places] = False
            self._removed_places &= ~restored
        if before is not None:
            self._restored_by_clicks.append(np.flatnonzero(before & ~self._removed_places))
        inside = np.bincount(self.labels[self._removed_places], minlength=len(self.pieces) + 1)[1:]
        self.removed = {p.index for p in self.pieces if inside[p.index - 1] >= STILL_REMOVED * p.voxels}
        return self.mask

    @property
    def removals(self) -> int:
        """How many removals the user has made: a click made now says so in its `SaidTumour`."""
        return len(self._removal_places)

    def remove(self, index: int) -> np.ndarray:
        """Take piece `index` out of the mask; returns the new mask."""
        places = self.labels == self._check(index)
        self._removed_places |= places
        self._removal_places.append(np.flatnonzero(places))
        self.removed.add(index)
        return self.mask

    def restore(self, index: int) -> np.ndarray:
        """Put piece `index` back; returns the new mask."""
        self._removed_places &= self.labels != self._check(index)
        self.removed.discard(index)
        return self.mask

    def restore_painted(self, voxels: np.ndarray) -> bool:
        """The user painted tumour on `voxels` (bool): the removed pieces painted on are restored, as the one a
        "tumour" click falls in (hidden with its piece, the painting was undone unseen). True when any was."""
        painted = self.removed.intersection(np.unique(self.labels[voxels]).tolist())
        for index in painted:
            self.restore(index)
        return bool(painted)

    def piece_voxels(self, index: int) -> np.ndarray:
        """Bool mask of piece `index`."""
        return self.labels == self._check(index)

    @property
    def removed_places(self) -> np.ndarray:
        """Where the pieces the user removed lay (bool; read only): a piece of a new mask there stays removed."""
        places = self._removed_places.view()
        places.flags.writeable = False
        return places

    @property
    def full(self) -> np.ndarray:
        """The last mask taken (`update`), its removed pieces in: the pieces are labelled from it."""
        return self._full

    @property
    def mask(self) -> np.ndarray:
        if not self.removed:
            return self._full.copy()
        return (self._full.astype(bool) & ~np.isin(self.labels, sorted(self.removed))).astype(np.uint8)

    def _check(self, index: int) -> int:
        if not 1 <= index <= len(self.pieces):
            raise InputError(f"there is no piece {index}; the mask has {len(self.pieces)} pieces")
        return index
