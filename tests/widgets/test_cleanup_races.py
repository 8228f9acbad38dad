"""Orderings around the Segment widget's background jobs (found by a review of moving the clean-up off the viewer's
thread): whatever finishes first, the tumour layer shows what the controls say, nothing comes back for an image the
user closed, Cancel or a double Undo gives no error, and an Undo pressed while a click waits or is computed takes
back that click and no other. Jobs are held at a gate so each ordering is forced."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bad_inputs import model_copy
from napari_lgg_unet.engine.postprocess import postprocess
from napari_lgg_unet.widgets import corrections as corrections_module, segment as segment_module
from napari_lgg_unet.widgets.corrections import NO_SEGMENTATION
from napari_lgg_unet.widgets import workers as workers_module
from napari_lgg_unet.widgets.layers import owned_layer

from widget_helpers import bright_square_scan, dock, segment_and_settle, settle


def _widget(viewer, model, layer):
    widget = dock(viewer, "Segment tumour")
    widget.model.value = "folder"
    widget.model_folder.value = model
    widget.image.value = layer
    widget.cleanup.min_size.value = 0
    return widget


def _gated(job):
    """`job` held until `gate.set()`; `started` says it is waiting."""
    gate, started = threading.Event(), threading.Event()

    def held(*args, stop):
        started.set()
        assert gate.wait(30)
        yield from job(*args, stop=stop)

    held.gate, held.started = gate, started
    return held


def _gated_call(function):
    """`function` (not a job) held until `gate.set()`; `started` says it is waiting."""
    gate, started = threading.Event(), threading.Event()

    def held(*args, **kwargs):
        started.set()
        assert gate.wait(30)
        return function(*args, **kwargs)

    held.gate, held.started = gate, started
    return held


def _as_the_controls_say(widget) -> np.ndarray:
    return postprocess(widget._probability, widget.cleanup.config())


def _two_thresholds(widget) -> tuple[float, float]:
    """Two thresholds that split this (untrained, randomly initialised) model's probabilities differently, neither
    the current one: setting the current value again changes nothing, so no clean-up would start."""
    low, high = (float(np.clip(round(float(np.quantile(widget._probability, q)), 2), 0.03, 0.97)) for q in (0.3, 0.7))
    high = max(high, round(low + 0.02, 2))
    current = widget.cleanup.threshold.value
    low, high = (round(low - 0.01, 2) if low == current else low), (round(high + 0.01, 2) if high == current else high)
    return low, high


@pytest.mark.parametrize("first_run", [True, False])
def test_a_threshold_moved_while_segmenting_is_applied_to_the_result(qtbot, viewer, notes, tiny_model_dir, monkeypatch,
                                                                     first_run):
    image = viewer.add_image(bright_square_scan(0), name="X")
    widget = _widget(viewer, str(tiny_model_dir), image)
    segment_and_settle(qtbot, widget)
    low, high = _two_thresholds(widget)
    widget.cleanup.threshold.value = low
    settle(qtbot, widget)
    if first_run:  # nothing on screen any more, as before a first segmentation
        viewer.layers.remove(widget.prediction_layer())
        viewer.layers.remove(image)
        widget.image.value = viewer.add_image(bright_square_scan(0), name="X2")
    job = _gated(segment_module.segment_job)
    monkeypatch.setattr(segment_module, "segment_job", job)
    widget.segment_button.clicked()  # segments at `low`
    assert job.started.wait(10)
    widget.cleanup.threshold.value = high  # while the model runs
    job.gate.set()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    settle(qtbot, widget)
    assert notes["error"] == []
    np.testing.assert_array_equal(widget.prediction_layer().data, _as_the_controls_say(widget))


def test_a_new_correction_session_takes_the_clean_up_the_controls_show(qtbot, viewer, notes, tiny_click_model):
    first = viewer.add_image(bright_square_scan(0), name="X")
    widget = _widget(viewer, tiny_click_model, first)
    widget.cleanup.threshold.value = 0.47
    segment_and_settle(qtbot, widget)
    widget.cleanup.threshold.value = 0.49
    settle(qtbot, widget)
    viewer.layers.remove(widget.prediction_layer())
    viewer.layers.remove(first)
    widget.cleanup.threshold.value = 0.48  # no result on screen: the next segmentation takes it
    widget.image.value = viewer.add_image(bright_square_scan(1), name="Y")
    segment_and_settle(qtbot, widget)
    widget.correct.value = True
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=30_000)
    settle(qtbot, widget)
    assert widget.corrections.session.postprocess == widget.cleanup.config()
    shown = np.asarray(widget.prediction_layer().data) > 0
    np.testing.assert_array_equal(shown, widget.corrections.session.mask.reshape(shown.shape) > 0)
    np.testing.assert_array_equal(shown, _as_the_controls_say(widget) > 0)


@pytest.mark.parametrize("with_session", [False, True])
def test_a_clean_up_finishing_after_the_image_was_closed_adds_no_layer(qtbot, viewer, notes, tiny_click_model,
                                                                      monkeypatch, with_session):
    image = viewer.add_image(bright_square_scan(0), name="X")
    widget = _widget(viewer, tiny_click_model, image)
    segment_and_settle(qtbot, widget)
    if with_session:
        widget.correct.value = True
        qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=30_000)
        settle(qtbot, widget)
        module, name = corrections_module, "session_cleanup_job"
    else:
        module, name = segment_module, "cleanup_job"
    job = _gated(getattr(module, name))
    monkeypatch.setattr(module, name, job)
    widget.cleanup.threshold.value = 0.47
    assert job.started.wait(10)
    viewer.layers.remove(widget.prediction_layer())  # the user closes the case: mask and image
    viewer.layers.remove(image)
    job.gate.set()
    settle(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == []
    assert notes["error"] == []


def test_undo_pressed_twice_for_one_click_behind_a_clean_up_is_no_error(qtbot, viewer, notes, tiny_click_model,
                                                                       monkeypatch):
    widget = _widget(viewer, tiny_click_model, viewer.add_image(bright_square_scan(0), name="X"))
    segment_and_settle(qtbot, widget)
    widget.correct.value = True
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=30_000)
    widget.corrections.add_click(np.asarray((1.0, 30.0, 30.0)), True)
    settle(qtbot, widget)
    job = _gated(corrections_module.session_cleanup_job)
    monkeypatch.setattr(corrections_module, "session_cleanup_job", job)
    widget.cleanup.threshold.value = 0.47
    assert job.started.wait(10)
    widget.undo_click.clicked()
    widget.undo_click.clicked()  # a double-click on Undo, one click in the session
    job.gate.set()
    settle(qtbot, widget)
    assert notes["error"] == []
    assert widget.corrections.session.clicks == []


def test_cancel_while_the_result_is_listed_shows_nothing(qtbot, viewer, notes, tiny_model_dir, monkeypatch):
    widget = _widget(viewer, str(tiny_model_dir), viewer.add_image(bright_square_scan(0), name="X"))
    gate, started = threading.Event(), threading.Event()
    real = workers_module.list_pieces

    def held(*args, **kwargs):
        started.set()
        assert gate.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(workers_module, "list_pieces", held)
    widget.segment_button.clicked()
    qtbot.waitUntil(started.is_set, timeout=30_000)
    widget.cancel_button.clicked()
    gate.set()
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    assert widget.prediction_layer() is None
    assert notes["error"] == []


def test_painting_on_a_deleted_tumour_layer_is_forgotten(qtbot, viewer, notes, tiny_model_dir):
    widget = _widget(viewer, str(tiny_model_dir), viewer.add_image(bright_square_scan(0), name="X"))
    segment_and_settle(qtbot, widget)
    low, high = _two_thresholds(widget)
    layer = widget.prediction_layer()
    layer.data[:] = 0  # the user erases everything
    layer.refresh()
    widget.cleanup.threshold.value = high
    settle(qtbot, widget)
    viewer.layers.remove(widget.prediction_layer())  # and deletes the layer, erasing and all
    widget.cleanup.threshold.value = low  # brings no tumour layer back: its segmentation ended with it
    settle(qtbot, widget)
    assert widget.prediction_layer() is None
    segment_and_settle(qtbot, widget)  # a new tumour layer
    widget.cleanup.threshold.value = high
    settle(qtbot, widget)
    np.testing.assert_array_equal(widget.prediction_layer().data, _as_the_controls_say(widget))


def test_closing_the_dock_starts_no_further_clean_up(qtbot, viewer, notes, tiny_model_dir, monkeypatch):
    widget = _widget(viewer, str(tiny_model_dir), viewer.add_image(bright_square_scan(0), name="X"))
    segment_and_settle(qtbot, widget)
    low, high = _two_thresholds(widget)
    ran = []
    job = _gated(workers_module.cleanup_job)

    def counted(probability, config, *args, stop):
        ran.append(config.threshold)
        yield from job(probability, config, *args, stop=stop)

    monkeypatch.setattr(segment_module, "cleanup_job", counted)
    widget.cleanup.threshold.value = low
    assert job.started.wait(10)
    widget.cleanup.threshold.value = high  # waits for the one running
    viewer.window.remove_dock_widget(widget.native)
    job.gate.set()
    qtbot.waitUntil(lambda: not widget.cleanup_job.running, timeout=10_000)
    qtbot.wait(200)
    assert ran == [low] and not widget.cleanup_job.running
    assert notes["error"] == []


def _corrections_ready(qtbot, viewer, model: str):
    widget = _widget(viewer, model, viewer.add_image(bright_square_scan(0), name="X"))
    segment_and_settle(qtbot, widget)
    widget.correct.value = True
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=30_000)
    settle(qtbot, widget)
    return widget


def _held_network(monkeypatch, failing: set[int]):
    """Each click's network run from now on waits at `gate`; the runs numbered in `failing` (from 1) then fail as
    out of memory. Returns the gate, an event set when a run starts and the list of runs."""
    from napari_lgg_unet.engine import corrections as engine_corrections
    from napari_lgg_unet.engine.errors import DeviceError

    real, gate, started, runs = engine_corrections._recompute_near, threading.Event(), threading.Event(), []

    def held(*args, **kwargs):
        runs.append(len(runs) + 1)
        started.set()
        assert gate.wait(30)
        if runs[-1] in failing:
            raise DeviceError("out of memory (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine_corrections, "_recompute_near", held)
    return gate, started, runs


def _points(viewer, widget) -> np.ndarray:
    layer = owned_layer(viewer, widget._source, "clicks")
    return np.zeros((0, 3)) if layer is None else np.asarray(layer.data)


@pytest.mark.parametrize("click_fails", [True, False])
def test_undo_pressed_while_a_click_is_computed_takes_back_that_click_and_no_other(qtbot, viewer, notes,
                                                                                   tiny_click_model, monkeypatch,
                                                                                   click_fails):
    widget = _corrections_ready(qtbot, viewer, tiny_click_model)
    widget.corrections.add_click(np.asarray((1.0, 30.0, 30.0)), True)  # A
    settle(qtbot, widget)
    clicks, mask = list(widget.corrections.session.clicks), np.array(widget.prediction_layer().data, copy=True)
    gate, started, _ = _held_network(monkeypatch, failing={1} if click_fails else set())
    widget.corrections.add_click(np.asarray((1.0, 40.0, 20.0)), False)  # B
    assert started.wait(10)
    widget.undo_click.clicked()  # while B is computed: for B
    gate.set()
    settle(qtbot, widget)
    assert widget.corrections.session.clicks == clicks  # A stays, whether B failed or landed and was undone
    np.testing.assert_array_equal(widget.prediction_layer().data, mask)
    np.testing.assert_allclose(_points(viewer, widget), [(1.0, 30.0, 30.0)])
    assert notes["error"] == (["out of memory (simulated)"] if click_fails else [])


def test_undo_pressed_while_a_click_waits_for_its_turn_drops_that_click_unrun(qtbot, viewer, notes, tiny_click_model,
                                                                             monkeypatch):
    widget = _corrections_ready(qtbot, viewer, tiny_click_model)
    gate, started, runs = _held_network(monkeypatch, failing={2})  # B would fail, had it run
    widget.corrections.add_click(np.asarray((1.0, 30.0, 30.0)), True)  # A, computed
    assert started.wait(10)
    widget.corrections.add_click(np.asarray((1.0, 40.0, 20.0)), False)  # B, waits behind A
    widget.undo_click.clicked()
    gate.set()
    settle(qtbot, widget)
    assert [click.positive for click in widget.corrections.session.clicks] == [True]  # A stays
    assert runs == [1]  # B never ran
    np.testing.assert_allclose(_points(viewer, widget), [(1.0, 30.0, 30.0)])
    assert notes["error"] == [] and notes["info"] == []


def test_more_undos_than_clicks_while_a_click_is_computed_say_there_is_none_left(qtbot, viewer, notes,
                                                                                  tiny_click_model, monkeypatch):
    """The session holds the click being computed from the moment its job starts: counted as a click of its own,
    the third Undo was queued too, and failed with "there is no click to undo" as an error."""
    widget = _corrections_ready(qtbot, viewer, tiny_click_model)
    widget.corrections.add_click(np.asarray((1.0, 30.0, 30.0)), True)  # A
    settle(qtbot, widget)
    gate, started, _ = _held_network(monkeypatch, failing=set())
    widget.corrections.add_click(np.asarray((1.0, 40.0, 20.0)), False)  # B, computed
    assert started.wait(10)
    for _ in range(3):  # for B, for A, and for none
        widget.undo_click.clicked()
    gate.set()
    settle(qtbot, widget)
    assert widget.corrections.session.clicks == [] and len(_points(viewer, widget)) == 0
    assert notes["error"] == [] and notes["info"] == ["there is no click to undo"]


@pytest.mark.parametrize("running", ["click", "clean-up", "clean-up before correction mode"])
def test_a_tumour_layer_deleted_while_a_click_or_clean_up_runs_stays_deleted_and_ends_the_session(
        qtbot, viewer, notes, tiny_click_model, monkeypatch, running):
    """The result brought the deleted layer back (and the clicks layer), and the session went on with it."""
    image = viewer.add_image(bright_square_scan(0), name="X")
    widget = _widget(viewer, tiny_click_model, image)
    segment_and_settle(qtbot, widget)
    if running != "clean-up before correction mode":
        widget.correct.value = True
        qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=30_000)
        settle(qtbot, widget)
    if running == "click":
        gate, started, _ = _held_network(monkeypatch, failing=set())
        widget.corrections.add_click(np.asarray((1.0, 30.0, 30.0)), True)
    else:
        module, name = ((corrections_module, "session_cleanup_job") if running == "clean-up"
                        else (segment_module, "cleanup_job"))
        job = _gated(getattr(module, name))
        monkeypatch.setattr(module, name, job)
        gate, started = job.gate, job.started
        widget.cleanup.threshold.value = 0.47
    assert started.wait(10)
    viewer.layers.remove(widget.prediction_layer())
    if (clicks := owned_layer(viewer, image, "clicks")) is not None:
        viewer.layers.remove(clicks)  # not drawn again either: no tumour layer is left to correct
    gate.set()
    settle(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == ["X"]
    assert widget.corrections.session is None
    widget.corrections.add_click(np.asarray((1.0, 30.0, 30.0)), True)  # as if nothing had been segmented
    widget.cleanup.threshold.value = 0.53
    settle(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == ["X"]
    assert notes["warning"] == [NO_SEGMENTATION] and notes["error"] == []


def test_a_probability_map_deleted_while_a_click_runs_stays_deleted_and_its_box_is_cleared(qtbot, viewer, notes,
                                                                                          tiny_click_model,
                                                                                          monkeypatch):
    widget = _corrections_ready(qtbot, viewer, tiny_click_model)
    widget.show_probability.value = True
    source = widget._source
    gate, started, _ = _held_network(monkeypatch, failing=set())
    widget.corrections.add_click(np.asarray((1.0, 30.0, 30.0)), True)
    assert started.wait(10)
    viewer.layers.remove(owned_layer(viewer, source, "probability"))
    viewer.layers.remove(owned_layer(viewer, source, "clicks"))
    gate.set()
    settle(qtbot, widget)
    assert owned_layer(viewer, source, "probability") is None and not widget.show_probability.value
    assert len(widget.corrections.session.clicks) == 1
    np.testing.assert_allclose(_points(viewer, widget), [(1.0, 30.0, 30.0)])  # drawn again: the tumour layer is there
    widget.show_probability.value = True  # shows it again
    np.testing.assert_array_equal(owned_layer(viewer, source, "probability").data, widget._probability)
    assert notes["error"] == []


def test_unticking_the_probability_box_after_the_tumour_layer_was_deleted_hides_the_map_for_good(qtbot, viewer,
                                                                                                notes, tiny_model_dir):
    widget = _widget(viewer, str(tiny_model_dir), viewer.add_image(bright_square_scan(0), name="X"))
    widget.show_probability.value = True
    segment_and_settle(qtbot, widget)
    viewer.layers.remove(widget.prediction_layer())
    widget.show_probability.value = False
    assert [(layer.name, layer.visible) for layer in viewer.layers] == [("X", True), ("X probability", False)]
    widget.show_probability.value = True  # that segmentation ended with its tumour layer: nothing to show for it
    assert [(layer.name, layer.visible) for layer in viewer.layers] == [("X", True), ("X probability", False)]
    assert not widget.show_probability.value and len(notes["info"]) == 1 and "no probability map" in notes["info"][0]
    assert notes["error"] == []


def test_ticking_the_probability_box_after_the_image_was_deleted_says_there_is_nothing_to_show(qtbot, viewer, notes,
                                                                                              tiny_model_dir):
    """With the tumour layer kept, the box stayed ticked, showing nothing and saying nothing."""
    widget = _widget(viewer, str(tiny_model_dir), viewer.add_image(bright_square_scan(0), name="X"))
    segment_and_settle(qtbot, widget)
    viewer.layers.remove(widget._source)
    widget.show_probability.value = True
    assert [layer.name for layer in viewer.layers] == ["X tumour"]
    assert not widget.show_probability.value and len(notes["info"]) == 1 and "no probability map" in notes["info"][0]
    widget.show_probability.value = True  # said again each time: the user asked again
    assert len(notes["info"]) == 2 and notes["error"] == []


def _click_shown_then_one_held(qtbot, viewer, model: str, monkeypatch):
    """A widget in correction mode with click A shown and click B held at the gate while it is computed: the widget,
    the mask A made, the gate and the list of network runs."""
    widget = _corrections_ready(qtbot, viewer, model)
    widget.corrections.add_click(np.asarray((1.0, 30.0, 30.0)), True)  # A, shown
    settle(qtbot, widget)
    mask = np.array(widget.prediction_layer().data, copy=True)
    gate, started, runs = _held_network(monkeypatch, failing=set())
    widget.corrections.add_click(np.asarray((1.0, 40.0, 20.0)), False)  # B, computed
    assert started.wait(10)
    return widget, mask, gate, runs


def test_closing_the_dock_while_a_click_is_computed_drops_what_waits_and_shows_nothing_more(qtbot, viewer, notes,
                                                                                           tiny_click_model,
                                                                                           monkeypatch):
    """Closing the dock ends correction mode: a click and a clean-up still waiting ran all the same, and the click
    being computed changed the tumour layer, with no Undo button left to take it back."""
    widget, mask, gate, runs = _click_shown_then_one_held(qtbot, viewer, tiny_click_model, monkeypatch)
    widget.corrections.add_click(np.asarray((1.0, 20.0, 40.0)), True)  # C, waits
    widget.cleanup.threshold.value = 0.47  # waits too
    viewer.window.remove_dock_widget(widget.native)
    gate.set()
    qtbot.waitUntil(lambda: not widget.corrections.job.running, timeout=30_000)
    qtbot.wait(300)  # a job started from the queue would be running now
    assert runs == [1] and not widget.corrections.job.running and widget.corrections._queue == []
    np.testing.assert_array_equal(widget.prediction_layer().data, mask)
    np.testing.assert_allclose(_points(viewer, widget), [(1.0, 30.0, 30.0)])  # the clicks of the mask on screen
    assert widget.corrections.session is None and not widget.correct.value
    assert notes["error"] == []


def _segmented_with_its_cleanup_job(qtbot, viewer, model: str, with_session: bool):
    """A widget that segmented image X (in correction mode when `with_session`), and the module and name of the
    clean-up job its next setting runs: the session's while correcting, else the plain one."""
    widget = _widget(viewer, model, viewer.add_image(bright_square_scan(0), name="X"))
    segment_and_settle(qtbot, widget)
    if with_session:
        widget.correct.value = True
        qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=30_000)
        settle(qtbot, widget)
    module, name = (corrections_module, "session_cleanup_job") if with_session else (segment_module, "cleanup_job")
    return widget, module, name


@pytest.mark.parametrize("with_session", [False, True])
def test_a_clean_up_that_fails_puts_the_controls_back_to_the_mask_s_own_without_recomputing(qtbot, viewer, notes,
                                                                                          tiny_click_model,
                                                                                          monkeypatch, with_session):
    """The slider stayed at the new threshold over a mask made with the old one; a newer setting still waiting went
    on to fail the same way."""
    from napari_lgg_unet.engine.errors import DeviceError

    widget, module, name = _segmented_with_its_cleanup_job(qtbot, viewer, tiny_click_model, with_session)
    before, mask, runs = widget.cleanup.config(), np.array(widget.prediction_layer().data, copy=True), []

    def out_of_memory(*args, stop):
        runs.append(args)
        raise DeviceError("out of memory (simulated)")
        yield

    job = _gated(out_of_memory)
    monkeypatch.setattr(module, name, job)
    low, high = _two_thresholds(widget)
    widget.cleanup.threshold.value = low
    assert job.started.wait(10)
    widget.cleanup.threshold.value = high  # waits for the one running
    job.gate.set()
    settle(qtbot, widget)
    qtbot.wait(200)  # a recomputation started by putting the controls back would be running now
    settle(qtbot, widget)
    assert len(runs) == 1
    assert widget.cleanup.config() == before
    np.testing.assert_array_equal(widget.prediction_layer().data, mask)
    assert notes["error"] == ["out of memory (simulated)"]
    assert len(notes["warning"]) == 1 and "back" in notes["warning"][0]
    widget.cleanup.threshold.value = high  # the controls still start a clean-up
    settle(qtbot, widget)
    assert len(runs) == 2 and widget.cleanup.config() == before


def test_a_segmentation_shown_while_a_clean_up_runs_gets_the_setting_of_the_controls(qtbot, viewer, notes,
                                                                                    tiny_model_dir, monkeypatch):
    """The clean-up of the old mask, dropped when the new one came, had applied what the controls said: nothing was
    done for the new mask, which kept the setting it was segmented with."""
    widget = _widget(viewer, str(tiny_model_dir), viewer.add_image(bright_square_scan(0), name="X"))
    segment_and_settle(qtbot, widget)
    low, high = _two_thresholds(widget)
    widget.cleanup.threshold.value = low
    settle(qtbot, widget)
    segment = _gated(segment_module.segment_job)
    monkeypatch.setattr(segment_module, "segment_job", segment)
    widget.segment_button.clicked()  # segments at `low`
    assert segment.started.wait(10)
    cleanup = _gated(workers_module.cleanup_job)
    monkeypatch.setattr(segment_module, "cleanup_job", cleanup)
    widget.cleanup.threshold.value = high  # cleans up the mask on screen meanwhile
    assert cleanup.started.wait(10)
    segment.gate.set()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)  # the new mask is shown, made at `low`
    cleanup.gate.set()
    settle(qtbot, widget)
    assert notes["error"] == []
    np.testing.assert_array_equal(widget.prediction_layer().data, _as_the_controls_say(widget))


def test_a_clean_up_of_the_old_mask_failing_after_a_new_segmentation_leaves_the_controls_to_the_new_one(
        qtbot, viewer, notes, tiny_model_dir, monkeypatch):
    """Its failure is no word on the new mask: the controls stay where the user put them, and the new mask gets
    their setting."""
    from napari_lgg_unet.engine.errors import DeviceError

    widget = _widget(viewer, str(tiny_model_dir), viewer.add_image(bright_square_scan(0), name="X"))
    segment_and_settle(qtbot, widget)
    low, high = _two_thresholds(widget)
    segment = _gated(segment_module.segment_job)
    monkeypatch.setattr(segment_module, "segment_job", segment)
    widget.segment_button.clicked()
    assert segment.started.wait(10)
    runs = []

    def fails_once(*args, stop):
        runs.append(args)
        if len(runs) == 1:
            raise DeviceError("out of memory (simulated)")
        yield from workers_module.cleanup_job(*args, stop=stop)

    cleanup = _gated(fails_once)
    monkeypatch.setattr(segment_module, "cleanup_job", cleanup)
    widget.cleanup.threshold.value = low  # a clean-up of the mask on screen, which will fail
    assert cleanup.started.wait(10)
    segment.gate.set()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)  # the new mask, made before `low`
    cleanup.gate.set()
    settle(qtbot, widget)
    assert notes["error"] == ["out of memory (simulated)"] and notes["warning"] == []
    assert widget.cleanup.threshold.value == low
    np.testing.assert_array_equal(widget.prediction_layer().data, _as_the_controls_say(widget))


def test_a_correction_session_built_after_a_clean_up_failed_keeps_the_mask_s_setting(qtbot, viewer, notes,
                                                                                    tiny_click_model, monkeypatch):
    """The session applied the setting that failed once it was built, under controls back at the mask's own."""
    from napari_lgg_unet.engine.errors import DeviceError

    widget = _widget(viewer, tiny_click_model, viewer.add_image(bright_square_scan(0), name="X"))
    segment_and_settle(qtbot, widget)
    before, mask = widget.cleanup.config(), np.array(widget.prediction_layer().data, copy=True)

    def out_of_memory(*args, stop):
        raise DeviceError("out of memory (simulated)")
        yield

    monkeypatch.setattr(segment_module, "cleanup_job", out_of_memory)
    widget.cleanup.threshold.value = _two_thresholds(widget)[0]
    settle(qtbot, widget)
    widget.correct.value = True
    qtbot.waitUntil(lambda: widget.corrections.session is not None, timeout=30_000)
    settle(qtbot, widget)
    assert widget.cleanup.config() == before and widget.corrections.session.postprocess == before
    np.testing.assert_array_equal(widget.prediction_layer().data, mask)
    assert notes["error"] == ["out of memory (simulated)"]


def test_an_image_deleted_while_a_click_is_computed_leaves_the_clicks_of_the_mask_left(qtbot, viewer, notes,
                                                                                     tiny_click_model, monkeypatch):
    """The clicks layer, left with the mask, kept the point of the click being computed: its result was dropped, so
    the point showed a click the mask never got."""
    widget, mask, gate, _ = _click_shown_then_one_held(qtbot, viewer, tiny_click_model, monkeypatch)
    image = widget._source
    viewer.layers.remove(image)
    gate.set()
    settle(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == ["X tumour", "X clicks"]
    np.testing.assert_allclose(owned_layer(viewer, image, "clicks").data, [(1.0, 30.0, 30.0)])
    np.testing.assert_array_equal(owned_layer(viewer, image, "tumour").data, mask)
    assert notes["error"] == []


def _mask_left_of_a_deleted_image(qtbot, viewer, model: str, with_click: bool):
    """A segmentation (corrected with a click or not) whose image the user deleted, keeping its tumour layer; the
    widget, that layer, its data and the clean-up it was made with."""
    if with_click:
        widget = _corrections_ready(qtbot, viewer, model)
        widget.corrections.add_click(np.asarray((1.0, 30.0, 30.0)), True)
        settle(qtbot, widget)
    else:
        widget = _widget(viewer, model, viewer.add_image(bright_square_scan(0), name="X"))
        segment_and_settle(qtbot, widget)
    viewer.layers.remove(widget._source)
    layer = widget.prediction_layer()
    return widget, layer, np.array(layer.data, copy=True), widget.cleanup.config()


@pytest.mark.parametrize("with_click", [False, True])
def test_a_clean_up_of_the_mask_left_of_a_deleted_image_is_refused_and_the_controls_show_its_own(
        qtbot, viewer, notes, tiny_click_model, with_click):
    """The controls moved and changed nothing, over a mask made with another setting, and said nothing. A mask
    corrected with clicks needs their session to be cleaned up again, and it ended with the image."""
    widget, layer, mask, before = _mask_left_of_a_deleted_image(qtbot, viewer, tiny_click_model, with_click)
    low, _ = _two_thresholds(widget)
    widget.cleanup.threshold.value = low
    settle(qtbot, widget)
    assert widget.cleanup.config() == before
    np.testing.assert_array_equal(layer.data, mask)
    assert len(notes["warning"]) == 1 and "'X' was deleted, so 'X tumour' keeps" in notes["warning"][0]
    assert notes["error"] == []
    viewer.layers.remove(layer)  # no mask left: the controls are the next Segment's again
    widget.cleanup.threshold.value = low
    assert widget.cleanup.threshold.value == low and len(notes["warning"]) == 1


@pytest.mark.parametrize("with_session", [False, True])
def test_an_image_deleted_while_its_clean_up_runs_puts_the_controls_back_to_the_mask_left(qtbot, viewer, notes,
                                                                                         tiny_click_model,
                                                                                         monkeypatch, with_session):
    """The clean-up's result was dropped with the image, and the controls kept showing its setting."""
    widget, module, name = _segmented_with_its_cleanup_job(qtbot, viewer, tiny_click_model, with_session)
    job = _gated(getattr(module, name))
    monkeypatch.setattr(module, name, job)
    before, mask = widget.cleanup.config(), np.array(widget.prediction_layer().data, copy=True)
    widget.cleanup.threshold.value = _two_thresholds(widget)[0]
    assert job.started.wait(10)
    viewer.layers.remove(widget._source)
    job.gate.set()
    settle(qtbot, widget)
    assert widget.cleanup.config() == before
    np.testing.assert_array_equal(widget.prediction_layer().data, mask)
    assert len(notes["warning"]) == 1 and "'X' was deleted" in notes["warning"][0]
    assert notes["error"] == []


def test_a_model_chosen_while_the_mask_of_a_deleted_image_is_left_is_said_once(qtbot, viewer, notes,
                                                                               tiny_click_model, tmp_path):
    """Its settings came one control at a time, each refused and said on its own."""
    widget, layer, mask, before = _mask_left_of_a_deleted_image(qtbot, viewer, tiny_click_model, False)
    calibrated = {"threshold": 0.35, "min_size": 12, "keep_largest": True, "min_confidence": 0.8}
    widget.model_folder.value = model_copy(Path(tiny_click_model), tmp_path / "calibrated", "postprocess",
                                           value=calibrated)
    settle(qtbot, widget)
    assert widget.cleanup.config() == before
    np.testing.assert_array_equal(layer.data, mask)
    assert len(notes["warning"]) == 1 and notes["error"] == []


def test_a_segmentation_ending_without_a_result_puts_the_controls_back_to_the_mask_left(qtbot, viewer, notes,
                                                                                       tiny_click_model,
                                                                                       monkeypatch):
    """While it runs the controls are its setting; it failed, and they showed a setting the mask left of the
    deleted image was not made with."""
    from napari_lgg_unet.engine.errors import DeviceError

    widget, layer, mask, before = _mask_left_of_a_deleted_image(qtbot, viewer, tiny_click_model, False)

    def out_of_memory(*args, stop):
        raise DeviceError("out of memory (simulated)")
        yield

    job = _gated(out_of_memory)
    monkeypatch.setattr(segment_module, "segment_job", job)
    widget.image.value = viewer.add_image(bright_square_scan(1), name="Y")
    widget.segment_button.clicked()
    assert job.started.wait(10)
    low, _ = _two_thresholds(widget)
    widget.cleanup.threshold.value = low  # for the segmentation running
    assert widget.cleanup.threshold.value == low and notes["warning"] == []
    job.gate.set()
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    assert widget.cleanup.config() == before
    np.testing.assert_array_equal(layer.data, mask)
    assert notes["error"] == ["out of memory (simulated)"] and len(notes["warning"]) == 1


@pytest.mark.parametrize("ends", ["shown", "cancelled"])
@pytest.mark.parametrize("held", ["replaying", "replayed"])
def test_segment_pressed_during_a_replay_stops_it_at_once_and_never_shows_its_mask(qtbot, viewer, notes,
                                                                                  tiny_click_model, monkeypatch,
                                                                                  held, ends):
    """A new clean-up replays the session's clicks (minutes on a large scan): it went on beside the new segmentation
    (both on the CPU) until that one's result came, and a mask it finished meanwhile was shown. It is asked to stop
    as Segment is pressed, and shows nothing, whether held before its replay or after it. A segmentation that ends
    without a result leaves the mask to the controls' setting, which it then gets."""
    widget = _corrections_ready(qtbot, viewer, tiny_click_model)
    widget.corrections.add_click(np.asarray((1.0, 30.0, 30.0)), True)
    settle(qtbot, widget)
    mask = np.array(widget.prediction_layer().data, copy=True)
    module, name = ((corrections_module, "session_cleanup_job") if held == "replaying"
                    else (corrections_module, "corrected_view"))
    replay = _gated(getattr(module, name)) if held == "replaying" else _gated_call(getattr(module, name))
    monkeypatch.setattr(module, name, replay)
    widget.cleanup.threshold.value = _two_thresholds(widget)[0]
    assert replay.started.wait(10)
    segment = _gated(segment_module.segment_job)
    monkeypatch.setattr(segment_module, "segment_job", segment)
    widget.segment_button.clicked()
    assert segment.started.wait(10) and widget.corrections.job.stop_asked
    replay.gate.set()
    qtbot.waitUntil(lambda: not widget.corrections.job.running, timeout=30_000)
    qtbot.wait(100)
    np.testing.assert_array_equal(widget.prediction_layer().data, mask)
    if ends == "cancelled":
        widget.cancel_button.clicked()
    segment.gate.set()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    settle(qtbot, widget)
    shown, session = np.asarray(widget.prediction_layer().data), widget.corrections.session
    if ends == "cancelled":  # the session's own mask, the click kept, at the controls' setting
        assert session.postprocess == widget.cleanup.config() and len(session.clicks) == 1
        np.testing.assert_array_equal(shown, session.mask.reshape(shown.shape))
    else:
        np.testing.assert_array_equal(shown, _as_the_controls_say(widget))
    assert notes["error"] == []


@pytest.mark.parametrize("with_session", [False, True])
def test_closing_the_dock_while_a_new_setting_is_applied_leaves_the_controls_at_the_mask_s_own(
        qtbot, viewer, notes, tiny_click_model, monkeypatch, with_session):
    """The controls showed the newest setting over a mask made with an older one: the replay stopped by the close
    showed nothing, and a plain clean-up showed the setting it had started with."""
    widget, module, name = _segmented_with_its_cleanup_job(qtbot, viewer, tiny_click_model, with_session)
    before = widget.cleanup.config()
    low, high = _two_thresholds(widget)
    job = _gated(getattr(module, name))
    monkeypatch.setattr(module, name, job)
    widget.cleanup.threshold.value = low
    assert job.started.wait(10)
    widget.cleanup.threshold.value = high  # waits for the one running
    viewer.window.remove_dock_widget(widget.native)
    job.gate.set()
    qtbot.waitUntil(lambda: not widget.cleanup_job.running and not widget.corrections.job.running, timeout=30_000)
    qtbot.wait(200)
    shown = widget.cleanup.config()
    assert shown == (before if with_session else replace(before, threshold=low))
    np.testing.assert_array_equal(widget.prediction_layer().data, postprocess(widget._probability, shown))
    assert notes["error"] == []
