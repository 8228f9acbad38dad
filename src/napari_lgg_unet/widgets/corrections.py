"""Click corrections in the viewer: a click on the scan says "tumour here", Shift+click (or a right click) "not
tumour"; the click-conditioned model re-segments the slices the click reaches, in a worker thread.

The clicks are shown as a Points layer of this plugin's (green positive, magenta negative) over the segmented image,
drawn whole from the session's clicks (and the one being computed) after every change, and read-only (`_read_only`):
it cannot disagree with the clicks that shaped the mask. Undo takes the newest click back (see `undo`). Clicks,
undos and new clean-ups that arrive while one is computed wait in a queue, so fast clicking or dragging the
threshold slider never blocks the viewer. The engine's `CorrectionSession` holds the
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
from napari.layers import Image, Points

from ..engine.corrections import CorrectionSession
from ..engine.model_input import Click
from ..engine.pieces import Piece, describe_pieces
from ..engine.postprocess import PostprocessConfig
from ..engine.predict import SegmentOptions
from ..engine.review import SaidTumour
from ..engine.stopping import Stopped
from . import notify
from .job import JobRunner
from .layers import (
    data_index, hand_over, image_choices, owned_layer, put_owned_layer, placement_fix, role_of, segmentation_shown,
    shown_elsewhere, shown_index, to_layer_order,
)
from .painting import Painting
from .workers import LayerResult, ModelCache, painted_over

POSITIVE_COLOUR, NEGATIVE_COLOUR = "lime", "magenta"


@dataclass
class CorrectionTarget:
    """What the last segmentation ran on: the layer, its model-order input and probabilities, and the model."""

    source: Image
    data: object  # the layer's data when it was segmented: replaced since, a click would fall on the old scan
    image: np.ndarray
    rgb: bool
    probability: np.ndarray  # model (shown) order
    model: str
    device: str
    options: SegmentOptions
    voxel_volume: float | None  # one voxel's volume in mm^3 (`layers.voxel_volume`; None: sizes in voxels)
    orientation: np.ndarray  # the layer's `view_orientation` when segmented: the order of the session's voxels


def corrected_view(session: CorrectionSession, to_layer: Callable[[np.ndarray], np.ndarray], shown: tuple[int, ...],
                   voxel_volume: float | None, painting: Painting | None = None) -> LayerResult:
    """The session's probabilities and mask in the layer's voxel order (`shown`: the model-order shape the layer
    was segmented in), with the pieces listed from the session's own labelling (labelling again costs more), or,
    with the user's `painting` over the mask, from the painted mask (`painted_over`). The probabilities are a copy:
    the next click changes the session's own in place, from a worker thread."""
    probability = to_layer(session.probability.reshape(shown)).copy()
    labels = to_layer(session.piece_labels.reshape(shown))
    pieces = describe_pieces(probability, labels, session.piece_count, voxel_volume)
    result = LayerResult(probability, (labels > 0).astype(np.uint8), (labels, pieces), session.postprocess)
    return painted_over(result, painting, voxel_volume)


def session_job(cache: ModelCache, target: CorrectionTarget, *,
                stop: Callable[[], bool]) -> Iterator[CorrectionSession]:
    """Build the correction session from the segmentation already on screen (no model run). Its 'auto' precision is
    timed first where the process has not chosen one for its current CPU threads (seconds, `precision.choose`; a
    training run in the same napari sets the threads), and a stop (the dock or the viewer closed) ends that timing:
    no session, and no error to show."""
    model = cache.get(target.model, target.device)
    try:
        session = CorrectionSession(model, target.image, target.options, rgb=target.rgb,
                                    probability=target.probability, stop=stop)
    except Stopped:
        return
    yield session


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
    scan, so never on the viewer's thread); yields the result as `view` shows it. A stop (the dock closed, a new
    segmentation shown, the segmented image deleted) ends the replay before its next click, with nothing to show: the
    session keeps its old clean-up, and no error is shown."""
    try:
        session.set_postprocess(config, stop=stop)
    except Stopped:
        return
    yield view(session)


@dataclass(frozen=True)
class QueuedClick:
    """A click waiting in the queue or being computed: where it fell in the model's order (z, y, x) and in the source
    layer's data coordinates, its kind, and how many pieces the user had removed when clicking (see
    `review.SaidTumour`)."""

    point: tuple[float, float, float]
    data_point: tuple[float, ...]
    positive: bool
    removals: int

    def voxel(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The voxel of the source layer's data (of spatial `shape`) the click fell on; a click on the scan's very
        edge is the edge voxel's."""
        return tuple(int(v) for v in np.clip(np.round(self.data_point), 0, np.asarray(shape) - 1))

    def said(self, shape: tuple[int, ...]) -> SaidTumour | None:
        """What the click says to the review list: for a "tumour" click, bring back the piece it fell in."""
        return SaidTumour(self.voxel(shape), self.removals) if self.positive else None


CLEANUP = "cleanup"  # the queue's item for "apply the latest clean-up"
UNDO = "undo"  # the queue's item for "take back the session's last click"
NO_SEGMENTATION = "segment an image with this Segment widget first, then correct it with clicks"
READ_ONLY = "the clicks layer shows the clicks that shaped the mask and cannot be edited: Undo click takes one back"


class ClickCorrections:
    """Correction mode for one viewer: on while `enabled`, reading clicks over the target's layer."""

    def __init__(self, viewer: napari.Viewer, widget, cache: ModelCache,
                 on_change: Callable[[LayerResult, QueuedClick | None, str | None], None],
                 on_cleanup_failed: Callable[[], None], removals: Callable[[], int],
                 painting: Callable[[], Painting | None]) -> None:
        self.viewer, self._cache, self._on_change, self._on_cleanup_failed = viewer, cache, on_change, on_cleanup_failed
        self._removals = removals  # how many pieces the user has removed in the review list so far
        self._painting = painting  # the user's painting on the tumour layer so far (`Painting.frozen`), or None
        self.job = JobRunner(widget, lambda running: None)
        self.target: CorrectionTarget | None = None
        self.session: CorrectionSession | None = None
        self.postprocess: PostprocessConfig | None = None  # the widget's clean-up, applied before the next click
        self._queue: list[QueuedClick | str] = []
        self._running: QueuedClick | None = None  # the click being computed
        self._undo_running = False  # Undo was pressed for the click being computed
        self._clicks_before: list[Click] = []  # the session's clicks when the running click or undo job started
        self._step: str | None = None  # the click job last started: "click", "undo" or None (a clean-up)
        self.enabled = False
        widget.native.destroyed.connect(self._destroyed)  # a bound method: see undock._Connections

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
        """A new segmentation (or none): earlier clicks belonged to the old one. The job still running for the old
        session is asked to stop: a clean-up replaying many clicks held off the new session for minutes."""
        self.job.stop()
        self.target, self.session, self._queue, self._step = target, None, [], None
        self._running, self._undo_running = None, False  # a click still computed belongs to the old session
        self.postprocess = None  # the new segmentation's own clean-up, until the widget says otherwise
        self._draw_clicks()
        self._prepare()

    def stop_cleanup(self) -> None:
        """Segment was pressed: a clean-up replaying the session's clicks stops before its next labelling and shows
        nothing (`_mask_ready`), and those waiting are dropped. It went on beside the new segmentation, both on the
        CPU, until that one's result came, for a mask about to be replaced; one that finished first was shown. The
        session keeps its clean-up (or has the new one, if the stop came after its replay), and queued clicks go on:
        a segmentation that ends without a result leaves the mask to the widget, which applies its setting again."""
        self._queue = [item for item in self._queue if item != CLEANUP]
        if self.job.running and self._step is None and self.session is not None:  # a clean-up, not the session built
            self.job.stop()

    def end(self) -> None:
        """The session ends (the Segment dock was closed, or the user deleted the segmented image: `end_if_gone`):
        what waits for its turn is dropped, and the job being computed shows nothing (its session is no longer
        ours), so the tumour layer keeps the mask on screen and the clicks layer the clicks that shaped it. A queued
        click used to run after the dock was closed and change the mask, with no Undo button left to take it back.
        The session is not kept for the widget docked again: the running click may be in it, and its mask would not
        be the one on screen."""
        self._running = None
        self._draw_clicks()
        self.reset(None)

    def set_enabled(self, enabled: bool) -> None:
        """Correction mode on or off."""
        self.enabled = enabled
        self._listen(enabled)
        self._prepare()

    def _destroyed(self, *_: object) -> None:
        self._listen(False)

    def _listen(self, on: bool) -> None:
        """Take the viewer's mouse presses (`_on_mouse`) only in correction mode: napari calls every callback on
        every press, and the one of a closed Segment dock (correction mode ends with it) held the widget alive."""
        callbacks = self.viewer.mouse_drag_callbacks
        if on and self._on_mouse not in callbacks:
            callbacks.append(self._on_mouse)
        elif not on and self._on_mouse in callbacks:
            callbacks.remove(self._on_mouse)

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
        if (problem := self._cannot_click()) is not None:
            notify.show_warning(problem)
            return
        shown = shown_index(self.target.source, data_point, self.target.orientation)
        point = shown if len(shown) == 3 else (0.0, *shown)
        self._queue.append(QueuedClick(point, tuple(float(v) for v in data_point), bool(positive), self._removals()))
        self._next()

    def _target_shown(self) -> bool:
        """Whether the segmented image and its tumour layer are still in the viewer (see `layers.segmentation_shown`):
        a click is refused, and the clicks layer is not drawn again, once the user deleted either."""
        return self.target is not None and segmentation_shown(self.viewer, self.target.source)

    def keep_clicks(self, source: Image, why: str) -> str | None:
        """A new segmentation of `source` replaces its tumour layer, which is kept as the user's ('... (`why`)',
        `layers.hand_over`): the clicks layer that shows the clicks that shaped it is kept with it, renamed the same
        way, and is the user's to edit (napari's point tools work on it again). The new segmentation's clicks go to a
        layer of their own. Redrawn first without a click still computed: its result goes to no mask (the new
        segmentation drops it), so the kept layer holds exactly the clicks of the kept mask. Emptied in place, as it
        was, the clicks were lost while the mask they made stayed. Returns the kept layer's name, None when there
        was no click to keep."""
        if self.target is not None and self.target.source is source:
            self._running = None
            self._draw_clicks()
        layer = owned_layer(self.viewer, source, "clicks")
        if layer is None or not len(layer.data):
            return None
        name = hand_over(layer, why)
        layer.editable = True
        return name

    def end_if_gone(self) -> bool:
        """End the session if the user deleted its image or tumour layer, as if nothing had been segmented: what
        waits for its turn is dropped. The clicks layer goes with the tumour layer (it kept the points of a mask that
        no longer existed until the next Segment); with only the image deleted, it still shows the clicks that
        shaped the mask left, without the click being computed (it kept that point, and the mask never got the
        click). True if it ended now."""
        if self.target is None or self._target_shown():
            return False
        source = self.target.source
        self.end()
        if owned_layer(self.viewer, source, "tumour") is None and (
                clicks := owned_layer(self.viewer, source, "clicks")) is not None:
            self.viewer.layers.remove(clicks)
        return True

    def _cannot_click(self) -> str | None:
        """Why no segmented image is there to correct, or None: none was segmented yet, the user deleted it (a click
        then ran on the gone image's session, its point was added, and nothing showed the result), replaced its
        data (the click, placed on the new data, corrected the old scan's mask: another place, maybe another
        shape), or it and its tumour layer no longer lie on each other (a click on the image given a scale of 2
        changed the mask at half the distance from the origin, where the user had not clicked)."""
        if not self._target_shown():
            return NO_SEGMENTATION
        source = self.target.source
        if source.data is not self.target.data:
            return f"the data of '{source.name}' was replaced since it was segmented: segment it again"
        tumour = owned_layer(self.viewer, source, "tumour")
        # both ways: a layer placed by napari's defaults alone is taken to lie on any other (`shown_elsewhere`)
        if shown_elsewhere(tumour, source) is not None or shown_elsewhere(source, tumour) is not None:
            return (f"'{source.name}' and '{tumour.name}' no longer lie on each other (one was moved, scaled, rotated "
                    f"or flipped since it was segmented): a click on one would correct the other elsewhere; segment "
                    f"'{source.name}' again, or {placement_fix(tumour, source)}")
        return None

    def undo(self) -> None:
        """Take back the newest click the user made, whatever state it is in. One still waiting (for the session to
        be built, or its turn) leaves the queue and never runs. The one being computed is taken back as soon as it
        lands; if it fails instead, it is gone already and this Undo is spent on it: the click before it stays (an
        Undo queued behind a click that then failed used to take that earlier click, which the user never asked to
        undo). Otherwise the session's last click goes, after what is queued before it."""
        self.end_if_gone()
        waiting = [index for index, item in enumerate(self._queue) if isinstance(item, QueuedClick)]
        if waiting:
            del self._queue[waiting[-1]]
            return
        if self._running is not None and not self._undo_running:
            self._undo_running = True
            return
        if self._clicks_left() <= 0:
            notify.show_info("there is no click to undo")
            return
        self._queue.append(UNDO)
        self._next()

    def _clicks_left(self) -> int:
        """The session's clicks less those the undos queued or running will take back."""
        undoing = self.job.running and self._step == "undo"
        return len(self._clicks_on_screen()) - self._queue.count(UNDO) - int(undoing)

    def _clicks_on_screen(self) -> list[Click]:
        """The session's clicks as the mask on screen has them. While a click or undo job runs, the session's list
        is the worker's to change (a click is in it from the moment its job starts), so they are the clicks as they
        were when the job started."""
        if self.session is None:
            return []
        return self._clicks_before if self.job.running and self._step is not None else list(self.session.clicks)

    def _next(self) -> None:
        if self.job.running:
            return
        if self.end_if_gone():
            return
        if not self._queue:
            self._prepare()  # a new segmentation may have come while the last job ran
            return
        if self.session is None:
            self._start_session()
            return
        item = self._queue.pop(0)
        if item == CLEANUP:
            self._step = None
            self.job.start(session_cleanup_job, self.session, self.postprocess, self._view(),
                           on_item=partial(self._mask_ready, self.session), on_done=self._next,
                           on_error=partial(self._cleanup_failed, self.session))
            return
        self._running = None if item == UNDO else item
        self._step = "undo" if item == UNDO else "click"
        point, positive = (None, False) if item == UNDO else (item.point, item.positive)
        self._clicks_before = list(self.session.clicks)
        self._draw_clicks()  # the click being computed shows at once
        self.job.start(click_job, self.session, point, positive, self._view(),
                       on_item=partial(self._mask_ready, self.session), on_done=partial(self._click_done, self.session))

    def _cleanup_failed(self, session: CorrectionSession, _error: BaseException) -> None:
        """A new clean-up of `session` failed (its error was notified; the session keeps the one it had): the widget
        takes the setting back, so the clean-ups still waiting, which would apply it or a newer one, are dropped.
        One of a session a new segmentation replaced meanwhile is no concern of the new mask's."""
        if session is not self.session:
            return
        self._queue = [item for item in self._queue if item != CLEANUP]
        self._on_cleanup_failed()

    def _click_done(self, session: CorrectionSession) -> None:
        """Redraw the clicks and go on with the queue. A click that failed (its error was notified) left the session
        without it, and an Undo pressed while it was computed is spent on it; one that landed is taken back first."""
        landed = self._running is not None and len(session.clicks) > len(self._clicks_before)
        if landed and self._undo_running and session is self.session:
            self._queue.insert(0, UNDO)
        self._running, self._undo_running = None, False
        self._draw_clicks()
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
        """`corrected_view` for the target's layer, in the orientation it was segmented in: read now, a layer
        flipped or rotated since got the session's mask flipped or turned on a new threshold. The user's painting
        is read now too, as the job starts: strokes made while it runs are listed after it (segment.py
        `_list_painting`)."""
        target = self.target
        return partial(corrected_view, to_layer=to_layer_order(target.source, target.orientation),
                       shown=target.probability.shape, voxel_volume=target.voxel_volume, painting=self._painting())

    def _mask_ready(self, session: CorrectionSession, result: LayerResult) -> None:
        """Show the corrected mask of `session`, with the click just computed (None for an undo or a clean-up). A
        result of a session a new segmentation replaced while the click was computed is dropped: it would overwrite
        the new mask; so is a clean-up's asked to stop (`stop_cleanup`) once its replay was over."""
        if session is not self.session or (self._step is None and self.job.stop_asked):
            return
        self._on_change(result, self._running, self._step)

    def _draw_clicks(self) -> None:
        """Draw the clicks layer whole: the session's clicks on screen, then the click being computed. Drawn from
        the session, it cannot keep a point of a click that failed, or lose one that shaped the mask. With the
        segmented image deleted, the clicks layer left with the mask is drawn but not made again."""
        if self.target is None or owned_layer(self.viewer, self.target.source, "tumour") is None:
            return
        source = self.target.source
        clicks = self._clicks_on_screen()
        shown = np.array([(c.z, c.y, c.x) for c in clicks], dtype=float).reshape(-1, 3)[:, 3 - source.ndim:]
        points, kinds = data_index(source, shown, self.target.orientation), [c.positive for c in clicks]
        if self._running is not None:
            points = np.vstack([points, self._running.data_point])
            kinds.append(self._running.positive)
        colours = [POSITIVE_COLOUR if positive else NEGATIVE_COLOUR for positive in kinds]
        layer = self._clicks_layer(source)
        if layer is None and len(points) and self._target_shown():
            _read_only(put_owned_layer(self.viewer, source, "clicks", points, face_color=colours, size=6,
                                       border_width=0))
        elif layer is not None:
            layer.data = points
            if len(points):  # no colours for no points: napari warns of an empty colour list, in a notification
                layer.face_color = colours

    def _clicks_layer(self, source: Image) -> Points | None:
        """The clicks layer of `source`, if any, less one of another number of axes than `source` (its data replaced
        by a 2D image or a volume since the layer was made), which is removed: a napari Points layer keeps its number
        of axes, and drawing the new segmentation's clicks into it failed with an error that left that segmentation
        half shown. It holds no click of the user's: the clicks of a mask kept as theirs went with it
        (`keep_clicks`)."""
        layer = owned_layer(self.viewer, source, "clicks")
        if layer is not None and layer.ndim != source.ndim:
            self.viewer.layers.remove(layer)
            return None
        return layer

    def _on_mouse(self, viewer: napari.Viewer, event) -> Iterator[None]:
        """A press and release without a drag over the segmented image is a click; a drag stays a pan.

        Only in napari's pan/zoom mode and the 2D view: a dab of the brush, the eraser or the fill bucket on the
        tumour layer (or a point added to a Points layer) is that tool's, and was taken as a "tumour" click as well,
        so erasing a spot re-segmented tumour around it. In the 3D view a click has no depth: it landed on the slice
        the slider shows, wherever the user had turned the volume.

        A drag is told by how far the mouse went (`_dragged`), as napari's point tool tells a new point from a pan,
        not by a move event: napari throttles those, so a short drag that began within 5 ms of a hover move (a pan
        with Space held, the brush's or this mode's) reached this callback as a press and a release alone and placed
        a click where the pan began. A jitter of a pixel or two is still a click."""
        if event.type != "mouse_press" or event.button not in (1, 2):
            return
        active = viewer.layers.selection.active
        if active is not None and str(getattr(active, "mode", "pan_zoom")) != "pan_zoom":
            return  # a layer tool is in use: the press is the tool's
        start, dragged = np.asarray(event.pos, dtype=float), False
        yield
        while event.type == "mouse_move":
            dragged = dragged or _dragged(start, event.pos)
            yield
        if dragged or _dragged(start, event.pos):
            return  # a drag: leave it to napari
        if viewer.dims.ndisplay != 2:
            notify.show_info("clicks correct the mask in the 2D view: switch the viewer to 2D to click")
            return
        if (problem := self._cannot_click()) is not None:  # say why nothing happens
            notify.show_warning(problem)
            return
        source = self.target.source
        point = _data_point(source, event.position)
        if point is None:  # e.g. beside the scan after a pan or a roll of the axes: it did nothing without a word
            notify.show_info(f"the click fell outside '{source.name}': click on the scan to correct its mask")
            return
        if (cover := _covering(viewer, source, event.position)) is not None:
            notify.show_info(_covered(viewer, source, cover))
            return
        self.add_click(point, positive=event.button == 1 and "Shift" not in event.modifiers)


DRAG_PIXELS = 5  # screen pixels the mouse may move between press and release for a click (napari's points: 5)


def _dragged(start: np.ndarray, pos: object) -> bool:
    """Whether the mouse at canvas position `pos` has gone `DRAG_PIXELS` or more from `start`, where it was pressed."""
    return bool(np.linalg.norm(np.asarray(pos, dtype=float) - start) >= DRAG_PIXELS)


def _read_only(layer: Points) -> None:
    """Keep the user from editing the clicks layer: a point deleted, moved or added there no longer matched the clicks
    that shaped the mask (an Undo then took off another click's point). napari turns `editable` back on whenever the
    data is set or the view switches between 2D and 3D, and its keys delete, copy and paste the selected points even
    with the point tools off, so `editable` is turned off again at once and no point stays selected."""

    def keep_off(*_: object) -> None:
        if layer.editable and role_of(layer) == "clicks":  # a layer handed over (`keep_clicks`) is the user's
            layer.editable = False

    def deselect(*_: object) -> None:
        if len(layer.selected_data) and role_of(layer) == "clicks":
            layer.selected_data = set()
            notify.show_info(READ_ONLY)

    keep_off()
    layer.events.editable.connect(keep_off)
    layer.selected_data.events.items_changed.connect(deselect)


def _data_point(layer: Image, position: tuple[float, ...]) -> np.ndarray | None:
    """The world `position` in `layer`'s data coordinates; None when it falls outside the layer's voxels."""
    point = np.asarray(layer.world_to_data(position), dtype=float)
    inside = np.all(point >= -0.5) and np.all(point <= np.asarray(layer.data.shape[: len(point)]) - 0.5)
    return point if inside else None


def _covering(viewer: napari.Viewer, source: Image, position: tuple[float, ...]) -> Image | None:
    """A visible image of the user's seen instead of `source` where the click fell: one shown over it, such as a
    second patient opened while the first was corrected, or, with `source` hidden, one below it too (a patient opened
    before it). The click was on that scan, and it corrected the segmented one, unseen."""
    layers = list(viewer.layers)
    seen = layers[layers.index(source) + 1 :] if source.visible else layers
    users = [layer for _, layer in image_choices(viewer)]  # not our probability map, drawn over the scan on purpose
    return next((layer for layer in seen if layer.visible and any(layer is user for user in users)
                 and _data_point(layer, position) is not None), None)


def _covered(viewer: napari.Viewer, source: Image, cover: Image) -> str:
    """Why a click on `cover` (`_covering`) is not a correction of `source`, and what to do."""
    refused = f"it is not taken as a correction of '{source.name}'"
    if viewer.layers.index(cover) > viewer.layers.index(source):
        return (f"the click fell on '{cover.name}', shown over the segmented '{source.name}': {refused}; hide "
                f"'{cover.name}' to correct it")
    return (f"the click fell on '{cover.name}' while the segmented '{source.name}' is hidden: {refused}; show "
            f"'{source.name}' to correct it")
