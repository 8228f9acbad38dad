"""The job helper both widgets share: any error inside a job is one notification and the widget is usable again;
a job stops when its widget is closed."""

from __future__ import annotations

import threading
import time
import warnings

import numpy as np
import pytest
from napari._qt.qthreading import wait_for_workers_to_quit  # what napari connects to aboutToQuit

from napari_lgg_unet.engine.device import OOM_ADVICE
from napari_lgg_unet.engine.errors import InputError, InputWarning
from napari_lgg_unet.engine.predict import SegmentProgress
from napari_lgg_unet.widgets import segment as segment_module, train as train_module
from napari_lgg_unet.widgets.job import JobFailed, JobRunner, guarded
from napari_lgg_unet.widgets.lazy import Loading

from widget_helpers import assert_unchanged, dock, snapshot, wait_for_stop

# RuntimeError and its subclasses are what napari's thread worker used to swallow (see widgets/job.py).
ERRORS = [
    (RuntimeError("cuDNN failed"), "RuntimeError: cuDNN failed"),
    (RecursionError("maximum recursion depth exceeded"), "RecursionError: maximum recursion depth exceeded"),
    (NotImplementedError("no kernel for this device"), "NotImplementedError: no kernel for this device"),
    (MemoryError(), OOM_ADVICE),
    (InputError("the scan holds NaN values"), "the scan holds NaN values"),
    (KeyboardInterrupt(), "KeyboardInterrupt"),
]


def failing_job(error: BaseException, first_item):
    def job(*args, stop):
        yield first_item
        raise error

    return job


@pytest.mark.parametrize("error", [error for error, _ in ERRORS], ids=lambda e: type(e).__name__)
def test_guarded_turns_any_error_into_a_last_item(error):
    assert list(guarded(failing_job(error, 1), stop=lambda: False)) == [1, JobFailed(error)]


def test_guarded_passes_items_and_the_stop_callable_through():
    def job(count, *, stop):
        for n in range(count):
            if stop():
                return
            yield n

    assert list(guarded(job, 3, stop=lambda: False)) == [0, 1, 2]
    assert list(guarded(job, 3, stop=lambda: True)) == []


def test_any_error_inside_the_segment_job_is_a_notification_and_the_widget_works_again(
    qtbot, viewer, notes, monkeypatch
):
    widget = dock(viewer, "Segment tumour")
    viewer.add_image(np.random.default_rng(0).random((2, 32, 32), dtype=np.float32), name="scan")
    before = snapshot(viewer)
    for error, message in ERRORS:  # one after the other: each run starts because the previous one ended
        monkeypatch.setattr(segment_module, "segment_job", failing_job(error, SegmentProgress(0, 2)))
        widget.segment_button.clicked()
        qtbot.waitUntil(lambda: not widget.running, timeout=10_000)
        assert notes["error"][-1] == message
        assert widget.segment_button.enabled and not widget.cancel_button.enabled
    assert notes["error"] == [message for _, message in ERRORS]
    assert_unchanged(before, snapshot(viewer))


def test_any_error_inside_the_training_job_is_a_notification_and_the_widget_works_again(
    qtbot, viewer, notes, monkeypatch, tmp_path
):
    widget = dock(viewer, "Train U-Net")
    viewer.add_image(np.random.default_rng(0).random((2, 32, 32), dtype=np.float32), name="scan")
    viewer.add_labels(np.ones((2, 32, 32), np.uint8), name="labels")
    widget.output.value = tmp_path
    before = snapshot(viewer)
    for error, message in ERRORS:
        monkeypatch.setattr(train_module, "training_job", failing_job(error, None))
        widget.train_button.clicked()
        qtbot.waitUntil(lambda: not widget.running, timeout=10_000)
        assert notes["error"][-1] == message
        assert widget.train_button.text == "Train" and widget.train_button.enabled
    assert notes["error"] == [message for _, message in ERRORS]
    assert notes["info"] == []  # no model was offered: none reached the disk
    assert_unchanged(before, snapshot(viewer))


def test_an_error_while_showing_a_result_is_a_notification_and_stops_the_job(qtbot, viewer, notes):
    widget = dock(viewer, "Segment tumour")

    def broken_display(item):
        raise ValueError("cannot draw this")

    widget.job.start(wait_for_stop, on_item=broken_display)
    qtbot.waitUntil(lambda: not widget.running, timeout=10_000)
    assert notes["error"] == ["ValueError: cannot draw this"]
    assert widget.segment_button.enabled


@pytest.mark.parametrize("in_thread", [True, False], ids=["in a thread", "inline"])
def test_an_input_warning_inside_a_job_is_a_warning_notification_and_the_job_goes_on(
    qtbot, viewer, notes, monkeypatch, in_thread
):
    monkeypatch.setattr(JobRunner, "in_thread", in_thread)
    widget, items = dock(viewer, "Segment tumour"), []

    def job(*, stop):
        warnings.warn(InputWarning("the precision cannot be remembered"))
        warnings.warn(UserWarning("a library's note"))  # not the user's to act on: no notification
        yield 1

    widget.job.start(job, on_item=items.append)
    qtbot.waitUntil(lambda: not widget.running, timeout=10_000)
    assert notes["warning"] == ["the precision cannot be remembered"]
    assert items == [1] and notes["error"] == [] and widget.segment_button.enabled


@pytest.mark.parametrize("name", ["Segment tumour", "Train U-Net"])
def test_closing_the_dock_widget_stops_its_job(qtbot, viewer, name):
    widget = dock(viewer, name)
    items = []
    widget.job.start(wait_for_stop, on_item=items.append)
    qtbot.waitUntil(lambda: items == ["started"], timeout=10_000)
    viewer.window.remove_dock_widget(widget.native)  # what the dock's close button does
    qtbot.waitUntil(lambda: not widget.running, timeout=10_000)


WIDGETS = {"Segment tumour": ("napari_lgg_unet.widgets.segment", "SegmentWidget"),
           "Train U-Net": ("napari_lgg_unet.widgets.train", "TrainWidget")}


@pytest.mark.parametrize("name", list(WIDGETS))
def test_closing_the_dock_of_a_widget_shown_by_the_loading_placeholder_stops_its_job(qtbot, viewer, name):
    """The first dock of a session is the placeholder (widgets/lazy.py); napari's close button takes the placeholder,
    not the widget in it, out of the dock: training went on to its last epoch, unseen, after the dock was closed."""
    placeholder = Loading(viewer, *WIDGETS[name])
    viewer.window.add_dock_widget(placeholder, name=name)
    qtbot.waitUntil(lambda: placeholder.widget is not None, timeout=60_000)
    widget, items = placeholder.widget, []
    widget.job.start(wait_for_stop, on_item=items.append)
    qtbot.waitUntil(lambda: items == ["started"], timeout=10_000)
    viewer.window.remove_dock_widget(placeholder)  # what the dock's close button does
    qtbot.waitUntil(lambda: not widget.running, timeout=10_000)


def test_a_placeholder_closed_while_it_loads_builds_no_widget(qtbot, viewer):
    placeholder = Loading(viewer, *WIDGETS["Segment tumour"])
    viewer.window.add_dock_widget(placeholder, name="Segment tumour")
    viewer.window.remove_dock_widget(placeholder)  # before the import's outcome reaches napari's thread
    qtbot.waitUntil(lambda: not any(thread.name == "load SegmentWidget" for thread in threading.enumerate()),
                    timeout=60_000)
    qtbot.wait(100)  # the import's outcome is delivered on napari's thread
    assert placeholder.widget is None  # it would listen to the viewer (and take its clicks), never seen


def test_a_placeholder_whose_viewer_closed_while_it_loads_builds_no_widget(qtbot, make_napari_viewer):
    """Building the widget in the deleted placeholder raised (a QLabel of it was deleted) once PyTorch was there."""
    viewer = make_napari_viewer()
    placeholder = Loading(viewer, *WIDGETS["Segment tumour"])
    viewer.window.add_dock_widget(placeholder, name="Segment tumour")
    with qtbot.waitSignal(placeholder.destroyed, timeout=10_000):
        viewer.close()  # before the import's outcome reaches napari's thread
    qtbot.waitUntil(lambda: not any(thread.name == "load SegmentWidget" for thread in threading.enumerate()),
                    timeout=60_000)
    qtbot.wait(100)  # pytest-qt fails the test on an exception raised in this delivery
    assert placeholder.widget is None


def test_a_destroyed_widget_stops_its_job_and_receives_nothing_more(qtbot, viewer):
    widget = segment_module.SegmentWidget(viewer)  # never docked: only destruction can stop it
    seen, stopped = [], []

    def job(*, stop):
        yield "started"
        while not stop():
            time.sleep(0.005)
        stopped.append(True)
        yield "after the end"

    widget.job.start(job, on_item=seen.append)
    qtbot.waitUntil(lambda: seen == ["started"], timeout=10_000)
    with qtbot.waitSignal(widget.native.destroyed, timeout=10_000):
        widget.native.deleteLater()
    qtbot.waitUntil(lambda: stopped == [True], timeout=10_000)
    qtbot.waitUntil(lambda: not widget.job.running, timeout=10_000)
    assert seen == ["started"]


def test_a_job_whose_worker_napari_quits_is_closed_in_its_thread_before_the_wait_ends(qtbot, viewer):
    """At quit napari asks every worker to quit and waits for their threads; the job's clean-up must run then, in its
    thread, not whenever the generator is collected (see widgets/job.py)."""
    widget = dock(viewer, "Segment tumour")
    seen, cleaned_up_in = [], []

    def job(*, stop):
        try:
            while True:  # a job between two checks of `stop`: only the worker's quit can end it here
                yield "working"
                time.sleep(0.005)
        finally:
            cleaned_up_in.append(threading.current_thread())

    widget.job.start(job, on_item=seen.append)
    qtbot.waitUntil(lambda: len(seen) > 0, timeout=10_000)
    wait_for_workers_to_quit()  # handles no Qt event: a clean-up queued to this thread would not have run yet
    assert len(cleaned_up_in) == 1 and cleaned_up_in[0] is not threading.main_thread()
    qtbot.waitUntil(lambda: not widget.running, timeout=10_000)  # `finished` still reaches the widget


def test_a_job_whose_clean_up_fails_when_napari_quits_is_one_line_on_stderr_naming_its_error(qtbot, viewer, capfd):
    """The app is quitting, so no notification can show; raised out of the worker's Qt callback the error would abort
    the process under Python's default error hook. It is one line naming the job's own error."""
    widget = dock(viewer, "Segment tumour")
    seen = []

    def job(*, stop):
        try:
            while True:
                yield "working"
                time.sleep(0.005)
        finally:
            raise OSError(28, "No space left on device")

    widget.job.start(job, on_item=seen.append)
    qtbot.waitUntil(lambda: len(seen) > 0, timeout=10_000)
    wait_for_workers_to_quit()
    assert ("lgg-unet: a background job failed while it was closed at quit: OSError: [Errno 28] No space left on "
            "device") in capfd.readouterr().err
    qtbot.waitUntil(lambda: not widget.running, timeout=10_000)


def test_segment_drops_a_result_whose_image_data_was_replaced_meanwhile(viewer, notes, qtbot, tiny_model_dir):
    """A race between the worker thread and the GUI: real threads, so the result arrives after the data changed."""
    segment = dock(viewer, "Segment tumour")
    segment.model.value = "folder"
    segment.model_folder.value = tiny_model_dir
    layer = viewer.add_image(np.random.default_rng(0).random((3, 32, 32), dtype=np.float32), name="scan")
    segment.image.value = layer
    segment.segment_button.clicked()
    layer.data = np.zeros((2, 40, 48), np.float32)  # before the worker's result can reach the GUI thread
    before = snapshot(viewer)
    qtbot.waitUntil(lambda: not segment.running, timeout=60_000)
    assert any("was replaced while it was being segmented" in message for message in notes["warning"])
    assert_unchanged(before, snapshot(viewer))
    assert segment.prediction_layer() is None
