"""Correct a mask with clicks: each click re-runs the click-conditioned network on the slices it reaches.

A click is an input of the network (engine/model_input.py), not an edit of the mask: "this is tumour" / "this is
not" changes the prediction around the click, on its slice and on the neighbouring slices the click reaches, so a
false rim is trimmed without deleting the tumour it touches.

Only what a click can change is recomputed: the slices it reaches, and on them a square `window` of network pixels
around it (128 of 256: a quarter of the pixels). The network's output near a crop's cut edges lacks the context beyond
them, so only the square's inner part (`MARGIN` pixels in from a cut edge) replaces the old probabilities. What this
costs in Dice against recomputing whole slices is measured in docs/corrections.md (`--window` of
benchmarks/corrections.py).

A click only moves the probabilities its way: "tumour" never removes tumour, "not tumour" never adds any. Without
that rule a tumour click sometimes dropped tumour on a neighbouring slice, which no user would expect; with it the
simulated user's mean Dice rose faster on the validation patients (docs/corrections.md).

The clean-up (minimum piece size, confidence, largest piece) is not judged afresh after a click: a click keeps what
it does not touch, and the mask only changes its way. What remains of a piece the mask held (its largest part,
where a click cut it in two) stays, however small a "not tumour" click leaves it, and a "not tumour" click never
brings back a piece the mask did not hold. Judged again after each click, a click that trimmed a false rim off a
small tumour left less than the minimum size and the whole tumour vanished (docs/corrections.md); removing a whole
piece is one click in the pieces list. A new clean-up (`set_postprocess`) gives the mask the same clicks would have
given under it: the automatic mask judged afresh, then each click's rule in turn, the network's answers kept (they do
not depend on the clean-up) and whether the network refused a click (`_honour`) judged at the new threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch

from .device import out_of_memory_as_advice
from .errors import InputError, ModelError
from .model import LoadedModel
from .model_input import Click
from .pieces import Piece, describe_pieces, label_pieces
from .postprocess import PostprocessConfig, kept_labels
from .precision import Precision
from .predict import ScanInput, SegmentOptions, check_run, forward_probability
from .preprocess import MAX_IMAGE_SIZE, restore_size, to_model_point, to_model_size
from .settings import option_and_flag
from .stopping import Stopped, check_stop, unless_stopped
from .validate import check_float, check_int

WINDOW = 128  # network pixels around a click that a click recomputes (a multiple of 32, the U-Net's stride)
MARGIN = 16  # network pixels inside a cut edge of the window whose output is not used


@dataclass(frozen=True)
class _Answer:
    """The network's answer to a click on its slices: its probabilities in the rows and columns `box` (the part of the
    window it trusts), NaN where a resized window's corner is not trusted. Kept per click, so that a new clean-up
    replays the click as it was made (`CorrectionSession._replayed`)."""

    box: tuple[slice, slice]
    values: np.ndarray

    def applied(self, old: np.ndarray, positive: bool) -> np.ndarray:
        """`old` (the slices' probabilities) moved this answer's way only (see the module docstring)."""
        new = old.copy()
        part = (slice(None), *self.box)
        new[part] = (np.fmax if positive else np.fmin)(old[part], self.values)  # NaN: not answered, `old` stays
        return new


@dataclass(frozen=True)
class _Undo:
    slices: np.ndarray
    probability: np.ndarray
    mask: np.ndarray  # the mask before the click, packed to bits
    answer: _Answer


@dataclass(frozen=True)
class _Shown:
    """A mask as the session shows it: its piece labels, their count and the 0/1 mask, made in full before any of
    them replaces the session's, so that an error while making them changes nothing."""

    piece_labels: np.ndarray
    piece_count: int
    mask: np.ndarray

    @classmethod
    def of(cls, labels: tuple[np.ndarray, int]) -> _Shown:
        return cls(labels[0], labels[1], (labels[0] > 0).astype(np.uint8))


class CorrectionSession:
    """A scan, its current mask and the clicks that shaped it; see the module docstring.

    `image` is anything `segment_volume` takes; a 2D image is a one-slice scan, so masks are always (Z, H, W).
    `probability` (the scan's spatial shape) skips the first segmentation when the caller already has it.
    `window` is the side in network pixels of the square a click recomputes (None: whole slices).
    `voxel_volume` is one voxel's volume in mm³ (mm² for a 2D image), `scan.voxel_volume` of a scan `load_scan` read
    (`units.voxel_volume` of its affine): the pieces' `size` is then in those units, as in the Segment widget's
    review list; None (a TIFF, an array without geometry): `size` is None and the pieces measure in voxels only.
    `stop` (None: nothing can ask) is asked between the timed passes of the first 'auto' precision choice on a machine
    (`precision.choose`, seconds) and between the batches of the first segmentation; asked to stop, the session is
    not made (`stopping.Stopped`): the Segment widget builds it in a worker that closing its dock stops. A new
    clean-up's replay of the clicks takes a stop of its own (`set_postprocess`).
    """

    def __init__(self, model: LoadedModel, image: np.ndarray, options: SegmentOptions | None = None, *,
                 rgb: bool | None = None, probability: np.ndarray | None = None, window: int | None = WINDOW,
                 voxel_volume: float | None = None, stop: Callable[[], bool] | None = None) -> None:
        options = check_run(model, options)
        self.voxel_volume = None if voxel_volume is None else check_float(
            "a voxel's volume", voxel_volume, 0.0, math.inf, low_open=True, high_open=True)
        if not model.config.inputs.clicks:
            raise ModelError("this model does not take clicks; use one trained with "
                             f"{option_and_flag('clicks', True, flag='lgg-unet train --clicks')}")
        size = model.config.preprocess.image_size
        if window is not None:  # no wider than any network's input: it is cut to this one's
            window = check_int("the click window", window, 64, MAX_IMAGE_SIZE)
            if window % 32:
                raise InputError(f"the click window must be a multiple of 32 pixels, not {window}")
        self.window = size if window is None else min(window, size)
        self.options = options
        self._scan = ScanInput.of(model, image, rgb)
        self._precision = self._scan.prepare(self.options, stop)
        self.clicks: list[Click] = []
        self._undo: list[_Undo] = []
        shape = self._scan.view.shape[:3]
        if probability is None:
            self.probability = self._predict(np.arange(shape[0]), stop)
        else:
            self.probability = _checked_probability(probability, shape)
        self._show(_Shown.of(self._judged(self.probability, [], self.postprocess, None)))

    @property
    def postprocess(self) -> PostprocessConfig:
        return self.options.postprocess_for(self._scan.model)

    def set_postprocess(self, config: PostprocessConfig, *, stop: Callable[[], bool] | None = None) -> np.ndarray:
        """Another threshold or clean-up for the same probabilities (the clicks stay); returns the new mask, the one
        the same clicks would have given under it (one labelling per click: the history is replayed). A clean-up
        that fails midway (out of memory, an interrupt) leaves the session as it was: the replay is made aside and
        replaces the options, undo steps and mask only once it is complete. `stop` (None: nothing can ask) is asked
        before each labelling of the replay (minutes for many clicks on a large scan): asked to stop, the replay ends
        there (`stopping.Stopped`) and the session is as it was, its old clean-up included."""
        if not isinstance(config, PostprocessConfig):
            raise InputError(f"a clean-up must be a PostprocessConfig, not {type(config).__name__}")
        if config != self.postprocess:
            undo, shown, probability = self._replayed(config, stop)
            self.options, self._undo, self.probability = replace(self.options, postprocess=config), undo, probability
            self._show(shown)
        return self.mask

    def click(self, z: float, y: float, x: float, positive: bool = True) -> np.ndarray:
        """Add a click at slice z, row y, column x (pixels) and return the updated mask. A click that fails (e.g. out
        of memory while the network runs) leaves the session as it was: no click, no undo step, the same mask."""
        click = self._checked(z, y, x, positive)
        reach = self._scan.model.config.inputs.click_reach
        slices = np.arange(max(0, round(click.z) - reach), min(len(self.probability), round(click.z) + reach + 1))
        before = self.probability[slices].copy()
        self.clicks.append(click)
        try:
            answer = _recompute_near(self._scan, before, slices, self.clicks, (click.y, click.x), self.window,
                                     self.options, self._precision)
            self._undo.append(_Undo(slices, before, np.packbits(self.mask), answer))
            self.probability[slices] = answer.applied(before, click.positive)
            self._honour(self.probability, click, self.postprocess)
            shown = _Shown.of(self._judged(self.probability, self.clicks, self.postprocess, self.piece_labels))
        except BaseException:  # the mask is not shown yet: take back the click, its step and its probabilities
            if len(self._undo) == len(self.clicks):
                self._undo.pop()
            self.clicks.pop()
            self.probability[slices] = before
            raise
        self._show(shown)
        return self.mask

    def _honour(self, probability: np.ndarray, click: Click, config: PostprocessConfig) -> None:
        """A click the network refused (the clicked voxel still on the other side of the threshold: it happens on
        confident false tumour) still takes effect: a disc of the click map's radius on the clicked slice gets
        probability 1 ("tumour") or 0 ("not tumour"). Before, the simulated user's next four clicks landed on the
        same voxel and changed nothing (docs/corrections.md). A click the network followed is left as it answered:
        forcing the disc then too made the Dice swing on a small tumour whose clicks alternate a few pixels apart.
        Refused or followed is judged at `config`'s threshold, in `probability` (the session's, or a replay's)."""
        spot = (round(click.z), round(click.y), round(click.x))
        if (probability[spot] >= config.threshold) == click.positive:
            return
        height, width = probability.shape[1:]
        model = self._scan.model.config
        radius = model.inputs.click_sigma * max(height, width) / model.preprocess.image_size
        rows, cols = np.ogrid[:height, :width]
        disc = (rows - click.y) ** 2 + (cols - click.x) ** 2 <= max(radius, 0.5) ** 2
        probability[spot[0]][disc] = 1.0 if click.positive else 0.0

    def undo(self) -> np.ndarray:
        """Take the last click back (the probabilities and the mask return exactly to what they were); returns the
        mask. An undo that fails (out of memory while labelling the mask) leaves the session as it was, the click
        included: the mask is labelled before anything is taken back."""
        if not self.clicks:
            raise InputError("there is no click to undo")
        step = self._undo[-1]
        mask = np.unpackbits(step.mask, count=self.probability.size).reshape(self.probability.shape)
        shown = _Shown.of(label_pieces(mask))
        self._undo.pop()
        self.clicks.pop()
        self.probability[step.slices] = step.probability
        self._show(shown)
        return self.mask

    def _checked(self, z: float, y: float, x: float, positive: bool) -> Click:
        if not isinstance(positive, (bool, np.bool_)):
            raise InputError(f"a click's kind must be True (tumour) or False (not tumour), not {positive!r}")
        values = (z, y, x)
        if not all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in values):
            raise InputError(f"a click needs three numbers (z, y, x), not {_brief(values)}")
        shape = self.probability.shape
        outside = InputError(f"the click {_brief(values)} lies outside the scan (slices, rows, columns: {shape})")
        try:
            floats = [float(v) for v in values]
        except OverflowError:  # a whole number beyond any float: far outside any scan
            raise outside from None
        if not all(math.isfinite(v) for v in floats):
            raise InputError(f"a click's coordinates must be finite numbers, not {_brief(values)}")
        if not all(-0.5 <= v <= n - 0.5 for v, n in zip(floats, shape)):
            raise outside
        # A voxel reaches half a voxel either side of its index, both edges included, as napari (and the widget's
        # `_data_point`) place a click: a click on the far edge of the scan (or on the near edge of an axis the layer
        # shows reversed) was refused as outside it. An edge click is the edge voxel's: rounded, it was one past it.
        return Click(*(min(max(v, 0.0), n - 1.0) for v, n in zip(floats, shape)), bool(positive))

    def _predict(self, slices: np.ndarray, stop: Callable[[], bool] | None) -> np.ndarray:
        """The probabilities of `slices`, all of them, or `Stopped` where `stop` ended the batches early."""
        batches = self._scan.probabilities(slices, self.clicks, self.options, self._precision, stop)
        parts = [prob for _, prob in batches]
        if sum(map(len, parts)) < len(slices):
            raise Stopped
        return np.concatenate(parts)

    @staticmethod
    def _judged(probability: np.ndarray, clicks: list[Click], config: PostprocessConfig,
                earlier: np.ndarray | None) -> tuple[np.ndarray, int]:
        """Piece labels of `probability` after `clicks` (none: the automatic mask) under the clean-up `config`: its
        rules, except that a piece holding a positive click is always kept (the user said it is tumour), and (see
        the module docstring) what remains of each piece of `earlier` (the piece labels before the last click) is
        kept too, while a negative click keeps nothing `earlier` did not hold."""
        if not clicks:
            return kept_labels(probability, config)
        said_tumour = tuple((round(c.z), round(c.y), round(c.x)) for c in clicks if c.positive)
        within = None if clicks[-1].positive else earlier > 0
        return kept_labels(probability, config, keep_at=said_tumour, earlier=earlier, within=within)

    def _show(self, shown: _Shown) -> None:
        self.piece_labels, self.piece_count, self.mask = shown.piece_labels, shown.piece_count, shown.mask
        self._pieces: list[Piece] | None = None

    def _replayed(self, config: PostprocessConfig,
                  stop: Callable[[], bool] | None) -> tuple[list[_Undo], _Shown, np.ndarray]:
        """The history again under the clean-up `config`, made aside (the session is not touched): back from the
        newest click to the automatic probabilities (each step keeps what its slices held before), then forward,
        each click's network answer applied again and judged as the click was. A refused click's disc (`_honour`)
        is judged at the new threshold: kept as it was, a "tumour" click the network had followed at 0.5 held no
        tumour at 0.9, and one refused at 0.9 kept its forced disc at 0.5. Returns the undo steps of this history
        (so undo stays exact), the mask after the last click and the probabilities; `Stopped` where `stop` says to
        stop before one of its labellings."""
        probability = self.probability.copy()
        for step in reversed(self._undo):
            probability[step.slices] = step.probability
        check_stop(stop)
        shown, undo = _Shown.of(self._judged(probability, [], config, None)), []
        for k, (step, click) in enumerate(unless_stopped(zip(self._undo, self.clicks), stop), start=1):
            before = probability[step.slices].copy()
            undo.append(replace(step, probability=before, mask=np.packbits(shown.mask)))
            probability[step.slices] = step.answer.applied(before, click.positive)
            self._honour(probability, click, config)
            shown = _Shown.of(self._judged(probability, self.clicks[:k], config, shown.piece_labels))
        return undo, shown, probability

    @property
    def pieces(self) -> list[Piece]:
        """The pieces of the current mask, listed when first asked for after a change: the widget lists them in its
        layer's voxel order instead, and listing them twice per click cost the click time."""
        if self._pieces is None:
            self._pieces = describe_pieces(self.probability, self.piece_labels, self.piece_count, self.voxel_volume)
        return self._pieces


def _checked_probability(probability: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A caller's probabilities as a float32 copy of the scan's spatial `shape` (Z, H, W), or InputError; a one-slice
    scan's may be (H, W), the shape of a 2D image and of what `segment_volume` returns for it."""
    try:
        values = np.array(probability, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise InputError(f"the probabilities must be an array of numbers ({error})") from None
    if values.shape != tuple(shape) and not (shape[0] == 1 and values.shape == tuple(shape[1:])):
        raise InputError(f"the probabilities have shape {values.shape}, the scan {tuple(shape)}")
    if not (np.isfinite(values).all() and values.min(initial=0) >= 0 and values.max(initial=0) <= 1):
        raise InputError("the probabilities must be finite numbers from 0 to 1")
    return values.reshape(shape)


def _recompute_near(scan: ScanInput, old: np.ndarray, slices: np.ndarray, clicks: list[Click],
                    centre: tuple[float, float], window: int, options: SegmentOptions,
                    precision: Precision) -> _Answer:
    """The network's answer on `slices`, whose current probabilities are `old` (n, H, W): it runs on a `window`
    square of network pixels around `centre` (row, column in pixels), and answers in the square's trusted inner
    part."""
    height, width = old.shape[1:]
    size = scan.model.config.preprocess.image_size
    centre_in_model = to_model_point(*centre, height, width, size)
    start = [int(np.clip(round(c - window / 2), 0, size - window)) for c in centre_in_model]
    crop = tuple(slice(s, s + window) for s in start)
    inner = tuple(slice(s + (MARGIN if s > 0 else 0), s + window - (MARGIN if s + window < size else 0)) for s in start)
    with out_of_memory_as_advice(), torch.inference_mode():
        batch = scan.batch(slices, clicks)[(..., *crop)]
        prob = forward_probability(scan.model.network, batch, options.tta, precision, options.backend).float().cpu()
    canvas = to_model_size(torch.from_numpy(old)[:, None], size)
    trusted = torch.zeros((1, 1, size, size))
    canvas[(..., *inner)] = prob[(..., *(slice(i.start - c.start, i.stop - c.start) for i, c in zip(inner, crop)))]
    trusted[(..., *inner)] = 1.0
    new = restore_size(canvas, height, width)[:, 0].numpy()
    answered = restore_size(trusted, height, width)[0, 0].numpy() >= 0.999
    rows, cols = (np.flatnonzero(answered.any(axis=axis)) for axis in (1, 0))
    box = tuple(slice(int(i[0]), int(i[-1]) + 1) if len(i) else slice(0, 0) for i in (rows, cols))
    return _Answer(box, np.where(answered[box], new[(slice(None), *box)], np.float32(np.nan)))


def _brief(values: tuple[object, ...]) -> str:
    """A click's coordinates as given, for a one-line message: a number as it prints, a whole number too long to read
    (a script's 10**400; Python refuses to print one of 4300 digits or more) as its digit count, anything else by its
    repr, cut short."""
    def one(value: object) -> str:
        if isinstance(value, (int, np.integer)) and abs(int(value)).bit_length() > 64:
            size = abs(int(value))
            digits = int(size.bit_length() * math.log10(2)) + 1
            digits -= 10 ** (digits - 1) > size  # the estimate is at most one too many
            return f"{'-' if value < 0 else ''}<a whole number of {digits} digits>"
        text = str(value) if isinstance(value, (int, float, np.integer, np.floating)) else repr(value)
        return text if len(text) <= 40 else f"{text[:37]}..."
    return f"({', '.join(map(one, values))})"
