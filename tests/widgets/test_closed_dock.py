"""A closed dock's widget does no work on the viewer's events: it lived on after napari's close button (the viewer's
events held it) and recomputed the Segment readouts on every slider step, for no one to see. Nothing holds it now, and
the garbage collector takes it safely."""

from __future__ import annotations

import functools
import gc
import weakref

import numpy as np
import pytest

from napari_lgg_unet.widgets import corrections, job, undock
from napari_lgg_unet.widgets.lazy import Loading
from napari_lgg_unet.widgets.segment import SegmentWidget
from napari_lgg_unet.widgets.session_models import session_models
from napari_lgg_unet.widgets.train import TrainWidget

from widget_helpers import dock

# What each widget runs on the viewer's events: slider steps, layers added, removed, moved or renamed.
HANDLERS = {"Segment tumour": (SegmentWidget, ("update_readouts", "reset_choices", "_take_flair")),
            "Train U-Net": (TrainWidget, ("reset_choices",))}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object]]:
    """(handler name, widget) for each call of the widgets' viewer-event handlers from now on."""
    seen: list[tuple[str, object]] = []
    for kind, names in HANDLERS.values():
        for name in names:
            monkeypatch.setattr(kind, name, _counted(getattr(kind, name), name, seen))
    return seen


def _counted(method, name: str, seen: list):
    @functools.wraps(method)  # napari passes the event to a handler whose signature takes one
    def counted(self, *args, **kwargs):
        seen.append((name, self))
        return method(self, *args, **kwargs)

    return counted


def _viewer_events(viewer) -> None:
    """A few slider steps, then a layer added, moved, renamed and removed."""
    for z in (1.0, 2.0, 3.0):
        viewer.dims.set_point(0, z)
    layer = viewer.add_image(np.zeros((4, 16, 16), np.float32), name="another scan")
    viewer.layers.move(viewer.layers.index(layer), 0)
    layer.name = "renamed scan"
    viewer.layers.remove(layer)


def _called(calls: list, widget) -> list[str]:
    return [name for name, called in calls if called is widget]


@pytest.mark.parametrize("placeholder", [False, True], ids=["docked", "in the loading placeholder"])
@pytest.mark.parametrize("name", list(HANDLERS))
def test_a_closed_dock_widget_runs_nothing_on_slider_steps_and_layer_changes(qtbot, viewer, calls, name, placeholder):
    viewer.add_labels(np.zeros((4, 16, 16), np.uint8), name="truth")
    viewer.add_image(np.zeros((4, 16, 16), np.float32), name="FLAIR")
    listeners = len(session_models.changed)
    if placeholder:
        kind = HANDLERS[name][0]
        outer = Loading(viewer, kind.__module__, kind.__name__)
        viewer.window.add_dock_widget(outer, name=name)
        qtbot.waitUntil(lambda: outer.widget is not None, timeout=60_000)
        widget = outer.widget
    else:
        widget = outer = dock(viewer, name)
    _viewer_events(viewer)
    assert set(_called(calls, widget)) == set(HANDLERS[name][1])  # the handlers this test counts are the live ones
    viewer.window.remove_dock_widget(getattr(outer, "native", outer))  # what the dock's close button does
    calls.clear()
    _viewer_events(viewer)
    session_models.add("run-1", "/nowhere/run-1")
    assert _called(calls, widget) == []
    assert len(session_models.changed) == listeners


def test_a_segment_widget_docked_again_follows_the_viewer_again_and_so_does_a_new_one(qtbot, viewer, calls):
    viewer.add_image(np.zeros((4, 16, 16), np.float32), name="FLAIR")
    closed = dock(viewer, "Segment tumour")
    viewer.window.remove_dock_widget(closed.native)
    fresh = dock(viewer, "Segment tumour")  # what the Plugins menu does after a dock was closed
    assert fresh is not closed
    calls.clear()
    _viewer_events(viewer)
    assert set(_called(calls, fresh)) == set(HANDLERS["Segment tumour"][1]) and _called(calls, closed) == []
    viewer.window.add_dock_widget(closed, name="Segment tumour (again)")  # the same widget, from a script
    calls.clear()
    _viewer_events(viewer)
    assert set(_called(calls, closed)) == set(HANDLERS["Segment tumour"][1])


def test_the_viewer_calls_the_click_handler_only_in_correction_mode_and_never_once_the_dock_is_closed(viewer):
    viewer.add_image(np.zeros((4, 16, 16), np.float32), name="FLAIR")
    widget = dock(viewer, "Segment tumour")
    on_mouse = widget.corrections._on_mouse
    assert on_mouse not in viewer.mouse_drag_callbacks
    widget.correct.value = True
    assert viewer.mouse_drag_callbacks.count(on_mouse) == 1
    widget.correct.value = False
    assert on_mouse not in viewer.mouse_drag_callbacks
    widget.correct.value = True
    viewer.window.remove_dock_widget(widget.native)
    assert on_mouse not in viewer.mouse_drag_callbacks and not widget.correct.value


class _DeletesOnCollection:
    """Put in a closed widget's garbage, it deletes the widget's Qt object while the collector takes them: the moment
    when a handler of `destroyed` would run on objects the collector has started to clear (see undock._Connections)."""

    def __init__(self, native, delete) -> None:
        self.native, self.delete = native, delete

    def __del__(self) -> None:
        self.delete(self.native)


def test_a_closed_widget_is_freed_and_none_of_its_destroyed_handlers_runs_while_the_garbage_collector_takes_it(
        viewer, monkeypatch):
    sip = pytest.importorskip("qtpy.sip", reason="PyQt's weak hold on bound methods is what this checks")

    ran = []
    for kind, name in ((job.JobRunner, "_destroyed"), (corrections.ClickCorrections, "_destroyed"),
                       (undock._Connections, "disconnect")):
        monkeypatch.setattr(kind, name, _counted(getattr(kind, name), name, ran))
    viewer.add_image(np.zeros((4, 16, 16), np.float32), name="FLAIR")
    widget = dock(viewer, "Segment tumour")
    widget.correct.value = True
    viewer.window.remove_dock_widget(widget.native)
    ran.clear()
    widget._deletes = _DeletesOnCollection(widget.native, sip.delete)
    freed = weakref.ref(widget)
    del widget
    gc.collect()
    assert freed() is None  # nothing of the viewer's holds a closed widget any more
    assert ran == []
