"""The Train widget: a tiny real training run, Stop, the model reaching the Segment widget, a responsive viewer."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
import pytest
from napari._qt.qthreading import wait_for_workers_to_quit  # what napari connects to aboutToQuit
from qtpy.QtCore import Qt

from napari_lgg_unet.engine import dicom
from napari_lgg_unet.engine.model import load_model, resolve_model_path
from napari_lgg_unet.engine.run_folder import RunFolder
from napari_lgg_unet.engine.train import TrainConfig
from napari_lgg_unet.sample_data import sample_patient
from napari_lgg_unet.widgets import train as train_module, workers
from napari_lgg_unet.widgets.session_models import SCRATCH_CHOICE, session_models

from dicom_files import write_studies
from widget_helpers import MAX_EVENT_LOOP_GAP, EventLoopProbe, dock, wait_for_stop

PATIENT = "TCGA_CS_6665_20010817"


@pytest.fixture
def train_widget(viewer, tmp_path):
    (image, _, _), (mask, _, _) = sample_patient()  # the patient that ships with the package
    viewer.add_image(image[6:16], name=PATIENT, rgb=True)
    viewer.add_labels(mask[6:16], name=f"{PATIENT} mask")
    widget = dock(viewer, "Train U-Net")
    widget.settings.image_size.value = 64
    widget.settings.batch_size.value = 4
    widget.settings.epochs.value = 2
    widget.settings.val_fraction.value = 0.2
    widget.output.value = tmp_path
    widget.steps_per_epoch = 2
    return widget


def test_a_tiny_training_run_finishes_and_its_model_appears_in_the_segment_widget(qtbot, viewer, train_widget, notes):
    segment = dock(viewer, "Segment tumour")
    widget = train_widget
    row = widget.pairs[0]
    assert (row.image_layer.value.name, row.labels_layer.value.name) == (PATIENT, f"{PATIENT} mask")
    with EventLoopProbe() as probe:
        widget.train_button.clicked()
        assert widget.train_button.text == "Stop"
        qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    print(f"\nwhile training: {probe.report()}")
    assert probe.max_gap < MAX_EVENT_LOOP_GAP, probe.report()
    assert notes["error"] == []
    assert widget.train_button.text == "Train"
    assert [record.epoch for record in widget.plot.history] == [1, 2]
    assert widget.plot.history[-1].main_validation is not None
    assert widget.epoch_progress.value == 2
    assert session_models.items() == [(widget.model_dir.name, widget.model_dir)]
    assert str(widget.model_dir) in segment.model.choices
    load_model(widget.model_dir)


def test_stop_during_training_ends_it_and_keeps_a_loadable_model(qtbot, train_widget, notes):
    widget = train_widget
    widget.settings.epochs.value = 50
    widget.steps_per_epoch = 3
    widget.train_button.clicked()
    qtbot.waitUntil(lambda: widget.epoch_progress.value >= 1, timeout=120_000)  # one epoch saved a model
    widget.train_button.clicked()
    assert widget.train_button.text == "Stopping..."
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert notes["error"] == []
    assert widget.status.value.startswith("stopped")
    assert len(widget.plot.history) < 50
    assert load_model(widget.model_dir).config.preprocess.image_size == 64
    assert session_models.items() == [(widget.model_dir.name, widget.model_dir)]


def test_stop_pressed_while_the_run_prepares_leaves_no_run_folder_behind(qtbot, train_widget, notes, tmp_path):
    """Stop (or a closed dock) before the first epoch ended left a `run-*` folder holding only `.lock` in the user's
    output folder each time; quitting napari at that point already removed it."""
    mine = tmp_path / "notes.txt"
    mine.write_text("my notes")
    train_widget.train_button.clicked()
    assert train_widget.status.value == "preparing..."
    train_widget.train_button.clicked()
    qtbot.waitUntil(lambda: not train_widget.running, timeout=120_000)
    assert train_widget.status.value == "stopped: no epoch finished" and notes["error"] == []
    assert list(tmp_path.iterdir()) == [mine] and mine.read_text() == "my notes"
    assert session_models.items() == [] and train_widget.train_button.text == "Train"


def test_a_new_run_shows_no_progress_while_it_prepares_not_the_last_runs_end(train_widget, inline_jobs, monkeypatch):
    """The bars kept the last run's end (2 of 2 epochs, all steps) beside "preparing...", for as long as the scans
    took to prepare, and for good beside "stopped: no epoch finished" when Stop came before the first step."""
    train_widget.train_button.clicked()
    assert (train_widget.epoch_progress.value, train_widget.step_progress.value) == (2, 2)
    seen = []

    def preparing(*_, stop):
        seen.append((train_widget.status.value, train_widget.epoch_progress.value, train_widget.step_progress.value))
        yield from ()

    monkeypatch.setattr(train_module, "training_job", preparing)
    train_widget.train_button.clicked()
    assert seen == [("preparing...", 0, 0)]


def test_stop_called_with_no_run_going_leaves_the_widget_ready_to_train(train_widget, notes, inline_jobs):
    train_widget.stop()  # e.g. a script's, after its run ended
    assert train_widget.train_button.text == "Train" and train_widget.train_button.enabled
    train_widget.train_button.clicked()
    assert notes["error"] == [] and train_widget.status.value.startswith("finished")


def test_a_double_clicked_train_button_starts_a_run_and_does_not_stop_it(qtbot, train_widget, monkeypatch):
    """The window system reports a double-click as a click, then a double-click event that Qt turns into a second
    press: the first made Train into Stop, and the second stopped the run before its first step."""
    monkeypatch.setattr(train_module, "training_job", lambda *_, stop: wait_for_stop(stop=stop))
    button, left = train_widget.train_button.native, Qt.MouseButton.LeftButton
    qtbot.mousePress(button, left)
    qtbot.mouseRelease(button, left)
    qtbot.mouseDClick(button, left)
    qtbot.mouseRelease(button, left)
    assert train_widget.running and not train_widget.job.stop_asked and train_widget.train_button.text == "Stop"
    qtbot.mouseClick(button, left)  # a click of its own still stops it
    qtbot.waitUntil(lambda: not train_widget.running, timeout=10_000)
    assert train_widget.train_button.text == "Train"


def test_two_train_widgets_pressed_within_one_second_train_into_two_run_folders(
        qtbot, viewer, train_widget, monkeypatch):
    """A run's worker makes its folder only once its scans are listed: two widgets (two viewers) pressed within that
    second named one folder, and the later run was refused as the folder was in use, or took the other's model."""
    monkeypatch.setattr(train_module.time, "strftime", lambda *_: "20261205-120000")
    monkeypatch.setattr(train_module, "training_job", lambda *_, stop: wait_for_stop(stop=stop))  # makes no folder
    other = train_module.TrainWidget(viewer)
    viewer.window.add_dock_widget(other, name="Train U-Net (2)")
    other.output.value = train_widget.output.value
    for widget in (train_widget, other):
        widget.train_button.clicked()
    assert train_widget.running and other.running
    assert (train_widget.model_dir.name, other.model_dir.name) == ("run-20261205-120000", "run-20261205-120000-2")
    for widget in (train_widget, other):
        widget.stop()
    qtbot.waitUntil(lambda: not train_widget.running and not other.running, timeout=10_000)


def test_a_run_that_fails_in_its_worker_says_failed_not_its_last_progress(viewer, train_widget, notes, inline_jobs):
    image = train_widget.pairs[0].image_layer.value
    image.data = np.where(np.arange(image.data.shape[1])[:, None, None] < 5, np.nan, image.data.astype(np.float32))
    train_widget.train_button.clicked()  # NaN is found where the scan is prepared, in the worker
    assert notes["error"] == [f"{PATIENT}: the scan contains NaN or infinite values; replace them (e.g. with 0) "
                              "before training"]
    assert train_widget.status.value == "failed (see the error message)"
    assert train_widget.train_button.text == "Train" and not train_widget.running


@pytest.mark.parametrize("rgb", [False, True])
def test_a_2d_image_is_trained_with_a_warning_that_nothing_is_validated_and_what_chooses_the_model(
        viewer, tmp_path, notes, inline_jobs, rgb):
    """Asked to validate, it did not; only the last status's "(training loss ...)" said so."""
    (image, _, _), (mask, _, _) = sample_patient()
    tumour = int(np.argmax(mask.reshape(len(mask), -1).sum(axis=1)))
    viewer.add_image(image[tumour] if rgb else image[tumour, ..., 1], name="a slice", rgb=rgb)
    viewer.add_labels(mask[tumour], name="its labels")
    widget = dock(viewer, "Train U-Net")
    widget.settings.image_size.value, widget.settings.batch_size.value, widget.settings.epochs.value = 64, 2, 1
    widget.settings.val_fraction.value = 0.2
    widget.output.value, widget.steps_per_epoch = tmp_path, 1
    widget.train_button.clicked()
    assert notes["error"] == []
    assert notes["warning"] == ["no validation although the validation fraction is 0.2: there is one scan with one "
                                "slice to learn from, and validation needs a second scan (patients are split whole) "
                                "or a second labelled slice of this scan (held out from training); the best epoch is "
                                "chosen by training loss"]
    assert "(training loss" in widget.status.value


def test_a_kaggle_folder_alone_is_a_training_source_with_all_its_slices(qtbot, viewer, lgg_root, tmp_path, notes):
    """'Skip slices without labels' (on by default) is for painted layers: a folder's masks label every slice, and
    its slices without tumour are what teaches the model where there is none."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("TCGA_CS_4941_19960909", "TCGA_CS_4942_19970222"):
        (data / name).symlink_to(lgg_root / name)
    widget = dock(viewer, "Train U-Net")  # no layers open: the folder is the only source
    widget.folder.value = data
    widget.settings.image_size.value, widget.settings.batch_size.value, widget.settings.epochs.value = 64, 4, 1
    widget.settings.val_fraction.value = 0.5
    widget.output.value = tmp_path / "models"
    widget.steps_per_epoch = 2
    widget.train_button.clicked()
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    assert notes["error"] == []
    training = load_model(widget.model_dir).config.training
    assert (sorted(training.patients("train") + training.patients("validation"))
            == sorted(p.name for p in data.iterdir()))
    assert widget.settings.skip_unlabelled.value
    [patient] = training.patients("train")
    assert training.train_slices == len(list((data / patient).glob("*_mask.tif")))  # 20, 6 of them with tumour


def test_the_settings_start_at_the_engines_training_defaults(viewer):
    config, defaults = dock(viewer, "Train U-Net").train_config(), TrainConfig()
    for name in ("epochs", "batch_size", "lr", "val_fraction", "image_size"):
        assert getattr(config, name) == getattr(defaults, name), name
    assert config.augment.enabled == defaults.augment.enabled
    assert config.workers == 0  # loader processes do not mix with the GUI's threads


def test_scratch_picked_after_a_model_folder_hides_the_folder_field_and_trains_from_scratch(viewer):
    """Scratch's value was None, which magicgui reports to no listener in a box that is not nullable: the folder
    field stayed on screen under 'Scratch (untrained)'."""
    train = dock(viewer, "Train U-Net")
    train.start_from.value = "folder"
    assert not train.start_folder.native.isHidden()
    train.start_from.native.setCurrentIndex(train.start_from.native.findText(SCRATCH_CHOICE[0]))
    assert train.start_folder.native.isHidden()
    assert train.train_config().init is None


def test_a_model_trained_in_this_session_is_offered_to_start_from_at_once(viewer, tmp_path):
    """It was listed only after the next layer event (a layer added, removed, renamed or moved)."""
    train = dock(viewer, "Train U-Net")
    session_models.add("run-1", tmp_path / "run-1")
    assert str(tmp_path / "run-1") in train.start_from.choices


def test_renaming_a_pairs_layers_keeps_the_pair(viewer, train_widget):
    """napari resets the layer lists on a rename: the pair must keep its layers, not take the first of each list."""
    viewer.add_image(sample_patient()[0][0][:4], name="another scan", rgb=True)
    viewer.add_labels(sample_patient()[1][0][:4], name="other labels")
    row = train_widget.pairs[0]
    row.image_layer.value, row.labels_layer.value = viewer.layers["another scan"], viewer.layers["other labels"]
    viewer.layers["other labels"].name = "my labels"
    viewer.layers["another scan"].name = "my scan"
    assert (row.image_layer.value.name, row.labels_layer.value.name) == ("my scan", "my labels")


def test_a_pair_whose_layer_is_deleted_shows_none_not_another_layer(viewer, train_widget, notes, qtbot):
    row = train_widget.pairs[0]
    assert row.image_layer.value is viewer.layers[PATIENT]  # a new pair picks up the open scan
    other = viewer.add_image(sample_patient()[0][0][6:16], name="another scan", rgb=True)
    viewer.layers.remove(PATIENT)
    assert row.image_layer.value is None  # not "another scan", which would train on the deleted scan's labels
    viewer.add_image(np.array(other.data), name="a third scan", rgb=True)
    assert row.image_layer.value is None  # nor a layer opened later: the pair is the user's to fill again
    train_widget.train_button.clicked()
    assert notes["error"] == ["pair 1: choose both an image layer and a labels layer"]


def test_an_image_in_two_pairs_is_refused_before_training_naming_the_pairs(viewer, train_widget, notes, tmp_path):
    viewer.add_labels(np.array(viewer.layers[f"{PATIENT} mask"].data), name="more labels")
    train_widget.add_pair.clicked()
    second = train_widget.pairs[1]
    second.image_layer.value, second.labels_layer.value = viewer.layers[PATIENT], viewer.layers["more labels"]
    train_widget.train_button.clicked()
    assert notes["error"] == [f"pairs 1 and 2 both train on '{PATIENT}': a scan is trained on once, so paint all its "
                              "tumour in one labels layer and remove the other pair"]
    assert not train_widget.running and list(tmp_path.iterdir()) == []


def test_labels_in_two_pairs_are_refused_before_training_naming_the_pairs(viewer, train_widget, notes, tmp_path):
    """A new pair starts with the first labels layer: a pair whose image alone was changed trained that scan on the
    tumour painted on another one, without a word."""
    image, _ = sample_patient()
    viewer.add_image(image[0][:10], name="another scan", rgb=True)
    train_widget.add_pair.clicked()
    second = train_widget.pairs[1]
    assert second.labels_layer.value is viewer.layers[f"{PATIENT} mask"]
    second.image_layer.value = viewer.layers["another scan"]
    train_widget.train_button.clicked()
    assert notes["error"] == [f"pairs 1 and 2 both use the labels '{PATIENT} mask': labels are painted on one scan, "
                              "so pick the labels painted on each pair's image (a new pair starts with the first "
                              "labels layer)"]
    assert not train_widget.running and list(tmp_path.iterdir()) == []


def test_labels_painted_on_planes_across_the_slices_are_a_warning_and_labels_painted_on_slices_are_not(
        viewer, train_widget, notes):
    """Painted with an axis rolled onto the slider (a sagittal plane of the scan here), every slice taught a one-voxel
    line of tumour and the tumour beside it as background, without a word."""
    row = train_widget.pairs[0]
    train_widget.training_pairs()
    assert notes["warning"] == []  # the sample's mask, painted slice by slice
    sagittal = np.zeros(row.labels_layer.value.data.shape, np.uint8)
    sagittal[2:8, 100:140, 128] = 1
    row.labels_layer.value = viewer.add_labels(sagittal, name="sagittal")
    train_widget.training_pairs()
    assert notes["warning"] == [
        "'sagittal' is painted on planes across the slices the model learns from (e.g. sagittal or coronal planes, "
        "with another axis on the slider): each slice holds a thin line of the tumour, and the tumour beside it trains "
        "as background; paint on the slices along the slider of napari's default axis order"]


def test_a_thin_line_painted_on_a_few_neighbouring_slices_is_not_a_warning(viewer, train_widget, notes):
    """A one-voxel line painted on three neighbouring slices lies in thin lines that touch the next slice, and was
    warned of as painted across the slices; that is a wide stroke through many."""
    row = train_widget.pairs[0]
    strokes = np.zeros(row.labels_layer.value.data.shape, np.uint8)
    strokes[4:7, 120, 100:140] = 1
    row.labels_layer.value = viewer.add_labels(strokes, name="strokes")
    train_widget.training_pairs()
    assert notes["warning"] == []


def _outlined(tumour: np.ndarray, width: int = 1) -> np.ndarray:
    """`tumour`'s outline on each slice, `width` voxels wide inside its edge, as a brush traces it."""
    from scipy import ndimage

    in_plane = ndimage.generate_binary_structure(2, 1)[None]
    return tumour & ~ndimage.binary_erosion(tumour, in_plane, iterations=width)


def _outline_of(tumour: np.ndarray, kind: str) -> np.ndarray:
    if kind == "a-brush-3-wide":
        return _outlined(tumour, 3)
    if kind == "each-slices-contour":
        return _outlined(tumour)
    strokes = np.zeros_like(tumour)
    if kind == "one-contour-on-six-slices":
        strokes[2:8] = tumour[tumour.sum(axis=(1, 2)).argmax()]
    else:  # a box of 21 x 40 voxels on three slices
        strokes[4:7, 120:141, 100:140] = True
    return _outlined(strokes)


@pytest.mark.parametrize("outline", ["one-contour-on-six-slices", "each-slices-contour", "a-brush-3-wide", "a-box"])
def test_a_tumour_outlined_on_its_slices_is_warned_of_as_outlined_not_as_painted_across_the_slices(
        viewer, train_widget, notes, outline):
    """A small tumour outlined alike on five slices or more lies in thin runs across them, and was warned of as painted
    on sagittal planes; outlined otherwise, it was not warned of at all, though its inside trains as background. The
    sample patient's own tumour here, as a user outlines it: its largest slice's contour drawn on six slices, each
    slice's contour (with a thin brush or one 3 voxels wide), and a box drawn on three slices."""
    row = train_widget.pairs[0]
    outlined = _outline_of(row.labels_layer.value.data > 0, outline)
    row.labels_layer.value = viewer.add_labels(outlined.astype(np.uint8), name="outlined")
    train_widget.training_pairs()
    [warning] = notes["warning"]
    assert re.fullmatch(r"'outlined' looks outlined, not filled: its strokes enclose \d+ unpainted voxels on its "
                        "slices, which train as background inside the tumour; fill each outline with napari's fill "
                        r"bucket \(the labels layer's fill mode, key F: click inside the outline, on each slice\)",
                        warning), warning


def test_an_image_layer_named_like_a_scan_of_the_folder_is_refused_before_the_folder_loads(
        viewer, train_widget, notes, tmp_path, sample_patient_dir, inline_jobs, monkeypatch):
    """It failed once every scan of the folder had loaded, with the engine's words, which say nothing of layers."""
    monkeypatch.setattr(workers, "load_scan", lambda *_, **__: pytest.fail("refused only after loading the folder"))
    train_widget.folder.value = sample_patient_dir.parent  # a folder holding the packaged patient, the layer's name
    train_widget.train_button.clicked()
    assert notes["error"] == [f"the image layer '{PATIENT}' has the name of a scan in {sample_patient_dir.parent}, "
                              "and names identify patients in the training split: rename the layer, or, if it is that "
                              "patient, train on it once (remove its pair or leave the folder out)"]
    assert train_widget.status.value == "failed (see the error message)"
    assert list(tmp_path.iterdir()) == [] and viewer.layers[PATIENT].name == PATIENT


def test_an_output_folder_that_is_a_file_is_refused_at_once_and_the_file_kept(train_widget, notes, tmp_path):
    mine = tmp_path / "notes.txt"
    mine.write_text("my notes")
    train_widget.output.value = mine
    train_widget.train_button.clicked()
    assert notes["error"] == [f"{mine} is a file, not a folder; choose another output folder"]
    assert not train_widget.running and mine.read_text() == "my notes"


def test_the_packaged_weights_folder_is_refused_as_output_naming_it(train_widget, notes):
    weights = resolve_model_path("default")
    train_widget.output.value = weights
    train_widget.train_button.clicked()
    assert len(notes["error"]) == 1 and f"nothing is written into its weights folder ({weights})" in notes["error"][0]
    assert not train_widget.running and not list(weights.glob("run-*"))


@pytest.mark.parametrize("epochs_done", [0, 1], ids=["before-any-model", "after-a-saved-model"])
def test_quitting_napari_during_training_lets_go_of_the_run_folder(qtbot, train_widget, notes, epochs_done):
    """napari's `aboutToQuit` quits every thread worker and waits for them: the training generator must be closed in
    its thread by then (lock released, the folder of a run that made nothing removed), not when it is collected."""
    widget = train_widget
    widget.settings.epochs.value = 50
    widget.steps_per_epoch = 3 if epochs_done else 1000  # 1000: the first epoch cannot end before the quit
    widget.train_button.clicked()
    qtbot.waitUntil(lambda: widget.epoch_progress.value >= epochs_done and widget.step_progress.value >= 1,
                    timeout=120_000)
    run = widget.model_dir
    wait_for_workers_to_quit()  # what napari does at quit; no Qt event is handled from here on
    if epochs_done:
        assert load_model(run).config.preprocess.image_size == 64
        with RunFolder(run).locked():  # another run may take the folder: the lock was let go
            pass
    else:
        assert not run.exists()  # not a folder holding only a stale lock


@pytest.mark.parametrize("layer", [PATIENT, f"{PATIENT} mask"], ids=["image", "labels"])
def test_a_lazy_layer_of_a_pair_is_read_in_the_worker_not_on_the_viewers_thread(qtbot, viewer, train_widget, notes,
                                                                                 layer):
    """A dask or zarr layer holds no voxels until read: the Train click read the whole scan on the viewer's thread
    (and stacked the sequences there), holding the viewer for as long as a large or remote scan takes to load, as
    Segment no longer does; the labels were read there too once the image no longer was. Dask's synchronous
    scheduler reads each chunk in the thread that asks for it."""
    dask, lazy_array = pytest.importorskip("dask"), pytest.importorskip("dask.array")
    readers: list[int] = []

    def read(block: np.ndarray) -> np.ndarray:
        readers.append(threading.get_ident())
        return block

    lazy = viewer.layers[layer]
    data = np.asarray(lazy.data)
    lazy.data = lazy_array.from_array(data, chunks=(1, *data.shape[1:])).map_blocks(read, dtype=data.dtype)
    with dask.config.set(scheduler="synchronous"):
        readers.clear()
        train_widget.train_button.clicked()
        on_click = list(readers)
        qtbot.waitUntil(lambda: not train_widget.running, timeout=120_000)
    assert threading.get_ident() not in on_click, f"the click read the {layer} layer on the viewer's thread"
    assert readers, f"the {layer} layer was never read"
    assert notes["error"] == [] and train_widget.status.value.startswith("finished")


def test_lazy_labels_checked_in_the_worker_are_notifications_and_leave_the_widget_ready(
        viewer, train_widget, notes, inline_jobs, tmp_path):
    """Lazy labels are checked where they are read, in the worker: empty ones end the run before it makes a folder,
    several values are merged with the same warning as labels in memory, and the widget can train again."""
    lazy_array = pytest.importorskip("dask.array")
    labels = viewer.layers[f"{PATIENT} mask"]
    painted = np.asarray(labels.data)
    labels.data = lazy_array.zeros(painted.shape, dtype=painted.dtype, chunks=painted.shape)
    train_widget.train_button.clicked()
    assert notes["error"] == [f"'{PATIENT} mask' is empty: nothing to learn; paint tumour on at least one slice"]
    assert not train_widget.running and train_widget.train_button.text == "Train" and list(tmp_path.iterdir()) == []
    several = (painted > 0).astype(np.uint8)
    tumour = np.flatnonzero(several)
    several.reshape(-1)[tumour[: len(tumour) // 2]] = 2
    labels.data = lazy_array.from_array(several, chunks=several.shape)
    train_widget.train_button.clicked()
    assert notes["warning"] == [f"'{PATIENT} mask' has several label values: all values above 0 are merged into "
                                "tumour"]
    assert len(notes["error"]) == 1 and train_widget.status.value.startswith("finished")


def test_stop_pressed_while_the_kaggle_folder_loads_ends_the_run_before_the_next_scan(
        viewer, lgg_root, tmp_path, notes, inline_jobs, monkeypatch):
    """Loading a folder of patients takes minutes, and Stop (or a closed dock) waited until every scan had loaded and
    been prepared: the button said "Stopping..." all the while."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("TCGA_CS_4941_19960909", "TCGA_CS_4942_19970222", "TCGA_CS_4944_20010208"):
        (data / name).symlink_to(lgg_root / name)
    widget = dock(viewer, "Train U-Net")
    widget.folder.value, widget.output.value = data, tmp_path / "models"
    loaded, load = [], workers.load_scan

    def load_and_press_stop(source, **options):
        loaded.append(source)
        widget.train_button.clicked()  # Stop, pressed while the first scan loads
        return load(source, **options)

    monkeypatch.setattr(workers, "load_scan", load_and_press_stop)
    widget.train_button.clicked()
    assert len(loaded) == 1 and notes["error"] == []
    assert widget.status.value == "stopped: no epoch finished" and widget.train_button.text == "Train"
    assert not (tmp_path / "models").exists()


def test_stop_pressed_while_a_folder_of_dicom_studies_is_listed_ends_the_run_before_the_next_study(
        viewer, tmp_path, notes, inline_jobs, monkeypatch):
    """The folder is listed before any scan loads, and listing a DICOM study reads every file's header (about a
    second a study): Stop waited until the whole folder had been listed."""
    write_studies(tmp_path / "data", 3)
    widget = dock(viewer, "Train U-Net")
    widget.folder.value, widget.output.value = tmp_path / "data", tmp_path / "models"
    listed, list_them = [], dicom.list_series

    def list_and_press_stop(folder):
        if Path(folder).name == "study0" and "study0" not in listed:
            widget.train_button.clicked()  # Stop, pressed while the first study is listed
        listed.append(Path(folder).name)
        return list_them(folder)

    monkeypatch.setattr(dicom, "list_series", list_and_press_stop)
    monkeypatch.setattr(workers, "load_scan", lambda *_, **__: pytest.fail("a scan was loaded after the stop"))
    widget.train_button.clicked()
    assert "study0" in listed and not {"study1", "study2"} & set(listed) and notes["error"] == []
    assert widget.status.value == "stopped: no epoch finished" and widget.train_button.text == "Train"
    assert not (tmp_path / "models").exists()


def test_a_stop_asked_while_the_layers_are_read_ends_the_run_before_the_next_layer(tmp_path):
    """A lazy layer (a big NIfTI, a remote or dask-backed image) is read in the training worker, seconds each, and
    the stop was asked only after every layer had been read."""
    read = []

    def image() -> np.ndarray:
        read.append(True)
        return np.zeros((2, 32, 32), np.float32)

    pairs = [workers.LayerPair(name, name, image, False, lambda: np.ones((2, 32, 32), bool)) for name in "ab"]
    events = list(workers.training_job(pairs, None, TrainConfig(epochs=1, workers=0, device="cpu"), tmp_path / "run",
                                       stop=lambda: bool(read)))
    assert len(read) == 1 and [event.message for event in events] == ["no epoch finished"]
    assert events[0].stopped and not (tmp_path / "run").exists()


def test_an_output_folder_typed_from_home_with_a_tilde_is_in_the_home_folder(
        train_widget, notes, inline_jobs, tmp_path, monkeypatch):
    """Typed '~/lgg models' (as in a shell), the models went into a folder named '~' inside the folder napari was
    started from, and the notice named '~/lgg models/run-...', which reads as a folder of the home."""
    home, started_in = tmp_path / "home", tmp_path / "started in"
    home.mkdir()
    started_in.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(started_in)
    train_widget.output.line_edit.value = "~/lgg models"
    train_widget.train_button.clicked()
    assert notes["error"] == [] and list(started_in.iterdir()) == []
    [run] = (home / "lgg models").iterdir()
    assert RunFolder(run).holds_model()
    assert notes["info"] == [f"model saved in {run}; it is now a choice in Segment tumour"]


def test_a_relative_output_folder_is_taken_from_naparis_folder_at_the_press_and_named_in_full(
        train_widget, notes, inline_jobs, tmp_path, monkeypatch):
    """A relative output folder went into the folder napari was started from, which napari does not show, and the
    notice named it as typed ('model saved in models/run-...'): the notices now name the absolute folder."""
    started_in = tmp_path / "started in"
    started_in.mkdir()
    monkeypatch.chdir(started_in)
    train_widget.output.line_edit.value = "lgg models"
    train_widget.train_button.clicked()
    [run] = (started_in / "lgg models").iterdir()
    assert notes["error"] == [] and train_widget.model_dir == run and run.is_absolute()
    assert notes["info"] == [f"model saved in {run}; it is now a choice in Segment tumour"]
    assert str(run) in train_widget.status.value


def _write_case(folder, seed: int):
    """A BraTS-style case folder: FLAIR, T1, T1c, T2 and its labels, as NIfTI files named like BraTS's."""
    import nibabel as nib

    folder.mkdir()
    rng, affine = np.random.default_rng(seed), np.diag([0.9, 1.1, 3.0, 1.0])
    for sequence in ("flair", "t1", "t1ce", "t2"):
        image = rng.random((12, 10, 4)).astype(np.float32)
        nib.save(nib.Nifti1Image(image, affine), folder / f"{folder.name}_{sequence}.nii.gz")
    labels = np.zeros((12, 10, 4), np.uint8)
    labels[3:6, 2:5, 1:3] = 2
    nib.save(nib.Nifti1Image(labels, affine), folder / f"{folder.name}_seg.nii.gz")
    return folder


@pytest.mark.parametrize("docked", ["before the case opens", "after it opened"])
def test_a_case_opened_with_our_reader_is_paired_as_its_flair_t1_t1c_and_labels_not_its_t2(viewer, tmp_path, docked):
    """Our reader opens a case's sequences T2 first (FLAIR on top): a pair took the case's T2, alone, as the image to
    train on (its name in a grey box the user had no reason to check), and taught the model T2 as if it were FLAIR,
    while Segment fed the trained model the case's FLAIR, T1 and T1c."""
    first, second = _write_case(tmp_path / "case-a", 0), _write_case(tmp_path / "case-b", 1)
    widget = dock(viewer, "Train U-Net") if docked.startswith("before") else None
    viewer.open(str(first), plugin="napari-lgg-unet")
    widget = widget or dock(viewer, "Train U-Net")
    row = widget.pairs[0]

    def picked() -> list[str | None]:
        boxes = (row.image_layer, row.pre_contrast, row.post_contrast, row.labels_layer)
        return [None if box.value is None else box.value.name for box in boxes]

    assert picked() == ["FLAIR", "T1", "T1c", "case-a mask"]
    viewer.open(str(second), plugin="napari-lgg-unet")  # another case's FLAIR, on top now, changes no pick
    assert picked() == ["FLAIR", "T1", "T1c", "case-a mask"]
    row.image_layer.value = viewer.layers["T2"]  # a layer the user picks stays theirs
    viewer.layers["T1c [1]"].name = "post-contrast"
    assert row.image_layer.value is viewer.layers["T2"]


def test_pairs_opened_from_files_are_recorded_by_their_names_not_their_layer_names(
        viewer, tmp_path, notes, inline_jobs):
    """Two cases opened with our reader give layers named 'FLAIR' and 'FLAIR [1]', and the model's config recorded
    its patients by those names, which say nothing of the scans. It records the name of the folder each was opened
    from (as the CLI records a patient's folder; no user's path in a config shared with colleagues); two layers of
    one case are told apart by their layer names."""
    first, second = _write_case(tmp_path / "case-a", 0), _write_case(tmp_path / "case-b", 1)
    for case in (first, second, first):
        viewer.open(str(case), plugin="napari-lgg-unet")
    widget = dock(viewer, "Train U-Net")
    widget.settings.image_size.value, widget.settings.epochs.value, widget.settings.val_fraction.value = 64, 1, 0.5
    widget.output.value, widget.steps_per_epoch = tmp_path / "models", 1
    widget.add_pair.clicked()
    rows = list(widget.pairs)
    rows[0].image_layer.value, rows[0].labels_layer.value = viewer.layers["FLAIR"], viewer.layers["case-a mask"]
    rows[1].image_layer.value, rows[1].labels_layer.value = viewer.layers["FLAIR [1]"], viewer.layers["case-b mask"]
    widget.train_button.clicked()
    assert notes["error"] == [] and widget.status.value.startswith("finished")
    training = load_model(widget.model_dir).config.training
    assert sorted(training.patients("train") + training.patients("validation")) == [first.name, second.name]
    rows[1].image_layer.value, rows[1].labels_layer.value = viewer.layers["FLAIR [2]"], viewer.layers["case-a mask [1]"]
    assert [pair.patient for pair in widget.training_pairs()] == [f"{first.name} (FLAIR)", f"{first.name} (FLAIR [2])"]


def test_a_layer_made_in_napari_named_like_a_case_opened_for_another_pair_is_refused_before_the_run_starts(
        viewer, tmp_path, notes, inline_jobs, monkeypatch):
    """A pair made in napari trains under its layer's name ('case-a'), one opened from a case's folder under the
    folder's ('case-a'): the engine refused the two, but only once the run had started and read every layer."""
    monkeypatch.setattr(train_module, "training_job", lambda *_, **__: pytest.fail("the run started"))
    viewer.open(str(_write_case(tmp_path / "case-a", 0)), plugin="napari-lgg-unet")
    (image, _, _), (mask, _, _) = sample_patient()
    made = viewer.add_image(image[6:16], name="case-a", rgb=True)
    painted = viewer.add_labels(mask[6:16], name="painted")
    widget = dock(viewer, "Train U-Net")
    widget.output.value = tmp_path / "models"
    widget.add_pair.clicked()
    rows = list(widget.pairs)
    rows[0].image_layer.value, rows[0].labels_layer.value = viewer.layers["FLAIR"], viewer.layers["case-a mask"]
    rows[1].image_layer.value, rows[1].labels_layer.value = made, painted
    rows[1].pre_contrast.value = rows[1].post_contrast.value = None  # the new row took the case's T1 and T1c
    widget.train_button.clicked()
    assert notes["error"] == ["training scans with the same name: case-a; names identify patients in the split, so "
                              "give each scan its own name"]
    assert not widget.running and widget.train_button.text == "Train" and widget.train_button.enabled
    assert not (tmp_path / "models").exists()
    made.name = "case-z"  # renamed: the same pairs are taken
    assert [pair.patient for pair in widget.training_pairs()] == ["case-a", "case-z"]


def test_a_pair_opened_from_a_scan_of_the_kaggle_folder_is_refused_before_the_folder_loads(
        viewer, sample_patient_dir, tmp_path, notes, inline_jobs, monkeypatch):
    """A pair opened from a scan of the folder is named after it: that patient would have been trained twice, perhaps
    on both sides of the split."""
    monkeypatch.setattr(workers, "load_scan", lambda *_, **__: pytest.fail("refused only after loading the folder"))
    [image, labels] = viewer.open(str(sample_patient_dir), plugin="napari-lgg-unet")
    image.name = "my scan"  # renamed: the scan it was opened from still names it
    widget = dock(viewer, "Train U-Net")
    widget.pairs[0].image_layer.value, widget.pairs[0].labels_layer.value = image, labels
    widget.folder.value, widget.output.value = sample_patient_dir.parent, tmp_path / "models"
    widget.train_button.clicked()
    assert notes["error"] == [f"the image layer 'my scan' was opened from '{sample_patient_dir.name}', which has "
                              f"the name of a scan in {sample_patient_dir.parent}, and names identify patients in the "
                              "training split: rename the layer, or, if it is that patient, train on it once (remove "
                              "its pair or leave the folder out)"]
    assert not (tmp_path / "models").exists()


def test_a_pair_opened_from_a_file_of_a_case_is_named_as_the_cli_names_that_case(
        viewer, tmp_path, notes, inline_jobs, monkeypatch):
    """Opened from its FLAIR file (our reader brings the case), a pair was named 'case-a_flair.nii.gz', where the CLI
    and the folder's listing name the case 'case-a': the same patient in the Kaggle-style folder was not refused and
    trained twice, perhaps on both sides of the split, and `evaluate --split` could not find it."""
    monkeypatch.setattr(workers, "load_scan", lambda *_, **__: pytest.fail("refused only after loading the folder"))
    data = tmp_path / "data"
    data.mkdir()
    case = _write_case(data / "case-a", 0)
    _write_case(data / "case-b", 1)
    [image] = viewer.open(str(case / "case-a_flair.nii.gz"), plugin="napari-lgg-unet")
    painted = np.zeros(image.data.shape, np.uint8)
    painted[1, 3:6, 2:5] = 1
    labels = viewer.add_labels(painted, scale=image.scale, translate=image.translate, affine=image.affine)
    widget = dock(viewer, "Train U-Net")
    widget.pairs[0].image_layer.value, widget.pairs[0].labels_layer.value = image, labels
    assert [pair.patient for pair in widget.training_pairs()] == ["case-a"]
    widget.folder.value, widget.output.value = data, tmp_path / "models"
    widget.train_button.clicked()
    assert len(notes["error"]) == 1 and "has the name of a scan in" in notes["error"][0]
    assert not (tmp_path / "models").exists()
