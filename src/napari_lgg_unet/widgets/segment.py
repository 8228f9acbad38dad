"""The "Segment tumour" dock widget: one click from an image layer (or one layer per MRI sequence) to a tumour Labels
layer, with Dice/IoU readouts.

The model runs in a worker thread; the widget only validates input, starts the worker and shows its results.
Thresholds and post-processing are re-applied to the kept probabilities, so changing them never re-runs the model.
"""

from __future__ import annotations

import weakref
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from typing import Callable

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox, Container, FileEdit, FloatSlider, Label, ProgressBar, PushButton, SpinBox,
)
from napari.layers import Image, Labels

from ..engine.device import pick_device
from ..engine.errors import InputError, LggUnetError, ModelError
from ..engine.model import ModelConfig
from ..engine.postprocess import PostprocessConfig
from ..engine.predict import Segmentation, SegmentOptions, SegmentProgress
from ..engine.pieces import Piece
from ..engine.review import PieceReview, SaidTumour
from ..engine.sequences import FLAIR
from . import notify
from .common import Choice, ModelPicker, device_widgets, optional_path, precision_widget
from .corrections import ClickCorrections, CorrectionTarget, QueuedClick
from .job import JobRunner
from .layer_watch import LayerWatch
from .layers import (
    LayerPicker, as_shown, binary_mask, current_slice, edited, hand_over, image_choices, labels_choices, mark_edited,
    owned_layer, place_on, placement_fix, put_owned_layer, segmentation_shown, set_owned_data, shown_elsewhere,
    to_layer_order, tumour_mask, view_orientation, voxel_volume,
)
from .painting import Painting
from .readouts import Readouts, readouts_text, volume_readouts, with_slice, write_readouts_csv
from .review import ReviewList
from .sequences import (
    TruthFollowsCase, deferred_input, flair_layer, pick_named_sequences, says_sequence, sequence_pickers,
)
from .tooltips import explain
from .undock import choices_follow_layers, connect_while_docked, when_docked, when_undocked
from .workers import LayerResult, ModelCache, cleanup_job, listing_job, segment_job

_ALIVE: weakref.WeakSet[SegmentWidget] = weakref.WeakSet()  # the session's Segment widgets, for `_take_over`


class CleanupControls(Container):
    """Threshold and clean-up: one control per PostprocessConfig field, read and shown field by field."""

    def __init__(self) -> None:
        defaults = PostprocessConfig()  # replaced by the chosen model's own settings when it has them
        self.threshold = FloatSlider(name="threshold", label="Threshold", min=0.01, max=0.99, step=0.01,
                                     value=defaults.threshold)
        self.min_size = SpinBox(name="min_size", label="Drop specks under (voxels)", min=0, max=10**9,
                                value=defaults.min_size)
        self.keep_largest = CheckBox(name="keep_largest", text="Keep only the largest tumour",
                                     value=defaults.keep_largest)
        self.min_confidence = FloatSlider(name="min_confidence", label="Drop pieces less sure than", min=0.0, max=1.0,
                                          step=0.01, value=defaults.min_confidence)
        self.controls = [self.threshold, self.min_size, self.keep_largest, self.min_confidence]
        self._slots: list[Callable[[], None]] = []
        super().__init__(labels=True, widgets=self.controls)
        self.margins = (0, 0, 0, 0)

    def config(self) -> PostprocessConfig:
        values = {option.name: option.value for option in self.controls}
        return PostprocessConfig(**{**values, "threshold": round(values["threshold"], 4)})

    def show(self, settings: PostprocessConfig) -> None:
        """Show `settings` (a model's own), announcing one change when they differ from those shown. A change per
        control started a clean-up of a mix of the old and new settings, and a refused change (the widget's
        `_keep_orphan_setting`) was said once per control."""
        before = self.config()
        self.restore(settings)
        if self.config() != before:
            for slot in self._slots:
                slot()

    def restore(self, settings: PostprocessConfig) -> None:
        """Show `settings` without announcing a change: they are what the mask on screen was made with, so there is
        nothing to recompute."""
        with ExitStack() as quiet:
            for option in self.controls:
                quiet.enter_context(option.changed.blocked())
            for option in self.controls:
                option.value = getattr(settings, option.name)

    def on_change(self, slot: Callable[[], None]) -> None:
        """Call `slot` when the user changes a control, or `show` shows other settings."""
        self._slots.append(slot)
        for option in self.controls:
            option.changed.connect(slot)


class SegmentWidget(Container):
    """Pick an image (or a FLAIR plus T1 / T1c layers) and a model, press Segment; read Dice/IoU against an optional
    ground-truth Labels layer.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = viewer
        _ALIVE.add(self)
        self._cache = ModelCache()
        self.job = JobRunner(self, self._set_running)
        self.cleanup_job = JobRunner(self, lambda running: None)  # a new threshold or clean-up, off the viewer's thread
        self.listing_job = JobRunner(self, lambda running: None)  # the pieces of the painted mask, likewise
        self._probability: np.ndarray | None = None
        self._source, self._pending = None, None  # the image segmented (`Image | None`), the one being segmented
        self._pending_data: object = None  # the pending layer's data when segmenting started
        self._segmented: Segmentation | None = None  # the last result in the model's slice order
        self._loaded_choice: Choice | None = None  # the model picked for the last segmentation shown
        self._pending_choice: Choice | None = None  # the model picked when segmenting started
        self._review: PieceReview | None = None
        self._mask_postprocess: PostprocessConfig | None = None  # the clean-up the mask on screen was made with
        self._shown: np.ndarray | None = None  # the tumour layer as last set, to tell the user's painting from it
        self._unpainted: np.ndarray | None = None  # the last click's or threshold's mask, the painting not over it
        self._painting = self._listed_with = None  # the user's `Painting` since Segment; the one in the review's mask
        self.readouts: Readouts | None = None
        self._scored: _Scored | None = None  # what the volume readouts were computed from, for the slice readouts
        self.extend([*self._input_controls(), *self._cleanup_controls(), *self._correction_controls(),
                     *self._readout_controls()])
        explain(self)
        self.model_picker.check()
        self.image.changed.connect(self._pick_sequences)
        self._take_flair(flair_layer(viewer))
        connect_while_docked(self.native, [
            *choices_follow_layers(viewer, self),
            (viewer.dims.events.current_step, self._slice_changed),
            (viewer.dims.events.order, self._view_changed),
            (viewer.dims.events.ndisplay, self._view_changed),
            (viewer.layers.events.inserted, lambda event: self._layer_added(event.value)),
            (viewer.layers.events.removed, self._forget_gone_mask),
            *self.model_picker.connections(),
        ])
        when_docked(self.native, self._catch_up)
        self._readout_watch = LayerWatch(self.native, self.update_readouts)
        self._paint_watch = LayerWatch(self.native, self._list_painting)  # once a stroke is over
        self._update_readout_text()

    def _input_controls(self) -> list:
        """What to segment, with which model, where: what `segment` reads."""
        self.image = LayerPicker(name="image", label="Image or FLAIR", choices=lambda _: image_choices(self.viewer))
        self.pre_contrast, self.post_contrast = sequence_pickers(self.viewer)
        self.model_picker = ModelPicker("Model", on_checked=self._adopt_model_settings)
        self.model, self.model_folder = self.model_picker.combo, self.model_picker.folder
        self.device, self.device_note = device_widgets()
        self.precision = precision_widget()
        self.tta = CheckBox(name="tta", text="Test-time augmentation (mirror)", value=False)
        return [self.image, self.pre_contrast, self.post_contrast, self.model, self.model_folder, self.device,
                self.device_note, self.precision, self.tta]

    def _cleanup_controls(self) -> list:
        """Clean-up, the optional probability layer, Segment / Cancel and their progress."""
        self.cleanup = CleanupControls()
        self.show_probability = CheckBox(name="show_probability", text="Also show the probability map", value=False)
        self.segment_button = PushButton(name="segment_button", text="Segment")
        self.cancel_button = PushButton(name="cancel_button", text="Cancel", enabled=False)
        self.progress = ProgressBar(name="progress", label="Slices", min=0, max=1, value=0)
        self.cleanup.on_change(self.rethreshold)
        self.show_probability.changed.connect(self._show_probability)
        self.segment_button.clicked.connect(self.segment)
        self.cancel_button.clicked.connect(self.job.stop)
        return [self.cleanup, self.show_probability, self.segment_button, self.cancel_button, self.progress]

    def _correction_controls(self) -> list:
        """Correction mode: clicks on the scan re-segment around them (widgets/corrections.py); Undo takes one back."""
        self.correct = CheckBox(name="correct", text="Correct with clicks (click: tumour, Shift+click: not)",
                                value=False)
        self.undo_click = PushButton(name="undo_click", text="Undo click")
        self.corrections = ClickCorrections(self.viewer, self, self._cache, self._corrected, self._restore_cleanup,
                                            lambda: self._review.removals, self._painting_so_far)
        self.correct.changed.connect(lambda on: self.corrections.set_enabled(bool(on)))
        self.undo_click.clicked.connect(self.corrections.undo)
        when_undocked(self.native, self._undocked)
        return [self.correct, self.undo_click]

    def _undocked(self) -> None:
        """The dock was closed: correction mode ends (`_end_corrections`), and so does a new setting being applied,
        so the controls go back to the mask's (`_controls_to_mask`)."""
        self._end_corrections()
        self._controls_to_mask()

    def _end_corrections(self) -> None:
        """Correction mode ends, and the viewer's clicks no longer reach the widget: after the dock was closed they
        went on changing the tumour layer, with no Undo button left to take them back; so did the clicks still
        queued."""
        self.correct.value = False
        self.corrections.end()

    def _controls_to_mask(self) -> None:
        """The dock was closed while a new threshold or clean-up was applied: the controls go back to the setting the
        mask on screen was made with, without recomputing. A replay of the session's clicks stopped there showed
        nothing, a plain clean-up showed the setting it had started with, and a newer one waiting never ran, so the
        controls showed a setting the mask was not made with, docked again or not."""
        if self._has_result() and self._mask_postprocess is not None:
            self.cleanup.restore(self._mask_postprocess)

    def _take_over(self, source: Image) -> None:
        """Another Segment widget of this viewer (one made by a script beside the docked one, or a closed dock's) that
        segmented `source` lets go of it: the layers made for an image are found by that image, so both wrote the one
        tumour layer. The other took this widget's mask for the user's painting, kept it through its own clean-up and
        marked the layer edited, and in correction mode a click corrected it through both sessions."""
        for other in list(_ALIVE):
            if other is not self and _viewer_of(other) is _viewer_of(self) and other._source is source:
                other._let_go()

    def _let_go(self) -> None:
        """Forget the segmentation on screen, which another Segment widget shows now (`_take_over`): correction mode
        ends, what is still computed for it is dropped, and the review list and the readouts are cleared. Said only
        by a docked widget: a closed dock's (alive until the garbage collector takes it) told the user of "another
        Segment widget" when they segmented the image again in the one the Plugins menu made after it."""
        name = self._source.name
        self._end_corrections()
        self._source = self._probability = self._review = self._mask_postprocess = self._shown = self._painting = None
        self._unpainted = None
        self._forget_gone_mask()
        if self.native.parent() is not None:
            notify.show_info(f"'{name}' was segmented again in another Segment widget, which shows and corrects it "
                             "now; this one lets go of it")

    def _readout_controls(self) -> list:
        """The optional ground truth, the readouts and saving them."""
        self.truth = LayerPicker(name="truth", label="Ground truth", nullable=True,
                                 choices=lambda _: labels_choices(self.viewer))
        self.readout = Label(name="readout", label="Readouts", value="")
        self.csv_path = FileEdit(name="csv_path", label="Readouts CSV", mode="w", filter="*.csv")
        self.save_button = PushButton(name="save_button", text="Save readouts CSV")
        self.review_list = ReviewList(self.go_to_piece, self.keep_piece)
        self.truth.changed.connect(self._truth_changed)
        self._truth_follows = TruthFollowsCase(self.viewer, self.image, self.truth)
        self.image.changed.connect(self._truth_follows.image_changed)
        self.save_button.clicked.connect(self.save_readouts)
        return [self.truth, self.readout, self.csv_path, self.save_button, *self.review_list.widgets]

    @property
    def running(self) -> bool:
        return self.job.running

    def segment(self) -> None:
        """Check the input here (cheap), then load the model and segment in a worker; Cancel stops it."""
        if self.running:
            notify.show_warning("segmentation is already running: wait for it or press Cancel")
            return
        layer = self.image.value
        try:
            image, rgb = deferred_input(layer, self.pre_contrast.value, self.post_contrast.value)
            source = self.model_picker.chosen()
            device = str(pick_device(self.device.value))
        except LggUnetError as error:
            notify.show_error(str(error))
            return
        self._pending, self._pending_data, self._pending_choice = layer, layer.data, self.model_picker.picked()
        self.progress.value = 0
        options = SegmentOptions(tta=self.tta.value, postprocess=self.cleanup.config(), precision=self.precision.value)
        voxel = voxel_volume(layer)
        volume = None if voxel is None else voxel[0]
        orientation = view_orientation(layer)
        self._pending_input = (image, rgb, source, device, options, volume, orientation)
        self.corrections.stop_cleanup()  # before the model starts: the two shared the CPU
        self.job.start(segment_job, self._cache, source, device, image, rgb, options,
                       to_layer_order(layer, orientation), volume,
                       on_item=self._on_item, on_done=self._segment_done, on_error=self._segment_failed)

    def _segment_done(self) -> None:
        """A segmentation ended, with a result or not (cancelled, failed, the dock closed): the mask on screen gets the
        controls' setting if it does not have it yet. With a result, the controls moved while it was segmented with
        the setting of that moment; without one, while it ran the controls were its setting, which the mask keeps
        now (a replay that Segment stopped showed nothing: `ClickCorrections.stop_cleanup`), or a mask left of a
        deleted image keeps its own (`rethreshold`, `_keep_orphan_setting`). A closed dock's controls are the mask's
        already (`_undocked`)."""
        if self.cleanup.config() != self._mask_postprocess:
            self.rethreshold()

    def _set_running(self, running: bool) -> None:
        self.segment_button.enabled = not running
        self.cancel_button.enabled = running

    def _on_item(self, item: SegmentProgress | LayerResult) -> None:
        if isinstance(item, LayerResult):
            self._show_segmentation(item)
            return
        self.progress.max = max(item.total, 1)
        self.progress.value = item.done
        if item.runs_on:
            self.device_note.value = f"runs on {item.runs_on}"
        if item.result is not None:
            self._segmented = item.result  # in the model's slice order, for the correction session

    def _show_segmentation(self, result: LayerResult) -> None:
        source = self._pending
        if source not in self.viewer.layers:
            notify.show_warning(f"'{source.name}' was removed while it was being segmented; the result is dropped")
            return
        if source.data is not self._pending_data:  # the mask would belong to the old image (maybe another shape)
            notify.show_warning(f"the data of '{source.name}' was replaced while it was being segmented; the result "
                                "is dropped: segment it again")
            return
        self._source, self._probability, self._loaded_choice = source, result.probability, self._pending_choice
        image, rgb, model, device, options, volume, orientation = self._pending_input
        self._review = PieceReview(self._probability, volume)
        self._take_over(source)
        self._keep_edited_tumour(source)
        self._shown = self._painting = None  # a new segmentation starts afresh
        self._show_mask(result)
        self.corrections.reset(CorrectionTarget(source, self._pending_data, image(), rgb, self._segmented.probability,
                                                model, device, options, volume, orientation))
        self._show_probability()
        self._place_on_source(source)
        self.update_readouts()

    def _keep_edited_tumour(self, source: Image) -> None:
        """Before a new segmentation of `source` replaces its tumour layer: a layer the user edited or renamed
        becomes theirs (renamed '... (edited)' unless they named it), and so does one picked as the ground truth
        (renamed '... (kept)'): it is the reference the new segmentation is to be compared with, which replacing it
        lost, leaving the readouts with no ground truth to score. The new segmentation gets a layer of its own. The
        clicks that shaped an edited layer are kept with it (`ClickCorrections.keep_clicks`); a layer with clicks is
        an edited one (`_mark_user_changes`)."""
        layer = owned_layer(self.viewer, source, "tumour")
        if layer is not None and edited(layer):
            clicks = self.corrections.keep_clicks(source, "edited")
            also = "" if clicks is None else f" (the clicks that made them in '{clicks}')"
            notify.show_info(f"'{hand_over(layer)}' keeps your changes{also} and is yours now; the new segmentation "
                             "is in a new layer")
        elif layer is not None and layer is self.truth.value:
            notify.show_info(f"'{hand_over(layer, 'kept')}', the ground truth picked, is kept as it was and is yours "
                             "now; the new segmentation is in a new layer and is scored against it")

    def _place_on_source(self, source: Image) -> None:
        """The tumour, probability and clicks layers kept for the new segmentation of `source` lie on it as it is
        placed now: updated in place, they kept the place they were made at, so after the image was given a voxel size
        (or either was moved) they lay apart from it, and every click was refused, its advice to segment again in vain
        (a clicks layer left of clicks undone drew the next click where the image had lain). Placed once they hold the
        new data: new data of another dimensionality (the image's replaced) changes their number of axes."""
        for role in ("tumour", "probability", "clicks"):
            if (layer := owned_layer(self.viewer, source, role)) is not None:
                place_on(layer, source)

    def _corrected(self, result: LayerResult, click: QueuedClick | None = None, step: str | None = None) -> None:
        """A click (`click`, the one just computed) or undo (`step`), or a new clean-up, changed the probabilities
        and the mask: show both and the pieces the worker listed (a "tumour" click brings back a piece the user
        removed before it where it fell, removed again when that click is undone; one removed after it, even while
        it was computed, stays removed)."""
        if not self._has_result():
            return  # the segmented image was deleted while the click or clean-up ran
        self._probability = self._review.probability = result.probability
        shape = self._source.data.shape[: self._source.ndim]
        self._show_mask(result, None if click is None else click.said(shape), step)
        if step is not None and (layer := self.prediction_layer()) is not None:
            self._mark_user_changes(layer)  # a click, or an undo that may have taken the last one back
        if click is not None:
            self._say_if_painted(click.voxel(shape), click.positive)
        self._update_probability()
        self.update_readouts()

    def _adopt_model_settings(self, config: ModelConfig) -> None:
        """Show the checked model's own threshold and clean-up (chosen on its validation patients). Settings the
        controls cannot take fail the model's check (`ModelPicker`), which sends the picker back to the model picked
        before: the controls go back to its settings."""
        before = self.cleanup.config()
        try:
            self.cleanup.show(config.postprocess)
        except Exception:
            self.cleanup.show(before)
            raise

    def _segment_failed(self, error: BaseException) -> None:
        """Segment failed (the error is notified): when the model could not be loaded (weights that only the worker
        reads in full: of another network, NaN), the picker goes back to the model of the segmentation on
        screen, with its settings, or to no model. It kept the broken model, and every Segment failed on it again."""
        picker = self.model_picker
        if not isinstance(error, ModelError) or picker.picked() != self._pending_choice:
            return  # not the model's fault, or the user has already picked another
        picker.checked = None
        loaded = self._loaded_choice if self._loaded_choice != self._pending_choice else None
        picker.set_choice(loaded, check=True)
        notify.show_info(f"the model picked cannot be used; {picker.describe()}")

    def rethreshold(self) -> None:
        """Apply threshold and post-processing to the kept probabilities (no model run), in a worker (`cleanup_job`
        says why). Changes that come while one is computed are applied once it is done, the latest only. With no
        segmentation on screen they are the next Segment's, but one whose image was deleted refuses them (see
        `_keep_orphan_setting`)."""
        if not self._has_result():
            self._keep_orphan_setting()
            return
        if self.corrections.rethreshold(self.cleanup.config()):
            return  # the correction session applies it, clicks kept, and shows the result
        if not self.cleanup_job.running:
            self.cleanup_job.start(cleanup_job, self._probability, self.cleanup.config(), self._review.voxel_volume,
                                   self._painting_so_far(),
                                   on_item=self._cleaned, on_done=self._cleanup_done,
                                   on_error=partial(self._cleanup_failed, self._probability))

    def _cleaned(self, result: LayerResult) -> None:
        if result.probability is not self._probability or not self._has_result():
            return  # a new segmentation or a click replaced these probabilities, or the image is gone
        self._show_mask(result)
        self.update_readouts()

    def _cleanup_done(self) -> None:
        """Apply the controls' latest setting if the mask does not show it yet: they moved while the clean-up ran, or
        a new segmentation came meanwhile. Once the dock is closed, the controls show the mask's instead."""
        if self.cleanup_job.stop_asked:
            self._controls_to_mask()
        elif self._has_result() and self.cleanup.config() != self._mask_postprocess:
            self.rethreshold()

    def _cleanup_failed(self, probability: np.ndarray, _error: BaseException) -> None:
        """A clean-up of `probability` failed: see `_restore_cleanup`, unless a new segmentation or a click replaced
        these probabilities meanwhile (their mask was not the one that failed)."""
        if probability is self._probability:
            self._restore_cleanup()

    def _restore_cleanup(self) -> None:
        """A new threshold or clean-up failed (its error was notified): the mask keeps the clean-up it was made with,
        and the controls go back to it, without starting another recomputation. They stayed at the new setting, over
        a mask made with the old one. The correction session takes the mask's setting too: one built later applied
        the setting that failed, under controls that no longer showed it."""
        if self._mask_postprocess is None or not self._has_result():
            return
        self.cleanup.restore(self._mask_postprocess)
        self.corrections.postprocess = self._mask_postprocess
        notify.show_warning(f"the new threshold or clean-up was not applied: the controls are back at the mask's own "
                            f"(threshold {self._mask_postprocess.threshold:g})")

    def _orphan_mask(self) -> Labels | None:
        """The tumour layer of the last segmentation when the user deleted its image and kept this layer: that
        segmentation ended (see `layers.segmentation_shown`), so the layer stays as it was made."""
        return None if self._source is None or self._source in self.viewer.layers else self.prediction_layer()

    def _keep_orphan_setting(self) -> None:
        """The controls go back to the clean-up the tumour layer left of a deleted image was made with, if they no
        longer show it (moved since the image was deleted, or while a clean-up ran that was dropped with the image),
        without recomputing; the user is told why. They moved and changed nothing, over a mask made with another
        setting. It cannot be cleaned up again: a mask corrected with clicks needs their session, which ended with
        the image (it replays the clicks under the new setting; a plain clean-up of its probabilities would drop
        pieces the user's clicks kept). While a segmentation runs, the controls are its setting (see
        `_segment_done`); one that ends without a result (cancelled, failed) leaves them to this check."""
        layer = self._orphan_mask()
        if layer is None or self.running or self._mask_postprocess in (None, self.cleanup.config()):
            return
        self.cleanup.restore(self._mask_postprocess)
        notify.show_warning(f"'{self._source.name}' was deleted, so '{layer.name}' keeps the threshold and clean-up "
                            f"it was made with (threshold {self._mask_postprocess.threshold:g}), and so do the "
                            "controls: segment an image to use another setting")

    def _show_mask(self, result: LayerResult, said: SaidTumour | None = None, step: str | None = None) -> None:
        """The mask less the pieces the user removed (see engine/review.py; a piece a "tumour" click falls in is
        restored) into the tumour layer, with the pieces the worker listed. Voxels the user painted or erased on the
        layer since it was last set stay as the user left them: a click or a new threshold must not undo the user's
        own work. The worker listed the network's mask: with painting on it, its pieces are listed again
        (`_list_painting`)."""
        self._mask_postprocess, self._unpainted = result.postprocess, result.network_mask
        layer = owned_layer(self.viewer, self._source, "tumour")
        self._note_painting(None if layer is None else np.asarray(layer.data))
        kept = self._review.update(result.mask, said, result.listed, step)
        self._listed_with = result.painting
        self._show_kept(kept)
        self._list_painting()

    def _show_kept(self, kept: np.ndarray) -> None:
        """The review's mask `kept` into the tumour layer, the user's painting over it (`Painting.shown`), and its
        pieces into the review list."""
        shown = self._with_painting(kept)
        layer = self._tumour_to_set(shown.shape)
        if layer is not None and self._painting is not None:
            self._mark_user_changes(layer)
        put_owned_layer(self.viewer, self._source, "tumour", shown)
        self._settle(shown)
        self._show_rows()

    def _tumour_to_set(self, shape: tuple[int, ...]) -> Labels | None:
        """The tumour layer to set to a mask of `shape`; None when there is none. One the user gave data of another
        shape (a script, another plugin's crop or resampling) holds no painting the widget can lay over a mask, and
        setting it threw the user's data away without a word at the next click, undo, threshold or piece removed: it
        is the user's now (`hand_over`), and the mask goes to a new layer. A layer the user did not change is set to
        a new segmentation of another shape (its image was given data of another shape and segmented again)."""
        layer = self.prediction_layer()
        if layer is None or np.shape(layer.data) == tuple(shape) or not edited(layer):
            return layer
        notify.show_info(f"'{hand_over(layer)}' was given data of another shape, which stays as it is and is yours "
                         "now; the mask is in a new layer")
        return None

    def _settle(self, shown: np.ndarray) -> None:
        """The tumour layer was just set to `shown` (`layers.set_owned_data`, which empties napari's undo history):
        the user's painting from now on is where the layer differs from it, and the painting so far is beyond
        napari's undo (`Painting.settle`)."""
        self._shown = np.array(shown, copy=True)  # napari paints into the layer's own array
        if self._painting is not None:
            self._painting.settle()

    def _show_rows(self) -> None:
        """The review's pieces into the review list."""
        voxel = voxel_volume(self.prediction_layer())
        self.review_list.show_pieces(self._review.pieces, self._review.removed, "" if voxel is None else voxel[1],
                                     self._slider_axis())

    def _with_painting(self, kept: np.ndarray) -> np.ndarray:
        """The tumour layer's data for the review's mask `kept`: the user's painting as it is now over it
        (`Painting.kept_now`, `Painting.shown`), not as it was when the mask was made or listed: a stroke undone since
        is never written back into the layer."""
        if self._painting is None:
            return kept
        full, removed = self._review.full, self._review.removed_places
        kept = self._painting.kept_now(kept, full, self._listed_with, self._unpainted, removed)
        return self._painting.shown(full, kept, removed)

    def _list_painting(self) -> None:
        """List the pieces of the mask as the user painted it, in a worker (0.2 s on a 1 mm scan, seconds on a noisy
        mask: never on the viewer's thread), once a stroke is over or undone (`_paint_watch`) or a new mask was shown
        over painting: a blob painted away from the tumour got no row, a piece erased whole kept its row, and an
        undone stroke kept the rows it had made (and a removal or restore in the list brought it back). Strokes made
        while it runs are listed when it is done. A removed piece painted on comes back at once
        (`PieceReview.restore_painted`)."""
        layer = self.prediction_layer()
        if layer is None or not self._has_result() or self.listing_job.running:
            return
        self._note_painting(np.asarray(layer.data))
        if self._painting is None:
            return
        if self._review.restore_painted(self._painting.take_fresh()):
            self._show_kept(self._review.mask)
        base = self._review.full  # with the painting the pieces were last listed with: an undone stroke too
        if np.array_equal(painted := self._painting.over(self._unpainted), base):
            return
        self.listing_job.start(listing_job, self._probability, painted, self._review.voxel_volume,
                               on_item=partial(self._painting_listed, self._review, base, painted,
                                               self._painting.frozen()),
                               on_done=self._listing_done)

    def _painting_listed(self, review: PieceReview, base: np.ndarray, painted: np.ndarray, painting: Painting,
                         listed: tuple[np.ndarray, list[Piece]]) -> None:
        """Show the pieces of `painted` (the review's mask `base` as the user painted it), unless a click, threshold
        or new segmentation replaced `base` meanwhile (its own listing follows). The layer is set again only when
        that changes it (a removed piece painted over again): the readouts follow it then (`_readout_watch`), and a
        stroke stays napari's to undo otherwise. Strokes made or undone meanwhile wait for the next listing
        (`_listing_done`): shown with these rows, a stroke undone meanwhile came back on the layer until it."""
        if review is self._review and review.full is base and self._has_result():
            current = np.asarray(self.prediction_layer().data)
            self._note_painting(current)
            if self._painting is not None and not np.array_equal(self._painting.over(self._unpainted), painted):
                return  # painted or undone meanwhile
            kept = review.update(painted, listed=listed)
            self._listed_with = painting
            if np.array_equal(self._with_painting(kept), current):
                self._show_rows()
            else:
                self._show_kept(kept)

    def _listing_done(self) -> None:
        if not self.listing_job.stop_asked:
            self._list_painting()  # strokes made while it ran

    def _say_if_painted(self, voxel: tuple[int, ...], positive: bool) -> None:
        """Say so when a click fell on a voxel the user erased (a "tumour" click) or painted (a "not tumour" click):
        painting wins over clicks, and such a click changed nothing where the user clicked, without a word."""
        layer = self.prediction_layer()
        painted = self._painting is not None and self._painting.voxels[voxel]
        if layer is None or not painted or (layer.data[voxel] > 0) == positive:
            return
        done, tool = ("erased", "paint it with the brush") if positive else ("painted", "erase it with the eraser")
        notify.show_info(f"the click fell on a voxel you {done} on '{layer.name}', which stays as you left it, as all "
                         f"your painting does: {tool} to change it")

    def keep_piece(self, index: int, keep: bool) -> None:
        """Restore (`keep`) or remove piece `index` in the tumour layer this widget made; other voxels stay as they
        are. A piece the user painted goes like any other and comes back exactly as painted; voxels erased from a
        piece stay erased when it is ticked back (`Painting`). A stroke undone on a hidden layer (napari tells of no
        undo there) is not written back (`_with_painting`), and the pieces are listed again without it."""
        layer = self.prediction_layer()
        if layer is None or self._review is None:
            notify.show_warning("the tumour layer is gone: segment again to review its pieces")
            if self._review is not None:  # the box must not show a removal that was not made
                self.review_list.show_keep(index, index not in self._review.removed)
            return
        self._note_painting(np.asarray(layer.data))
        if self._painting is not None:  # painted into before the box was ticked: the box has the last word
            self._painting.drop_fresh(self._review.piece_voxels(index))
        shown = self._with_painting((self._review.restore if keep else self._review.remove)(index))
        self._tumour_to_set(shown.shape)
        layer = put_owned_layer(self.viewer, self._source, "tumour", shown)
        self._settle(shown)
        self._mark_user_changes(layer)
        self.update_readouts()
        self._paint_watch.again()  # listed again as after a stroke, out of the box's signal (`_list_painting`)

    def _note_painting(self, current: np.ndarray | None) -> None:
        """Bring `_painting` up to date with the tumour layer (`current`, None when it is gone): where it differs from
        what the widget last set are the user's brush, eraser or fill since then, less those undone (`Painting`)."""
        if current is None or self._shown is None or np.shape(current) != self._shown.shape:
            self._painting = None  # no layer of ours to have painted on (the user may have deleted it)
            return
        if self._painting is None:
            self._painting = Painting(current.shape, current.dtype)
        self._painting.note(current, self._shown)

    def _painting_so_far(self) -> Painting | None:
        """The user's painting up to now, frozen (`Painting.frozen`), for a click's or clean-up's worker to lay over
        its mask and list the pieces of (`workers.painted_over`): the review list then never shows the network's
        pieces where the tumour layer has the user's (it did for as long as a listing of their own took)."""
        layer = self.prediction_layer()
        self._note_painting(None if layer is None else np.asarray(layer.data))
        return None if self._painting is None else self._painting.frozen()

    def _mark_user_changes(self, layer: Labels) -> None:
        """Whether the tumour layer now holds the user's work, for the next Segment (`_keep_edited_tumour`): clicks,
        removed pieces or painting. Clicks all undone and pieces ticked back are no work left to keep."""
        session = self.corrections.session
        mark_edited(layer, bool(session is not None and session.clicks) or bool(self._review.removed)
                    or (self._painting is not None and bool(self._painting.voxels.any())))

    def go_to_piece(self, piece: Piece) -> None:
        """Move the viewer's slice to the piece's centre and centre the camera on it."""
        layer = self.prediction_layer()
        if layer is None:
            return
        world = np.asarray(layer.data_to_world(piece.centre[-layer.ndim :]), dtype=float)
        offset = self.viewer.dims.ndim - len(world)
        # one step, not one per axis: each step is a slice change that every listener (the readouts) answers
        self.viewer.dims.set_point(range(offset, self.viewer.dims.ndim), world)
        camera = self.viewer.scene.camera if hasattr(self.viewer, "scene") else self.viewer.camera  # moved in 0.9
        camera.center = tuple(world[axis - offset] for axis in self.viewer.dims.displayed if axis >= offset)

    def _layer_added(self, layer: object) -> None:
        """A layer was added: a FLAIR to segment (`_take_flair`), or the manual mask of its case (`TruthFollowsCase`,
        which our reader adds after the case's FLAIR)."""
        self._take_flair(layer)
        self._truth_follows.inserted(layer)

    def _take_flair(self, layer: object) -> None:
        """A layer named FLAIR (our reader opens a case's sequences with FLAIR last) becomes the image to segment."""
        if says_sequence(layer, FLAIR):
            self.image.value = layer
            self._pick_sequences()

    def _pick_sequences(self) -> None:
        pick_named_sequences(self.viewer, self.image, self.pre_contrast, self.post_contrast)

    def _show_probability(self) -> None:
        """Show the probability map of the segmentation, or hide it, as the box says.

        Unticking hides the map rather than removing it: napari runs a full garbage collection for every layer removed
        (for some Windows OpenGL drivers), which walks all of the session's objects, PyTorch's included, and held the
        viewer for 0.45-0.50 s (2 EPYC cores, benchmarks/correction_stall.py). A hidden map is kept current like a
        shown one (here, on a new segmentation, and in `_update_probability`), so its own eye in the layer list shows
        the current map too. Ticked once the segmentation has ended (its image or tumour layer deleted), the box is
        cleared with a word: it stayed ticked, showing nothing and saying nothing (while a new segmentation runs, it
        stays ticked for that one's map)."""
        has_result = self._has_result()
        if self.show_probability.value and self._probability is not None and not has_result and not self.running:
            notify.show_info("the last segmentation ended when its image or tumour layer was deleted, so it has no "
                             "probability map to show: segment an image to see one")
            self.show_probability.value = False  # runs this again, unticked
            return
        layer = None if self._source is None else owned_layer(self.viewer, self._source, "probability")
        if has_result and (self.show_probability.value or layer is not None):
            layer = put_owned_layer(
                self.viewer, self._source, "probability", self._probability,
                colormap="magma", contrast_limits=(0.0, 1.0), blending="additive", opacity=0.6,
            )
        if layer is not None:
            layer.visible = has_result and self.show_probability.value

    def _update_probability(self) -> None:
        """A click, an undo or a new clean-up changed the probabilities: update the map, shown or hidden. A map the
        user deleted stays deleted (a result still computed brought it back), and the box is cleared to say so."""
        if (layer := owned_layer(self.viewer, self._source, "probability")) is not None:
            set_owned_data(layer, self._probability)
        elif self.show_probability.value:
            self.show_probability.value = False

    def _has_result(self) -> bool:
        """Whether the last segmentation is still there to show and correct (see `layers.segmentation_shown`): once
        the user deleted its image or its tumour layer, results still computed for it are dropped."""
        return self._probability is not None and segmentation_shown(self.viewer, self._source)

    def _catch_up(self) -> None:
        """Docked again (by a script, after its dock was closed): while closed, the widget heard none of the viewer's
        events (`connect_while_docked`), so its review list and readouts still showed a tumour layer deleted
        meanwhile (its pieces, its size and Dice), or a slice left long ago. They are brought up to date."""
        self._forget_gone_mask()
        self.update_readouts()

    def _forget_gone_mask(self, *_: object) -> None:
        """A layer was deleted (or the segmentation let go): if it was the segmented image or its tumour layer, the
        correction session ends; with no tumour layer left, the review list and the readouts are cleared. They
        showed the deleted mask's pieces and Dice until the next Segment, figures of a mask that no longer existed.
        With the image deleted and its tumour layer kept, the controls show that layer's setting
        (`_keep_orphan_setting`)."""
        self.corrections.end_if_gone()
        if self.prediction_layer() is None:
            self.review_list.show_pieces([], set(), "")
            self.update_readouts()
        self._keep_orphan_setting()

    def prediction_layer(self) -> Labels | None:
        """The tumour layer of the last segmented image (including any corrections painted on it)."""
        return None if self._source is None else owned_layer(self.viewer, self._source, "tumour")

    def _truth_changed(self) -> None:
        """Say once, as it is picked, what the readouts make of the ground truth (`_truth_mask`)."""
        truth = self.truth.value
        try:
            if truth is not None and binary_mask(truth)[1]:
                notify.show_warning(f"'{truth.name}' has several label values: all values above 0 are counted as "
                                    "tumour")
        except InputError as refusal:
            notify.show_error(str(refusal))
        self.update_readouts()

    def update_readouts(self) -> None:
        """Recompute size and scores for the volume and the slice on screen: after the tumour layer or the ground
        truth was painted, given new data or moved (`LayerWatch`), or replaced. A slice change recomputes the slice
        scores only (`_slice_changed`)."""
        prediction = self.prediction_layer()
        truth_layer = self.truth.value
        self._readout_watch.settled()
        self._readout_watch.watch([prediction, truth_layer])
        self._paint_watch.watch([prediction])
        self._scored = None
        if prediction is None:
            self.readouts = None
            self._update_readout_text()
            return
        mask = tumour_mask(prediction)
        truth = truth_mask = None
        if truth_layer is not None and truth_layer is not prediction:
            truth_mask, truth, problem = _truth_mask(truth_layer, prediction)
            if problem:
                self.readouts = None
                self._update_readout_text(problem)
                return
        volume = volume_readouts(mask, truth, voxel_volume(prediction))
        self._scored = _Scored(prediction, truth_layer, _data_of(prediction, truth_layer), (mask, truth_mask), truth,
                               volume)
        self._show_slice_readouts()

    def _view_changed(self) -> None:
        """Another axis put on the slider, or the view switched between 2D and 3D: the slice scored and the slices
        the review list gives follow the slider's axis (the 3D view shows no slice: no slice is scored)."""
        self.review_list.show_axis(self._slider_axis())
        self._slice_changed()

    def _slider_axis(self) -> int:
        """The tumour layer's data axis on the viewer's slider; 0 (the scan's slices) in the 3D view or without one."""
        layer = self.prediction_layer()
        shown = None if layer is None else current_slice(self.viewer, layer)
        return 0 if shown is None else shown[0]

    def _slice_changed(self) -> None:
        """A slider step, another axis on the slider or the view switched between 2D and 3D: only the slice scores
        change. Recomputing the volume's on every step (its counts and scores over every voxel) made the slider lag
        on a large scan, three times over for a click on a review row (one step per axis). A change of the masks still
        pending (`LayerWatch`) recomputes everything when it fires. With nothing scored (no tumour layer, or a ground
        truth it cannot be scored against) nothing on screen follows the slice: every step checked the ground truth
        against the prediction again, over every voxel."""
        if self._scored is None:
            return
        if self._scored_current():
            self._show_slice_readouts()
        else:  # the layers scored are no longer the ones chosen, or hold other masks
            self.update_readouts()

    def _scored_current(self) -> bool:
        """Whether the volume readouts were computed from the chosen layers as they are now (`_Scored.describes`)."""
        scored = self._scored
        return scored is not None and scored.describes(self.prediction_layer(), self.truth.value)

    def _show_slice_readouts(self) -> None:
        scored = self._scored
        self.readouts = with_slice(scored.volume, scored.masks[0], scored.truth,
                                   current_slice(self.viewer, scored.prediction))
        self._update_readout_text()

    def _update_readout_text(self, problem: str = "") -> None:
        if problem:
            self.readout.value = problem
        elif self.readouts is None:
            self.readout.value = "Segment an image to see the tumour size and scores."
        elif (truth := self.truth.value) is not None and truth is self.prediction_layer():
            self.readout.value = readouts_text(self.readouts, (
                f"The ground truth picked, '{truth.name}', is the segmentation on screen: it scores nothing. Pick the "
                "manual mask, or press Segment to compare a new segmentation with this one (it is kept)."))
        else:
            self.readout.value = readouts_text(self.readouts)

    def save_readouts(self) -> None:
        path = optional_path(self.csv_path)
        if not self._scored_current():  # an undo on a hidden layer since they were computed: nothing told of it
            self.update_readouts()
        if self.readouts is None:  # no tumour layer, or a ground truth it cannot be scored against (said on screen)
            notify.show_error("nothing to save yet: segment an image first" if self.prediction_layer() is None
                              else f"nothing saved: {self.readout.value}")
            return
        if path is None:
            notify.show_error("choose where to save the readouts (the Readouts CSV field)")
            return
        truth = self.truth.value
        try:
            written = write_readouts_csv(path, self.readouts, self._source.name, "" if truth is None else truth.name)
        except LggUnetError as error:  # a folder, a read-only place, a full disk: said by the atomic writer
            notify.show_error(str(error))
            return
        notify.show_info(f"readouts saved to {written}")


@dataclass(frozen=True)
class _Scored:
    """The masks the volume readouts were computed from and those readouts, kept so that a slider step scores one
    slice of them: `masks` are the two layers' bool masks as stored (`tumour_mask`; the truth's None without a
    ground truth), `truth` the ground truth's on the prediction's grid (`_truth_on_grid`)."""

    prediction: Labels
    truth_layer: Labels | None
    data: tuple[object, object]  # the two layers' data objects when scored (`_data_of`)
    masks: tuple[np.ndarray, np.ndarray | None]
    truth: np.ndarray | None
    volume: Readouts

    def describes(self, prediction: Labels | None, truth_layer: Labels | None) -> bool:
        """Whether these are the layers scored, holding the masks they held then.

        New data (`layer.data = ...`) is scored by the layer watch after its delay: a slider step meanwhile showed a
        slice of the masks replaced (an IndexError for a mask with more slices). napari's undo / redo on a hidden
        layer changes its array in place and emits nothing (see layer_watch.CHANGES), so the Dice of the mask
        before the undo stayed on screen, was saved to CSV and was scored slice by slice until the layer was shown
        again; a hidden layer's mask is compared here (a few ms for a 1 mm scan, and only while one is hidden)."""
        return (prediction is self.prediction and truth_layer is self.truth_layer
                and all(now is then for now, then in zip(_data_of(prediction, truth_layer), self.data))
                and all(layer.visible or np.array_equal(tumour_mask(layer), mask)
                        for layer, mask in zip((prediction, truth_layer), self.masks) if mask is not None))


def _data_of(prediction: Labels, truth_layer: Labels | None) -> tuple[object, object]:
    return prediction.data, None if truth_layer is None else truth_layer.data


def _truth_mask(truth: Labels, prediction: Labels) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """The ground truth as a bool mask as stored (`layers.binary_mask`) and on the prediction's grid
    (`_truth_on_grid`), or what keeps it from being scored: values below 0 (they read as no tumour, and every score
    was that of an empty truth), another shape or another place."""
    try:
        mask = binary_mask(truth)[0]
    except InputError as refusal:
        return None, None, str(refusal)
    return mask, *_truth_on_grid(truth, mask, prediction)


def _truth_on_grid(truth: Labels, mask: np.ndarray, prediction: Labels) -> tuple[np.ndarray | None, str]:
    """The ground truth (its `mask`, `tumour_mask`) as a bool mask on the prediction's data grid, to be scored voxel
    by voxel, or what keeps it from being one: another shape as napari shows them, or the same shape shown elsewhere
    (moved, scaled, rotated), where voxel by voxel would score one place's tumour against another's. A truth stored
    in another axis order but shown on the prediction's voxels is taken, in the prediction's order."""
    shown = as_shown(truth, mask)
    expected = as_shown(prediction).shape
    if shown.shape != expected:
        return None, (f"'{truth.name}' has shape {shown.shape}, the prediction {expected}: pick the ground truth of "
                      "this image")
    apart = shown_elsewhere(truth, prediction)
    if apart is not None:
        return None, (f"'{truth.name}' has the prediction's shape but lies elsewhere in the viewer (its voxels up to "
                      f"{apart:.3g} world units, mm for scans, from the prediction's): pick the ground truth of this "
                      f"image; {placement_fix(truth, prediction)}")
    return to_layer_order(prediction)(shown), ""


def _viewer_of(widget: SegmentWidget) -> napari.viewer.Viewer:
    """The viewer `widget` works on. napari gives each widget it docks a proxy of the viewer (`PublicOnlyProxy`), one
    of its own, so two widgets of one viewer hold different objects: compared as they were, a docked widget and one
    made by a script never saw that they shared a viewer, and went on writing the one tumour layer."""
    return getattr(widget.viewer, "__wrapped__", widget.viewer)
