"""Click corrections in the viewer: a click on the scan says "tumour here", Shift+click (or a right click) "not
tumour"; the click-conditioned model re-segments the slices the click reaches, in a worker thread.

The clicks are shown as a Points layer of this plugin's (green positive, magenta negative) over the segmented image;
Undo takes the last one back. Clicks, undos and new clean-ups that arrive while one is computed wait in a queue, so
fast clicking or dragging the threshold slider never blocks the viewer. The engine's `CorrectionSession` holds the
clicks and probabilities; this module only maps viewer positions to the model's slice order and back. The worker
also puts the result back in the layer's voxel order and lists its pieces, so the viewer's thread only shows it
(docs/corrections.md measures the stall).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterator

import napari
import numpy as np
from napari.layers import Image

from ..engine.corrections import CorrectionSession
from ..engine.pieces import Piece, describe_pieces
from ..engine.postprocess import PostprocessConfig
from ..engine.predict import SegmentOptions
from . import notify
from .job import JobRunner
from .layers import owned_layer, put_owned_layer, shown_index, to_layer_order
from .workers import LayerResult, ModelCache

POSITIVE_COLOUR, NEGATIVE_COLOUR = "lime", "magenta"


@dataclass
class CorrectionTarget:
    """What the last segmentation ran on: the layer, its model-order input and probabilities, and the model."""

    source: Image
    image: np.ndarray
    rgb: bool
    probability: np.ndarray  # model (shown) order
    model: str
    device: str
    options: SegmentOptions
    spacing: tuple[float, ...] | None  # the layer's voxel size in mm (None: sizes in voxels)


def corrected_view(session: CorrectionSession, to_layer: Callable[[np.ndarray], np.ndarray], shown: tuple[int, ...],
                   spacing: tuple[float, ...] | None) -> LayerResult:
    """The session's probabilities and mask in the layer's voxel order (`shown`: the model-order shape the layer
    was segmented in), with the pieces listed from the session's own labelling (labelling again costs more). The
    probabilities are a copy: the next click changes the session's own in place, from a worker thread."""
    probability = to_layer(session.probability.reshape(shown)).copy()
    labels = to_layer(session.piece_labels.reshape(shown))
    pieces = describe_pieces(probability, labels, session.piece_count, spacing)
    return LayerResult(probability, (labels > 0).astype(np.uint8), (labels, pieces))


def session_job(cache: ModelCache, target: CorrectionTarget, *, stop: Callable[[], bool]) -> Iterator[CorrectionSession]:
    """Build the correction session from the segmentation already on screen (no model run)."""
    model = cache.get(target.model, target.device)
    yield CorrectionSession(model, target.image, target.options, rgb=target.rgb, probability=target.probability)


def click_job(session: CorrectionSession, point: tuple[float, float, float] | None, positive: bool,
              view: Callable[[CorrectionSession], LayerResult], *, stop: Callable[[], bool]) -> Iterator[LayerResult]:
    """One click (or, with `point` None, one undo) on the session; yields the result as `view` shows it."""
    if point is None:
        session.undo()
    else:
        session.click(*point, positive=positive)
    yield view(session)


def session_cleanup_job(session: CorrectionSession, config: PostprocessConfig,
                        view: Callable[[CorrectionSession], LayerResult],
                        *, stop: Callable[[], bool]) -> Iterator[LayerResult]:
    """Another clean-up for the session, its clicks replayed (one labelling of the scan per click: seconds on a 1 mm
    scan, so never on the viewer's thread); yields the result as `view` shows it."""
    session.set_postprocess(config)
    yield view(session)


CLEANUP = (None, False, "cleanup")  # the queue's item for "apply the latest clean-up"
NO_SEGMENTATION = "segment an image first, then correct it with clicks"


class ClickCorrections:
    """Correction mode for one viewer: on while `enabled`, reading clicks over the target's layer."""

    def __init__(self, viewer: napari.Viewer, widget, cache: ModelCache,
                 on_change: Callable[[LayerResult, tuple[tuple[int, ...], ...], str], None]) -> None:
        self.viewer, self._cache, self._on_change = viewer, cache, on_change
        self.job = JobRunner(widget, lambda running: None)
        self.target: CorrectionTarget | None = None
        self.session: CorrectionSession | None = None
        self.postprocess: PostprocessConfig | None = None  # the widget's clean-up, applied before the next click
        self._queue: list[tuple[tuple[float, float, float] | None, bool, tuple | str | None]] = []
        self._computing: tuple | None = None  # the layer data point of the "tumour" click being computed
        self._step: str | None = None  # the click job last started: "click", "undo" or None (a clean-up)
        self.enabled = False
        viewer.mouse_drag_callbacks.append(self._on_mouse)
        widget.native.destroyed.connect(lambda *_: self._detach())

    def _detach(self) -> None:
        if self._on_mouse in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._on_mouse)

    def rethreshold(self, config: PostprocessConfig) -> bool:
        """Use the widget's new clean-up. True when a session owns the mask: it applies the clean-up after what is
        queued, and the result comes through `on_change`; False when there is no session yet (the widget cleans up
        its own mask, and a session being built applies the clean-up once ready)."""
        self.postprocess = config
        if self.session is None:
            return False
        if not self._queue or self._queue[-1] is not CLEANUP:  # a queued one applies the latest clean-up anyway
            self._queue.append(CLEANUP)
        self._next()
        return True

    def reset(self, target: CorrectionTarget | None) -> None:
        """A new segmentation (or none): earlier clicks belonged to the old one."""
        self.target, self.session, self._queue, self._step = target, None, [], None
        self.postprocess = None  # the new segmentation's own clean-up, until the widget says otherwise
        if target is not None and (layer := owned_layer(self.viewer, target.source, "clicks")) is not None:
            layer.data = np.zeros((0, target.source.ndim))
        self._prepare()

    def set_enabled(self, enabled: bool) -> None:
        """Correction mode on or off."""
        self.enabled = enabled
        self._prepare()

    def _prepare(self) -> None:
        """In correction mode, build the session in the background now, so the first click costs no more than the
        others (on an 88-slice scan building it took half a second)."""
        if self.enabled:
            self._start_session()

    def _start_session(self) -> None:
        if self.target is not None and self.session is None and not self.job.running:
            self.job.start(session_job, self._cache, self.target, on_item=partial(self._session_ready, self.target),
                           on_done=partial(self._session_done, self.target))

    def add_click(self, data_point: np.ndarray, positive: bool) -> None:
        """A click at `data_point` (the source layer's data coordinates)."""
        if not self._has_target():
            notify.show_warning(NO_SEGMENTATION)
            return
        shown = shown_index(self.target.source, data_point)
        self._queue.append((shown if len(shown) == 3 else (0.0, *shown), positive, tuple(data_point)))
        self._next()

    def _has_target(self) -> bool:
        """Whether a segmented image is there to correct: none was segmented yet, or the user deleted it (a click
        then ran on the gone image's session, its point was added, and nothing showed the result)."""
        return self.target is not None and self.target.source in self.viewer.layers

    def undo(self) -> None:
        """Take the last click back, once what is queued before it has run. A click still waiting (for the session
        to be built, or its turn) or being computed counts: the session holds a click only once its job has run, and
        an Undo pressed right after a click was refused ("there is no click to undo") while the click then landed."""
        waiting = any(item is not CLEANUP and item[0] is not None for item in self._queue) or (
            self.job.running and self._step == "click")
        if not waiting and (self.session is None or not self.session.clicks):
            notify.show_info("there is no click to undo")
            return
        self._queue.append((None, False, None))
        self._next()

    def _next(self) -> None:
        if self.job.running:
            return
        if not self._queue:
            self._prepare()  # a new segmentation may have come while the last job ran
            return
        if self.session is None:
            self._start_session()
            return
        item = self._queue.pop(0)
        if item is CLEANUP:
            self._computing, self._step = None, None
            self.job.start(session_cleanup_job, self.session, self.postprocess, self._view(),
                           on_item=partial(self._mask_ready, self.session), on_done=self._next)
            return
        point, positive, data_point = item
        if point is None and not self.session.clicks:
            self._next()  # an undo pressed twice for one click, queued before the first ran: nothing left to undo
            return
        self._computing = data_point if positive else None
        self._step = "undo" if point is None else "click"
        self._show_click(data_point, positive)  # first: a job run to its end inside `start` (tests) may take it off
        self.job.start(click_job, self.session, point, positive, self._view(),
                       on_item=partial(self._mask_ready, self.session),
                       on_done=partial(self._click_done, self.session, point, len(self.session.clicks)))

    def _click_done(self, session: CorrectionSession, point: tuple | None, clicks_before: int) -> None:
        """Go on with the queue; a click that failed (its error was notified) left the session without it, so its
        point goes too, or the next Undo would take off this point and the click before it."""
        if point is not None and session is self.session and len(session.clicks) == clicks_before:
            self._show_click(None, False)
        self._next()

    def _session_ready(self, target: CorrectionTarget, session: CorrectionSession) -> None:
        if target is not self.target:
            return  # a new segmentation came while this session was built for the old one
        self.session = session
        if self.postprocess is not None and session.postprocess != self.postprocess:
            self._queue.insert(0, CLEANUP)  # the clean-up changed while the session was built: before any click

    def _session_done(self, target: CorrectionTarget) -> None:
        """Go on with the queued clicks; if no session could be made (its error was notified), drop them, or every
        queued click would retry and repeat the same error. A session built for a replaced segmentation was dropped:
        go on with the new one."""
        if target is not self.target:
            self._next()
            return
        if self.session is None:
            self._queue.clear()
            return
        self._next()

    def _view(self) -> Callable[[CorrectionSession], LayerResult]:
        """`corrected_view` for the target's layer, its orientation read now, on the viewer's thread."""
        target = self.target
        return partial(corrected_view, to_layer=to_layer_order(target.source), shown=target.probability.shape,
                       spacing=target.spacing)

    def _mask_ready(self, session: CorrectionSession, result: LayerResult) -> None:
        """Show the corrected mask of `session`; a "tumour" click also brings back a piece the user removed where it
        fell (said for this click only: a piece removed after it stays removed). A result of a session a new
        segmentation replaced while the click was computed is dropped: it would overwrite the new mask."""
        if session is not self.session:
            return
        said_tumour = ()
        if self._computing is not None:
            top = np.asarray(self.target.source.data.shape[: self.target.source.ndim]) - 1
            said_tumour = (tuple(int(v) for v in np.clip(np.round(self._computing), 0, top)),)
        self._on_change(result, said_tumour, self._step)

    def _show_click(self, data_point: tuple | None, positive: bool) -> None:
        """Add the click to the Points layer, or (`data_point` None: an undo) take the last one off it."""
        source = self.target.source
        layer = owned_layer(self.viewer, source, "clicks")
        if data_point is None:
            if layer is not None and len(layer.data):
                layer.data = layer.data[:-1]  # face colours follow the kept points
            return
        colour = POSITIVE_COLOUR if positive else NEGATIVE_COLOUR
        if layer is None:
            layer = put_owned_layer(self.viewer, source, "clicks", np.asarray([data_point]), face_color=colour,
                                    size=6, border_width=0)
        else:
            # napari's `add` selects the point it adds, and a new current colour recolours the selected points: the
            # last click took this one's colour, and after an undo the selection named a point no longer there
            layer.selected_data = set()
            layer.current_face_color = colour
            layer.add(np.asarray(data_point))
            layer.selected_data = set()

    def _on_mouse(self, viewer: napari.Viewer, event) -> Iterator[None]:
        """A press and release without a drag over the segmented image is a click; a drag stays a pan.

        Only in napari's pan/zoom mode and the 2D view: a dab of the brush, the eraser or the fill bucket on the
        tumour layer (or a point added to a Points layer) is that tool's, and was taken as a "tumour" click as well,
        so erasing a spot re-segmented tumour around it. In the 3D view a click has no depth: it landed on the slice
        the slider shows, wherever the user had turned the volume."""
        if not self.enabled or event.type != "mouse_press" or event.button not in (1, 2):
            return
        active = viewer.layers.selection.active
        if active is not None and str(getattr(active, "mode", "pan_zoom")) != "pan_zoom":
            return  # a layer tool is in use: the press is the tool's
        yield
        if event.type == "mouse_move":
            return  # a drag: leave it to napari
        if viewer.dims.ndisplay != 2:
            notify.show_info("clicks correct the mask in the 2D view: switch the viewer to 2D to click")
            return
        if not self._has_target():  # nothing segmented yet, or the segmented image deleted: say why nothing happens
            notify.show_warning(NO_SEGMENTATION)
            return
        source = self.target.source
        point = np.asarray(source.world_to_data(event.position), dtype=float)
        if np.any(point < -0.5) or np.any(point > np.asarray(source.data.shape[: len(point)]) - 0.5):
            return
        self.add_click(point, positive=event.button == 1 and "Shift" not in event.modifiers)
