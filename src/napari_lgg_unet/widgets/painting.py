"""The user's painting on the tumour layer: which voxels the brush, eraser or fill changed since Segment, and to what.

The widget sets the tumour layer from the network's mask (clicks, thresholds, pieces removed in the review list); a
voxel the user painted or erased stays as painted through all of those. The painted values are kept here, apart
from the layer: a painted piece the user removes in the review list leaves the layer, and ticking it back gives back
exactly what was painted (read back from the layer, it was lost with the removal).

What napari's undo (Ctrl-Z) takes back is no longer the user's painting, and what its redo puts back is again. The
widget starts napari's history afresh whenever it sets the layer (`layers.set_owned_data`), so the strokes napari can
undo or redo are exactly where the layer differs from what the widget last set it to: the painting is that difference
laid over the painting as it was when the widget set the layer (`settle`), rebuilt at each look, never added up. Added
up, a stroke undone was still "painted" and came back at the next click or threshold.
"""

from __future__ import annotations

import numpy as np


class Painting:
    """Where the user painted or erased (`voxels`, bool), the label values painted there (`values`, 0: erased) and
    where tumour was painted since the review last heard of it (`take_fresh`)."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.voxels = np.zeros(shape, dtype=bool)
        self.values = np.zeros(shape, dtype=dtype)
        self._settled = self.voxels, self.values  # the painting when the widget last set the layer: beyond undo
        self._fresh = np.zeros(shape, dtype=bool)

    def note(self, current: np.ndarray, shown: np.ndarray) -> None:
        """The painting as the layer's data (`current`) has it: the settled painting (`settle`) with `current` over
        it where it differs from what the widget last set it to (`shown`): the strokes since then that napari has
        not undone. `voxels` and `values` are replaced, not changed in place: a copy handed to a worker (`frozen`)
        shares them."""
        changed = current != shown
        if not changed.any():  # the usual case, as a click or threshold starts: one comparison, no more
            self.voxels, self.values = self._settled  # any stroke since was undone
            return
        self._fresh |= changed & (current > 0) & ~(self.voxels & (self.values == current))  # noted before: not new
        voxels, values = self._settled
        self.voxels = voxels | changed
        # in a type that holds both: a script's int32 labels of 256 or 300, cast to the mask's uint8, came back
        # as 0 (erased) and 44 at the next click or threshold
        self.values = np.where(changed, current, values)

    def settle(self) -> None:
        """The widget set the layer with the painting as it is now and napari's history starts afresh: no undo
        reaches the strokes so far, which stay painted whatever the layer shows (a removed piece hides them)."""
        self._settled = self.voxels, self.values

    def frozen(self) -> Painting:
        """The painting so far, for a worker thread to lay over a new mask (`workers.painted_over`) while this one
        goes on taking in strokes on the viewer's thread: it shares `voxels` and `values`, which `note` replaces
        rather than changes (copying them held the viewer 20-80 ms on a 1 mm scan). Nothing is fresh in it."""
        copy = Painting.__new__(Painting)
        copy.voxels, copy.values, copy._fresh = self.voxels, self.values, np.zeros_like(self._fresh)
        copy._settled = self._settled
        return copy

    def take_fresh(self) -> np.ndarray:
        """Where tumour was painted since the last call and is still (an undone stroke is not: it restores no removed
        piece; for `PieceReview.restore_painted`)."""
        fresh, self._fresh = self._fresh, np.zeros_like(self._fresh)
        return fresh & self.voxels & (self.values > 0) if fresh.any() else fresh

    def kept_now(self, kept: np.ndarray, full: np.ndarray, then: Painting | None, unpainted: np.ndarray,
                 removed: np.ndarray) -> np.ndarray:
        """`kept` (the review's mask: `full`, which is `then.over(unpainted)` or `unpainted` for no `then`, less its
        removed pieces) as the painting now has it: where the two paintings differ, a stroke made or undone since
        `then`, the mask as painted now, less removed pieces (`full`'s, or where pieces were removed, `removed`).
        Napari tells of no undo on a hidden layer, and a click's or threshold's painting is that of its start: shown
        from `kept` as it was, an undone stroke came back on the layer until the pieces were listed again. Values
        are 0 off `voxels`, so comparing them finds every change (a few ms on a 1 mm scan); only the voxels that
        differ are laid over again (over the whole mask, 16 ms)."""
        if then is not None and self.voxels is then.voxels and self.values is then.values:
            return kept  # not painted since `then`: nothing to compare
        changed = self.voxels if then is None else (self.voxels != then.voxels) | (self.values != then.values)
        if not changed.any():
            return kept
        at = np.flatnonzero(changed)
        kept = np.array(kept, copy=True)
        painted = np.where(self.voxels.flat[at], self.values.flat[at] > 0, np.asarray(unpainted).flat[at] > 0)
        kept.flat[at] = painted & np.where(full.flat[at] > 0, kept.flat[at] > 0, ~removed.flat[at])
        return kept

    def drop_fresh(self, voxels: np.ndarray) -> None:
        """Tumour painted at `voxels` (bool) is not fresh any more: the user removed or restored the piece there after
        painting it, and that word stands (`take_fresh` would restore the removed piece at the next listing)."""
        self._fresh &= ~voxels

    def over(self, mask: np.ndarray) -> np.ndarray:
        """`mask` (0/1) as the user painted it: painted voxels tumour, erased ones not (uint8 0/1)."""
        return np.where(self.voxels, self.values > 0, np.asarray(mask) > 0).astype(np.uint8)

    def shown(self, full: np.ndarray, kept: np.ndarray, removed: np.ndarray) -> np.ndarray:
        """The tumour layer's data for `kept` (the review's mask, removed pieces out of `full`): painted voxels keep
        their painted values unless they lie in a removed piece. A painted voxel not yet in `full` (the mask of a
        click or threshold, its painted pieces still being listed) shows as painted unless it lies where the user
        removed a piece (`removed`, bool): a removed painted piece stays hidden meanwhile."""
        return np.where(self.voxels & ((kept > 0) | ((full == 0) & ~removed)), self.values, kept)
