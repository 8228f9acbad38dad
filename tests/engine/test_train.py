import contextlib
import os
import re
import shutil
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

import napari_lgg_unet
from napari_lgg_unet.engine import dataset, train
from napari_lgg_unet.engine.dataset import AugmentConfig
from napari_lgg_unet.engine.errors import FolderInUse, InputError, InputWarning
from napari_lgg_unet.engine.events import EpochEnd, Finished, Prepared, Step
from napari_lgg_unet.engine.io import Scan, load_patient
from napari_lgg_unet.engine.model import load_model, read_config
from napari_lgg_unet.engine.postprocess import PostprocessConfig
from napari_lgg_unet.engine.run_folder import RunFolder
from napari_lgg_unet.engine.train import TrainConfig, train_model

from temp_files import LOOKALIKES, leftovers_of_a_killed_writer

PATIENTS = ["TCGA_CS_4941_19960909", "TCGA_CS_4942_19970222", "TCGA_DU_5849_19950405"]
# mobilenet_v2: a quarter of resnet18's weights, so steps and the checkpoints each epoch writes cost a fraction (the
# suite's training tests took twice as long on resnet18); the loop, not the encoder, is what these tests check
FAST = dict(encoder="mobilenet_v2", image_size=64, batch_size=8, lr=1e-3, decoder_channels=(32, 16, 16, 16, 16),
            workers=0, device="cpu")


@pytest.fixture(scope="module")
def scans(short_lgg_patients):
    root = short_lgg_patients(PATIENTS)
    return [load_patient(root / name) for name in PATIENTS]


@pytest.fixture(scope="module")
def whole_scans(lgg_root):
    """The patients whole, for a test that needs more training slices than one scoring batch holds."""
    return [load_patient(lgg_root / name) for name in PATIENTS]


def test_short_real_training_lowers_the_loss_and_writes_a_loadable_best_model(scans, tmp_path):
    config = TrainConfig(epochs=3, steps_per_epoch=12, val_fraction=0.34, augment=AugmentConfig(enabled=False), **FAST)
    events = list(train_model(scans, config, tmp_path / "m"))
    losses = [e.loss for e in events if isinstance(e, Step)]
    assert len(losses) == 36
    assert np.mean(losses[-6:]) < 0.8 * np.mean(losses[:6])
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert [e.epoch for e in epochs] == [1, 2, 3] and all("as-is" in e.record.validation for e in epochs)
    finished = events[-1]
    assert isinstance(finished, Finished) and not finished.stopped
    best = min(epochs, key=lambda e: e.record.validation["as-is"].loss)
    assert finished.best_epoch == best.epoch
    model = load_model(tmp_path / "m")
    assert model.config.training.best_epoch == best.epoch
    assert set(model.config.training.patients("validation")).isdisjoint(model.config.training.patients("train"))
    assert [row["epoch"] for row in model.config.training.history] == [1, 2, 3]
    assert (tmp_path / "m" / "history.csv").read_text().count("\n") == 4


def test_stop_mid_run_ends_cleanly_and_keeps_the_best_model(scans, tmp_path):
    steps = 0

    def stop() -> bool:
        return steps >= 14  # during the second epoch

    events = []
    for event in train_model(scans, TrainConfig(epochs=5, steps_per_epoch=10, **FAST), tmp_path / "m", stop):
        events.append(event)
        steps += isinstance(event, Step)
    assert isinstance(events[-1], Finished) and events[-1].stopped
    assert steps == 14 and events[-1].best_epoch == 1
    assert load_model(tmp_path / "m").config.training.best_epoch == 1


@pytest.fixture
def worsening_validation(monkeypatch):
    """Validation losses 0.1, 0.5, 0.9 for epochs 1 to 3: epoch 1 is the best."""
    losses = iter([0.1, 0.5, 0.9])
    validation_scores = train.validation_scores

    def scored(*args, **kwargs):
        return {**validation_scores(*args, **kwargs), "val_loss": next(losses)}

    monkeypatch.setattr(train, "validation_scores", scored)


def test_a_best_model_deleted_mid_run_is_replaced_by_a_later_epoch_the_run_then_reports(
        scans, tmp_path, worsening_validation):
    """The output folder deleted after epoch 1 (the best, as validation says here): epochs 2 and 3 were worse and
    wrote only a resume state and history into the folder the writes made again, and the run ended with "best epoch 1,
    model in ..." over a folder without a model."""
    out = tmp_path / "m"
    with pytest.warns(InputWarning, match=r"best model \(epoch 1\) .* was deleted; saved epoch 2's instead"):
        for event in train_model(scans, TrainConfig(epochs=3, steps_per_epoch=2, val_fraction=0.34, **FAST), out):
            if isinstance(event, EpochEnd) and event.epoch == 1:
                shutil.rmtree(out)
    assert event.best_epoch == 2 and event.message.startswith("best epoch 2 (validation loss 0.5000)")
    assert load_model(out).config.training.best_epoch == 2
    assert RunFolder(out).resume_progress().best_epoch == 2


def test_a_folder_deleted_mid_run_is_locked_again_as_the_next_epoch_makes_it_so_a_second_run_is_refused(
        scans, tmp_path, worsening_validation):
    """Deleted after epoch 1, the folder was made again by epoch 2's writes without a lock (the run held one on the
    deleted file): a second run took it at epoch 2 while the first still trained, and both could write into it."""
    out = tmp_path / "m"
    with pytest.warns(InputWarning, match=r"best model \(epoch 1\) .* was deleted; saved epoch 2's instead"):
        for event in train_model(scans, TrainConfig(epochs=3, steps_per_epoch=2, val_fraction=0.34, **FAST), out):
            if isinstance(event, EpochEnd) and event.epoch == 1:
                shutil.rmtree(out)
            if isinstance(event, EpochEnd) and event.epoch == 2:
                with pytest.raises(FolderInUse, match="is in use by another training run"), RunFolder(out).locked():
                    pass
    assert isinstance(event, Finished) and event.best_epoch == 2
    assert load_model(out).config.training.best_epoch == 2
    with RunFolder(out).locked():  # let go as the run ended
        pass


def test_a_resumed_run_whose_folder_is_deleted_before_it_rewrites_its_best_model_locks_the_folder_again(
        scans, tmp_path, monkeypatch):
    """A resumed run killed before its best model was written rewrites that model as it starts: deleted after its
    resume state was read, the folder was made anew by that write without a lock, and a second run took it for the
    whole of the first epoch."""
    out, config = tmp_path / "m", TrainConfig(epochs=1, steps_per_epoch=1, val_fraction=0.34, **FAST)
    for _ in train_model(scans, config, out):
        pass
    (out / "config.json").unlink()  # killed after the resume state, before the model was written
    real_loader = train._loader

    def deleted_meanwhile(*args):
        shutil.rmtree(out)
        return real_loader(*args)

    monkeypatch.setattr(train, "_loader", deleted_meanwhile)
    run = train_model(scans, replace(config, epochs=2, resume=True), out)
    assert isinstance(next(run), Prepared)
    with pytest.raises(FolderInUse, match="is in use by another training run"), RunFolder(out).locked():
        pass
    run.close()


def test_a_run_whose_deleted_folder_another_run_took_ends_with_an_error_and_leaves_that_run_s_folder_alone(
        scans, tmp_path):
    out = tmp_path / "m"
    refusal = (f"{re.escape(str(out))} was deleted while this training run held it, and another job holds it now: "
               "this training run ends without writing there")
    with contextlib.ExitStack() as other_run:
        with pytest.raises(FolderInUse, match=refusal):
            for event in train_model(scans, TrainConfig(epochs=2, steps_per_epoch=2, val_fraction=0.34, **FAST), out):
                if isinstance(event, EpochEnd):
                    shutil.rmtree(out)
                    other_run.enter_context(RunFolder(out).locked())
        assert [path.name for path in out.iterdir()] == [".lock"]  # the other run's lock, still there and held
        with pytest.raises(FolderInUse), RunFolder(out).locked():
            pass


def test_a_best_model_deleted_after_the_last_epoch_is_said_to_be_gone_not_named_as_the_runs_model(scans, tmp_path):
    """Deleted with its folder after the last epoch's save, the model was still named in the run's last event: "best
    epoch 1, model in ..." over a folder `load_model` refused."""
    out = tmp_path / "m"
    for event in train_model(scans, TrainConfig(epochs=1, steps_per_epoch=1, val_fraction=0.34, **FAST), out):
        if isinstance(event, EpochEnd):
            shutil.rmtree(out)
    assert isinstance(event, Finished) and event.best_epoch is None
    assert event.message == (f"the best model (epoch 1) in {out} was deleted before the run ended; no model is left "
                             "to load")


def test_a_stop_after_the_best_model_was_deleted_saves_the_stopped_epochs_model_and_says_so(
        scans, tmp_path, worsening_validation):
    """Stopped promptly as "the best model is on disk", a run whose folder was deleted after epoch 1 ended with "best
    epoch 1, model in ..." over nothing: it validates the stopped epoch whole instead, as a first epoch's, and saves
    it."""
    out, steps = tmp_path / "m", 0
    with pytest.warns(InputWarning, match=r"best model \(epoch 1\) .* was deleted; saved epoch 2's instead"):
        for event in train_model(scans, TrainConfig(epochs=3, steps_per_epoch=3, val_fraction=0.34, **FAST), out,
                                 lambda: steps >= 4):
            steps += isinstance(event, Step)
            if isinstance(event, EpochEnd) and event.epoch == 1:
                shutil.rmtree(out)
    assert event.stopped and event.best_epoch == 2 and steps == 4
    assert load_model(out).config.training.best_epoch == 2


def test_a_stop_after_a_few_steps_leaves_a_model_and_one_before_any_step_records_no_epoch(scans, tmp_path):
    """Stopped before its first step, a run saved the untrained network as 'best epoch 1, train loss 0.0' and counted
    epoch 1 as done, so --resume skipped it."""
    events = []
    for event in train_model(scans, TrainConfig(epochs=2, steps_per_epoch=10, **FAST), tmp_path / "m",
                             lambda: len(events) > 2):  # Prepared and two steps, then stop
        events.append(event)
    assert [type(event) for event in events[:3]] == [Prepared, Step, Step]
    assert events[-1].stopped and events[-1].best_epoch == 1 and events[-1].history[0].train_loss > 0
    load_model(tmp_path / "m")

    events = list(train_model(scans, TrainConfig(epochs=2, steps_per_epoch=10, **FAST), tmp_path / "n", lambda: True))
    assert events[-1].stopped and events[-1].best_epoch is None and events[-1].history == []
    assert "no epoch finished" in events[-1].message and not RunFolder(tmp_path / "n").holds_model()
    again = list(train_model(scans, TrainConfig(epochs=1, steps_per_epoch=1, **FAST), tmp_path / "n"))
    assert [e.epoch for e in again if isinstance(e, EpochEnd)] == [1]  # the folder takes a new run


def _stopped_in_epoch_2(scans, out, monkeypatch, module, config: TrainConfig) -> tuple[list, list, list[int]]:
    """Train with a stop asked at the second batch that `module.volume_logits` yields in epoch 2; returns the events,
    the epochs ended, and for each batch it yielded after epoch 1 whether the stop had been asked before it."""
    batches, asked, epochs_ended = [], [], []
    volume_logits = module.volume_logits

    def watched(*args, **kwargs):
        for batch in volume_logits(*args, **kwargs):
            batches.append(len(asked))
            if len(batches) == 2 and not asked and len(epochs_ended) == 1:
                asked.append(True)
            yield batch

    monkeypatch.setattr(module, "volume_logits", watched)
    events = []
    for event in train_model(scans, config, out, lambda: bool(asked)):
        events.append(event)
        if isinstance(event, EpochEnd):
            epochs_ended.append(event)
            batches.clear()
    return events, epochs_ended, batches


def _assert_epoch_1_alone_kept(events: list, out) -> None:
    assert isinstance(events[-1], Finished) and events[-1].stopped and events[-1].best_epoch == 1
    assert [r.epoch for r in events[-1].history] == [1]
    assert load_model(out).config.training.best_epoch == 1
    assert (out / "history.csv").read_text().count("\n") == 2


def test_a_stop_during_validation_ends_it_at_once_and_records_no_half_validated_epoch(scans, tmp_path, monkeypatch):
    """A stop asked while epoch 2 was validated (a minute on a CPU) waited for the validation's end, and then saved
    that epoch. Now the validation ends after the batch in progress, epoch 2 is neither recorded nor saved, and epoch
    1's model stays the best."""
    config = TrainConfig(epochs=3, steps_per_epoch=2, val_fraction=0.34, **FAST)
    events, epochs_ended, batches = _stopped_in_epoch_2(scans, tmp_path / "m", monkeypatch, train, config)
    assert [e.epoch for e in epochs_ended] == [1] and batches == [0, 0]  # no batch validated after the stop
    _assert_epoch_1_alone_kept(events, tmp_path / "m")


def test_a_stop_during_the_hard_negative_scoring_ends_it_at_once_and_keeps_the_best_model(whole_scans, tmp_path,
                                                                                          monkeypatch):
    """With --hard-negatives each epoch starts by running the network over every training slice (minutes on a CPU),
    and a Stop (or Ctrl-C) was asked only before the first step after it. Now the scoring ends after the batch in
    progress, its partial weights are not drawn from, no step of that epoch is taken, and epoch 1's model stays."""
    weighed, weights = [], train.sampling_weights
    monkeypatch.setattr(train, "sampling_weights", lambda *args: weighed.append(args) or weights(*args))
    config = TrainConfig(epochs=3, steps_per_epoch=2, val_fraction=0.34, hard_negatives=0.5, **FAST)
    # dataset's volume_logits: the hard-negative scoring's (validation's is train's own)
    events, epochs_ended, batches = _stopped_in_epoch_2(whole_scans, tmp_path / "m", monkeypatch, dataset, config)
    assert [e.epoch for e in epochs_ended] == [1] and batches == [0, 0]  # no batch scored after the stop
    assert len(weighed) == 1  # epoch 1's weights alone were made
    assert not [e for e in events[events.index(epochs_ended[0]):] if isinstance(e, Step)]
    _assert_epoch_1_alone_kept(events, tmp_path / "m")


def test_a_stop_asked_while_a_resumed_run_prepares_its_scans_ends_it_and_leaves_its_folder_as_it_was(
        scans, tmp_path, monkeypatch):
    """A resumed run prepared every scan whatever was asked (minutes for a folder of patients: a requeued job
    pre-empted again, a Ctrl-C, a Stop waited for them all). Now it ends before the next scan, reports the best model
    its folder holds, and leaves the folder's files as they were."""
    config = TrainConfig(epochs=1, steps_per_epoch=1, val_fraction=0.34, **FAST)
    list(train_model(scans, config, tmp_path / "run"))
    before = {path.name: path.read_bytes() for path in (tmp_path / "run").iterdir()}
    prepared, prepare = [], train.prepare_training_volume
    monkeypatch.setattr(train, "prepare_training_volume",
                        lambda scan, *rest: prepared.append(scan) or prepare(scan, *rest))
    resumed = replace(config, epochs=2, resume=True)
    events = list(train_model(scans, resumed, tmp_path / "run", lambda: bool(prepared)))
    assert len(prepared) == 1 and [type(event) for event in events] == [Finished]
    finished = events[0]
    assert finished.stopped and finished.best_epoch == 1 and [r.epoch for r in finished.history] == [1]
    assert finished.message.startswith("best epoch 1 (validation loss ")
    assert {path.name: path.read_bytes() for path in (tmp_path / "run").iterdir()} == before  # no lock left


def test_a_run_stopped_before_its_first_epoch_leaves_no_folder_or_lock_behind(scans, tmp_path):
    """It left the folder it made holding only `.lock`: in napari a `run-*` folder for every Stop pressed while the
    run prepared, which no model loads from and --resume refuses. A folder that was there keeps its own files."""
    config = TrainConfig(epochs=2, steps_per_epoch=10, **FAST)
    events = list(train_model(scans, config, tmp_path / "new" / "run", lambda: True))
    assert events[-1].stopped and events[-1].best_epoch is None
    assert list(tmp_path.iterdir()) == []  # neither the run folder nor the parent it made
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("my notes")
    events = list(train_model(scans, config, tmp_path / "mine", lambda: True))
    assert events[-1].stopped and [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_a_stop_asked_while_the_scans_are_prepared_ends_the_run_before_the_next_scan(scans, tmp_path, monkeypatch):
    """Preparing a scan takes seconds (a folder of patients, minutes), and the stop was asked only before each step:
    a Stop in napari, a Ctrl-C or a scheduler's SIGTERM waited until every scan was prepared."""
    prepared, prepare = [], train.prepare_training_volume
    monkeypatch.setattr(train, "prepare_training_volume",
                        lambda scan, *rest: prepared.append(scan) or prepare(scan, *rest))
    config = TrainConfig(epochs=1, steps_per_epoch=1, **FAST)
    events = list(train_model(scans, config, tmp_path / "run", lambda: bool(prepared)))
    assert len(prepared) == 1
    assert [type(event) for event in events] == [Finished]
    assert events[0].stopped and events[0].best_epoch is None and events[0].message == "no epoch finished"
    assert list(tmp_path.iterdir()) == []  # as for any run stopped before its first epoch ended


def test_a_stop_asked_while_a_scan_is_prepared_ends_the_run_within_that_scan(whole_scans, tmp_path, monkeypatch):
    """A scan is normalised and resized 16 slices at a time, 0.6-1.4 s for an 88-slice patient on 2 cores (more at
    512 pixels), and the stop was asked only between scans: now before each 16 slices, the run leaving nothing."""
    chunks, normalise = [], dataset.normalise
    monkeypatch.setattr(dataset, "normalise", lambda *args, **kwargs: chunks.append(1) or normalise(*args, **kwargs))
    assert min(len(scan.image) for scan in whole_scans) > 16  # so that each has a second chunk
    events = list(train_model(whole_scans, TrainConfig(epochs=1, steps_per_epoch=1, **FAST), tmp_path / "run",
                              lambda: bool(chunks)))
    assert len(chunks) == 1 and [type(event) for event in events] == [Finished]
    assert events[0].stopped and events[0].best_epoch is None and list(tmp_path.iterdir()) == []


def test_a_stop_asked_while_the_validation_variants_are_made_ends_a_resumed_run_before_the_next_one(
        scans, tmp_path, monkeypatch):
    """The validation volumes as each input variant were made whatever was asked (a skull-stripped one takes about a
    second, 24 s for kaggle_3m's validation patients): a Stop waited for them all. Now the run ends before the next
    one, keeps the best model its folder holds and leaves the folder's files as they were."""
    config = TrainConfig(epochs=1, steps_per_epoch=1, val_fraction=0.34,
                         validation_variants=("as-is", "flair-only", "skull-stripped"), **FAST)
    list(train_model(scans, config, tmp_path / "run"))
    before = {path.name: path.read_bytes() for path in (tmp_path / "run").iterdir()}
    made, make = [], train.normalised_variant
    monkeypatch.setattr(train, "normalised_variant",
                        lambda image, variant, stop: made.append(variant) or make(image, variant, stop))
    events = list(train_model(scans, replace(config, epochs=2, resume=True), tmp_path / "run", lambda: bool(made)))
    assert made == ["as-is"] and [type(event) for event in events] == [Finished]
    assert events[0].stopped and events[0].best_epoch == 1 and [r.epoch for r in events[0].history] == [1]
    assert {path.name: path.read_bytes() for path in (tmp_path / "run").iterdir()} == before


def test_a_stop_asked_while_auto_precision_is_first_timed_ends_the_run_before_the_next_timed_pass(
        scans, tmp_path, monkeypatch):
    """The first 'auto' run on a machine times the number formats (18 passes, 20 s on 2 busy cores), and a Stop
    waited for every pass. Now the run ends before the next one, leaves no folder and remembers no choice, neither in
    the cache nor for the process, so the next run measures again."""
    from napari_lgg_unet.engine import precision

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(precision.REMEASURE_ENV, raising=False)
    monkeypatch.setattr(precision, "_CHOSEN", {})
    timed, timing = [], precision.autocast
    monkeypatch.setattr(precision, "autocast", lambda candidate: timed.append(candidate) or timing(candidate))
    events = list(train_model(scans, TrainConfig(epochs=1, steps_per_epoch=1, **FAST), tmp_path / "run",
                              lambda: bool(timed)))
    assert len(timed) == 1 and [type(event) for event in events] == [Finished]
    assert events[0].stopped and events[0].best_epoch is None and events[0].message == "no epoch finished"
    assert list(tmp_path.iterdir()) == [] and precision._CHOSEN == {}


def test_a_stop_asked_while_the_skull_strip_masks_are_made_ends_the_run_before_the_next_volume(
        scans, tmp_path, monkeypatch):
    """The skull-strip augmentation's brain mask of every training volume is made before the first step (70 s for
    kaggle_3m's 72 training patients on 2 busy cores), and a Stop waited for them all."""
    made, make = [], dataset.skull_strip_view
    monkeypatch.setattr(dataset, "skull_strip_view",
                        lambda image, mask, stop: made.append(mask) or make(image, mask, stop))
    config = TrainConfig(epochs=1, steps_per_epoch=1, val_fraction=0, **FAST)
    events = list(train_model(scans, config, tmp_path / "run", lambda: bool(made)))
    assert len(made) == 1 and [type(event) for event in events] == [Finished]
    assert events[0].stopped and events[0].best_epoch is None and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("made_for", [
    dict(val_fraction=0.34, validation_variants=("skull-stripped",), augment=AugmentConfig(enabled=False)),
    dict(val_fraction=0, augment=AugmentConfig(skull_strip=1.0)),
], ids=["skull-stripped validation", "skull-strip augmentation"])
def test_a_stop_asked_while_a_brain_mask_is_made_ends_the_run_within_that_volume(scans, tmp_path, monkeypatch,
                                                                                 made_for):
    """A stop was asked only between volumes, and a volume's brain mask takes 1-4 s (an 88-slice patient on 2 busy
    cores), so a Stop in napari waited for the whole volume. Now it is asked between the mask's passes over the
    slices: the run ends within the first pass, as if stopped before the volume, and leaves nothing behind."""
    slices, transform = [], ndimage.distance_transform_edt  # the brain mask's transforms so far: one a slice and pass

    def counted(*args, **kwargs):
        slices.append(1)
        return transform(*args, **kwargs)

    monkeypatch.setattr(ndimage, "distance_transform_edt", counted)
    config = TrainConfig(epochs=1, steps_per_epoch=1, **{**FAST, **made_for})
    events = list(train_model(scans, config, tmp_path / "run", lambda: bool(slices)))
    assert 1 <= len(slices) <= max(len(scan.image) for scan in scans)  # within one pass of the first volume, not six
    assert [type(event) for event in events] == [Finished]
    assert events[0].stopped and events[0].best_epoch is None and list(tmp_path.iterdir()) == []


def test_scans_given_as_a_generator_are_all_trained_on(scans, tmp_path):
    """The first look at the scans (their names, for the folder's lock) no longer uses a generator up."""
    config = TrainConfig(epochs=1, steps_per_epoch=1, val_fraction=0.0, **FAST)
    events = list(train_model((scan for scan in scans), config, tmp_path / "m"))
    assert sorted(load_model(tmp_path / "m").config.training.split["train"]) == sorted(PATIENTS)
    assert events[-1].best_epoch == 1


def test_masks_that_are_all_empty_are_refused_naming_them_in_words_for_the_cli_too(tmp_path):
    """The refusal said "the labels are empty: paint tumour", advice for the widget, to a CLI user's mask files."""
    empty = [replace(_painted(name, 3), mask=np.zeros((3, 64, 64), bool)) for name in ("P1", "P2")]
    with pytest.raises(InputError, match=r"every mask is empty \(P1 and P2\): mark tumour .*give masks that hold"):
        list(train_model(empty, TrainConfig(epochs=1, steps_per_epoch=1, val_fraction=0.0, **FAST), tmp_path / "m"))


def _dotted(scan: Scan, name: str) -> Scan:
    """`scan` (256-pixel slices) marked with a 2 x 2 voxel dot on three slices: a quarter of a pixel at 64 pixels."""
    mask = np.zeros(scan.mask.shape, bool)
    mask[10:13, 120:122, 120:122] = True
    return replace(scan, name=name, mask=mask)


def test_tumour_too_small_for_the_image_size_is_refused_as_such_not_as_an_empty_mask(sample_patient_dir, tmp_path):
    """A few voxels painted per slice vanish when the slices shrink to the image size: the refusal said "every mask
    is empty: mark tumour on at least one slice" to a user who had."""
    dotted = _dotted(load_patient(sample_patient_dir), "P1")
    with pytest.raises(InputError) as refused:
        list(train_model([dotted], TrainConfig(epochs=1, steps_per_epoch=1, val_fraction=0.0, **FAST), tmp_path / "m"))
    assert str(refused.value) == ("the tumour marked in P1 is too small or thin to survive the resizing of its slices "
                                  "to the image size, 64 x 64 pixels: mark larger regions, or choose a larger image "
                                  "size")
    assert not (tmp_path / "m").exists()


def test_a_scan_whose_tumour_the_resizing_loses_is_named_in_a_warning_as_the_run_starts(sample_patient_dir, tmp_path):
    """Its marked slices trained as tumour-free without a word, beside a scan whose tumour survived."""
    whole = load_patient(sample_patient_dir)
    config = TrainConfig(epochs=1, steps_per_epoch=1, val_fraction=0.0, skip_unlabelled=True, **FAST)
    assert _warnings_as_it_starts([whole, _dotted(whole, "P2")], config, tmp_path / "m") == [
        "the tumour marked on 3 slices of P2 is too small or thin to survive the resizing of the slices to the image "
        "size, 64 x 64 pixels, so they train as tumour-free (the smallest tumour that survived covers 374 pixels of a "
        "256 x 256 slice); mark larger regions, or choose a larger image size"]


@pytest.mark.parametrize("skip_unlabelled", [True, False])
def test_slices_whose_tumour_the_resizing_loses_are_counted_in_a_warning_beside_slices_that_keep_theirs(
        sample_patient_dir, tmp_path, skip_unlabelled):
    """A scan whose tumour survived on some slices trained its other marked slices as tumour-free without a word: only
    a scan that lost all of its tumour was named."""
    scan = load_patient(sample_patient_dir)
    mask = np.zeros(scan.mask.shape, bool)
    mask[2:4, 100:120, 100:130] = True
    mask[5, 100:120, 100:125] = True  # 500 voxels: the smallest tumour of a slice that survives at 64 pixels
    mask[6:8, 120:122, 120:122] = True  # a 2 x 2 voxel dot: a quarter of a pixel at 64 pixels
    config = TrainConfig(epochs=1, steps_per_epoch=1, val_fraction=0.0, skip_unlabelled=skip_unlabelled, **FAST)
    assert _warnings_as_it_starts([replace(scan, name="P1", mask=mask)], config, tmp_path / "m") == [
        "the tumour marked on 2 slices of P1 is too small or thin to survive the resizing of the slices to the image "
        "size, 64 x 64 pixels, so they train as tumour-free (the smallest tumour that survived covers 500 pixels of a "
        "256 x 256 slice); mark larger regions, or choose a larger image size"]


def _warnings_as_it_starts(scans: list[Scan], config: TrainConfig, out: Path) -> list[str]:
    """The warnings a training run gives before its first event (it is closed then)."""
    run = train_model(scans, config, out)
    with pytest.warns(InputWarning) as warned:
        next(run)
    run.close()
    return [str(w.message) for w in warned]

def _painted(name: str, slices: int) -> Scan:
    """A small grey scan whose every slice has a square of tumour."""
    image = np.random.default_rng(0).random((slices, 64, 64), dtype=np.float32)
    mask = np.zeros(image.shape, bool)
    mask[:, 20:40, 20:40] = True
    return Scan(name=name, image=image[0] if slices == 1 else image, mask=mask[0] if slices == 1 else mask, rgb=False)


@pytest.mark.parametrize("scans, fractions, why", [
    ([_painted("a 2D image", 1)], {}, "there is one scan with one slice to learn from, and validation needs a second "
     "scan (patients are split whole) or a second labelled slice of this scan (held out from training)"),
    ([_painted(f"scan {n}", 2) for n in range(3)], {"test_fraction": 0.5},
     "the test fraction 0.5 leaves only one of the 3 scans for training"),
])
def test_a_run_asked_to_validate_that_cannot_says_why_and_what_chooses_the_model_as_it_starts(
        scans, fractions, why, tmp_path):
    """It trained without validation, and only the last message's "(training loss ...)" hinted at it."""
    config = TrainConfig(epochs=1, steps_per_epoch=1, val_fraction=0.2, **fractions, **FAST)
    run = train_model(scans, config, tmp_path / "m")
    with pytest.warns(InputWarning) as warned:
        prepared = next(run)
    run.close()
    assert "0 validation volumes" in prepared.message
    assert [str(w.message) for w in warned] == [
        f"no validation although the validation fraction is 0.2: {why}; the best epoch is chosen by training loss"]


def test_scans_of_one_name_are_refused_naming_it(tmp_path):
    scans = [_painted("P1", 2), _painted("P2", 2), _painted("P1", 2)]
    with pytest.raises(InputError) as refused:
        next(train_model(scans, TrainConfig(epochs=1, **FAST), tmp_path / "m"))
    assert str(refused.value) == ("training scans with the same name: P1; names identify patients in the split, so "
                                  "give each scan its own name")


def test_a_run_that_validates_or_was_asked_not_to_gives_no_warning_of_it(tmp_path, recwarn):
    for fraction, scans in ((0.5, [_painted("a", 2)]), (0.0, [_painted("b", 1)])):
        run = train_model(scans, TrainConfig(epochs=1, steps_per_epoch=1, val_fraction=fraction, **FAST),
                          tmp_path / f"m{fraction}")
        next(run)
        run.close()
    assert [w for w in recwarn if issubclass(w.category, InputWarning)] == []


def test_resume_continues_from_the_last_finished_epoch(scans, tmp_path):
    config = TrainConfig(epochs=1, steps_per_epoch=3, **FAST)
    list(train_model(scans, config, tmp_path / "m"))
    resumed = TrainConfig(epochs=2, steps_per_epoch=3, resume=True, **FAST)
    events = list(train_model(scans, resumed, tmp_path / "m"))
    assert [e.epoch for e in events if isinstance(e, EpochEnd)] == [2]
    assert [record.epoch for record in events[-1].history] == [1, 2]


def test_resuming_a_run_with_no_epoch_left_says_so_as_it_starts(scans, tmp_path):
    """`--resume` without a larger `--epochs` prepared every scan and ended with the saved run's best model, as if it
    had trained; a resumed run with epochs left gives no such warning."""
    config = TrainConfig(epochs=1, steps_per_epoch=1, val_fraction=0.0, **FAST)
    list(train_model(scans, config, tmp_path / "m"))
    with pytest.warns(InputWarning) as warned:
        events = list(train_model(scans, replace(config, resume=True), tmp_path / "m"))
    assert [str(w.message) for w in warned] == [
        f"{tmp_path / 'm'} has already trained 1 epoch and this run ends after epoch 1: nothing is left to train; "
        "raise epochs (--epochs) or stop_after (--stop-after) to go on"]  # the API's fields, the CLI's flags
    assert not [event for event in events if isinstance(event, Step)] and events[-1].best_epoch == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        run = train_model(scans, replace(config, epochs=2, resume=True), tmp_path / "m")
        next(run)
        run.close()


def test_fine_tuning_starts_from_an_existing_model(scans, tiny_model_dir, tmp_path):
    config = TrainConfig(epochs=1, steps_per_epoch=2, init=str(tiny_model_dir), **FAST)
    list(train_model(scans[:1], config, tmp_path / "m"))
    assert load_model(tmp_path / "m").config.decoder_channels == (16, 16, 16, 16, 16)


def test_fine_tuning_the_default_gives_the_neutral_clean_up_not_the_defaults_calibrated_one(scans, tmp_path):
    """The default's threshold (0.4) and clean-up (pieces of 1000 voxels or more) were calibrated on its own
    probabilities: a model fine-tuned from it kept them, uncalibrated, and dropped every tumour under 1000 voxels."""
    assert load_model("default").config.postprocess != PostprocessConfig()  # calibrated: the case that matters
    config = TrainConfig(epochs=1, steps_per_epoch=1, init="default", image_size=64, batch_size=2, workers=0,
                         device="cpu", val_fraction=0)
    list(train_model(scans[:1], config, tmp_path / "m"))
    tuned = load_model(tmp_path / "m").config
    assert tuned.postprocess == PostprocessConfig() and tuned.training.calibration is None


def test_fine_tuning_a_model_with_context_and_clicks_keeps_its_inputs(scans, tiny_model_dir, tmp_path):
    from napari_lgg_unet.engine.model import save_model, with_inputs
    from napari_lgg_unet.engine.model_input import InputConfig

    tiny = load_model(tiny_model_dir)
    inputs = InputConfig(context_slices=1, clicks=True)
    save_model(*with_inputs(tiny.network, tiny.config, inputs), tmp_path / "start")
    config = TrainConfig(epochs=1, steps_per_epoch=2, init=str(tmp_path / "start"), **{**FAST, "image_size": 64,
                                                                                         "decoder_channels": (16,) * 5})
    list(train_model(scans, config, tmp_path / "m"))
    assert load_model(tmp_path / "m").config.inputs == inputs


def test_labels_with_no_tumour_are_refused_with_a_clear_message(tmp_path):
    scan = Scan(
        "blank", np.random.default_rng(0).random((4, 64, 64)).astype(np.float32), np.zeros((4, 64, 64), bool),
        rgb=False,
    )
    with pytest.raises(InputError, match="empty"):
        list(train_model([scan], TrainConfig(epochs=1, **FAST), tmp_path / "m"))
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_out_of_memory_becomes_advice_to_lower_batch_or_image_size(scans, tmp_path, monkeypatch):
    from napari_lgg_unet.engine import losses
    from napari_lgg_unet.engine.errors import DeviceError

    def exhausted(*_):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(losses.SegmentationLoss, "forward", exhausted)
    with pytest.raises(DeviceError, match="lower the batch size"):
        list(train_model(scans, TrainConfig(epochs=1, steps_per_epoch=2, **FAST), tmp_path / "m"))


def test_training_refuses_to_overwrite_an_existing_model_unless_resuming(scans, tiny_model_dir, tmp_path):
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    before = (model / "model.safetensors").read_bytes()
    with pytest.raises(InputError, match="already holds a model"):
        list(train_model(scans, TrainConfig(epochs=1, steps_per_epoch=2, **FAST), model))
    assert (model / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize("resume", [False, True])
def test_a_folder_with_the_users_own_config_json_is_refused_as_theirs_not_as_a_model(scans, tmp_path, resume):
    """A config.json of another tool was called "a model", and the advice was to continue its run with --resume."""
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.json").write_text('{"learning_rate": 0.1}\n')
    with pytest.raises(InputError, match="config.json is not a napari-lgg-unet/1 model file, and saving a model "
                                         "here would replace it"):
        list(train_model(scans, TrainConfig(epochs=1, steps_per_epoch=1, resume=resume, **FAST), tmp_path / "mine"))
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["config.json"]
    assert (tmp_path / "mine" / "config.json").read_text() == '{"learning_rate": 0.1}\n'


def test_a_second_run_into_a_locked_folder_is_refused_while_the_first_goes_on(scans, tmp_path):
    first = train_model(scans, TrainConfig(epochs=1, steps_per_epoch=2, **FAST), tmp_path / "m")
    next(first)  # holds the folder's lock from here on
    with pytest.raises(InputError, match="in use by another training run"):
        list(train_model(scans, TrainConfig(epochs=1, steps_per_epoch=2, **FAST), tmp_path / "m"))
    assert isinstance(list(first)[-1], Finished)
    load_model(tmp_path / "m")


def test_resume_refuses_a_folder_with_a_model_but_no_resume_state(scans, tiny_model_dir, tmp_path):
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    before = (model / "model.safetensors").read_bytes()
    with pytest.raises(InputError, match="no resume state"):
        list(train_model(scans, TrainConfig(epochs=2, steps_per_epoch=2, resume=True, **FAST), model))
    assert (model / "model.safetensors").read_bytes() == before


def test_resume_refuses_other_settings_and_names_what_differs(scans, tmp_path):
    list(train_model(scans, TrainConfig(epochs=1, steps_per_epoch=2, **FAST), tmp_path / "m"))
    changed = TrainConfig(epochs=2, steps_per_epoch=2, resume=True, **{**FAST, "lr": 5e-4})
    with pytest.raises(InputError, match=r"lr 0.001 -> 0.0005"):
        list(train_model(scans, changed, tmp_path / "m"))


def test_resume_refuses_other_scans_and_names_them(scans, tmp_path):
    list(train_model(scans, TrainConfig(epochs=1, steps_per_epoch=2, **FAST), tmp_path / "m"))
    resumed = TrainConfig(epochs=2, steps_per_epoch=2, resume=True, **FAST)
    other = [replace(scans[0], name="someone else"), *scans[1:]]
    with pytest.raises(InputError, match=rf"scans differ: 1 new \(someone else\); 1 gone \({scans[0].name}\)"):
        list(train_model(other, resumed, tmp_path / "m"))
    assert [e.epoch for e in train_model(scans, resumed, tmp_path / "m") if isinstance(e, EpochEnd)] == [2]


def test_resuming_a_fine_tuned_run_without_its_init_says_to_give_it_again(scans, tiny_model_dir, tmp_path):
    """The network of a fine-tuned run is the --init model's: resumed without it, the refusal said only "(Error(s) in
    loading state_dict for Unet:)"; it names the model the run started from. With it, the run goes on."""
    from napari_lgg_unet.engine.errors import ModelError

    fine_tune = dict(steps_per_epoch=1, init=str(tiny_model_dir), **FAST)
    list(train_model(scans[:1], TrainConfig(epochs=1, **fine_tune), tmp_path / "m"))
    without = TrainConfig(epochs=2, steps_per_epoch=1, resume=True, **FAST)
    with pytest.raises(ModelError, match=re.escape(f"fine-tuned from {tiny_model_dir}, and this one is built from "
                                                   f"scratch; give init={str(tiny_model_dir)!r} (--init "
                                                   f"{tiny_model_dir}) again")):  # as the API and the CLI name it
        list(train_model(scans[:1], without, tmp_path / "m"))
    resumed = list(train_model(scans[:1], TrainConfig(epochs=2, resume=True, **fine_tune), tmp_path / "m"))
    assert [e.epoch for e in resumed if isinstance(e, EpochEnd)] == [2]


def test_a_corrupt_resume_state_is_refused_with_a_clear_message(scans, tmp_path):
    from napari_lgg_unet.engine.errors import ModelError

    list(train_model(scans, TrainConfig(epochs=1, steps_per_epoch=2, **FAST), tmp_path / "m"))
    state = tmp_path / "m" / "resume.safetensors"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    with pytest.raises(ModelError, match="corrupt"):
        list(train_model(scans, TrainConfig(epochs=2, steps_per_epoch=2, resume=True, **FAST), tmp_path / "m"))


def test_leftover_temp_files_of_a_killed_run_are_removed_when_the_folder_is_next_used(scans, tmp_path):
    (tmp_path / "m").mkdir()
    [leftover] = leftovers_of_a_killed_writer((tmp_path / "m" / "model.safetensors", ""))
    users = tmp_path / "m" / LOOKALIKES[0]
    users.write_text("a user's hidden file")
    list(train_model(scans, TrainConfig(epochs=1, steps_per_epoch=2, **FAST), tmp_path / "m"))
    assert not leftover.exists() and users.read_text() == "a user's hidden file"


def test_validation_on_input_variants_records_each_and_selects_on_their_mean_loss(scans, tmp_path):
    variants = ("as-is", "flair-only", "skull-stripped")
    config = TrainConfig(epochs=2, steps_per_epoch=3, val_fraction=0.34, validation_variants=variants, **FAST)
    events = list(train_model(scans, config, tmp_path / "m"))
    records = [e.record for e in events if isinstance(e, EpochEnd)]
    for record in records:
        assert tuple(record.validation) == variants
        assert record.selection_loss == pytest.approx(np.mean([s.loss for s in record.validation.values()]))
        assert {"val_dice", "val_dice_flair_only", "val_dice_skull_stripped", "selection_loss"} <= set(record.row())
    best = min(records, key=lambda r: r.selection_loss)
    assert events[-1].best_epoch == best.epoch
    assert load_model(tmp_path / "m").config.training.config["validation_variants"] == list(variants)


def test_a_fixed_schedule_without_validation_keeps_the_last_epoch(scans, tmp_path):
    config = TrainConfig(epochs=3, steps_per_epoch=2, val_fraction=0, keep_last=True, **FAST)
    events = list(train_model(scans, config, tmp_path / "m"))
    assert events[-1].best_epoch == 3
    model = load_model(tmp_path / "m")
    assert model.config.training.best_epoch == 3 and model.config.training.patients("validation") == []
    assert len(model.config.training.patients("train")) == len(PATIENTS)


def test_stop_after_ends_early_on_the_full_schedule_and_resume_finishes_it(scans, tmp_path):
    config = TrainConfig(epochs=4, stop_after=2, steps_per_epoch=2, val_fraction=0, keep_last=True,
                         lr_schedule="cosine", **FAST)
    events = list(train_model(scans, config, tmp_path / "m"))
    assert [e.epoch for e in events if isinstance(e, EpochEnd)] == [1, 2] and not events[-1].stopped
    assert {e.epochs for e in events if isinstance(e, (Step, EpochEnd))} == {2}  # progress reads "epoch 1/2"
    last_rate = events[-1].history[-1].lr  # epoch 2's last step starts 3/8 into the 4-epoch cosine, not 3/4 into 2
    assert last_rate == pytest.approx(FAST["lr"] * (1 + np.cos(np.pi * 3 / 8)) / 2)
    resumed = list(train_model(scans, TrainConfig(epochs=4, steps_per_epoch=2, val_fraction=0, keep_last=True,
                                                  lr_schedule="cosine", resume=True, **FAST), tmp_path / "m"))
    assert [e.epoch for e in resumed if isinstance(e, EpochEnd)] == [3, 4]
    assert load_model(tmp_path / "m").config.training.best_epoch == 4
    with pytest.raises(InputError, match="stop after epoch 5 is beyond the last epoch"):
        TrainConfig(epochs=4, stop_after=5)


@pytest.mark.parametrize("variants", [(), ("as-is", "as-is"), ("blurred",)])
def test_unknown_or_repeated_validation_variants_are_refused(variants):
    with pytest.raises(InputError, match="input variants"):
        TrainConfig(validation_variants=variants)


def test_resuming_a_calibrated_run_keeps_its_calibration_while_its_best_model_stays(sample_patient_dir, tmp_path):
    """Calibrating a stopped run's model and then continuing the run: the model on disk is already the resume
    state's best epoch, so nothing rewrites it (a rewrite dropped the threshold and its record)."""
    from napari_lgg_unet.engine.calibrate import calibrate
    from napari_lgg_unet.engine.io import load_patients

    scans = load_patients(sample_patient_dir)
    tiny = dict(FAST, batch_size=2, decoder_channels=(16, 16, 16, 16, 16), val_fraction=0)
    list(train_model(scans, TrainConfig(epochs=1, steps_per_epoch=1, **tiny), tmp_path / "m"))
    calibrate(load_model(tmp_path / "m"), [sample_patient_dir], tmp_path / "m")
    calibrated = (tmp_path / "m" / "config.json").read_text()
    stopped = list(train_model(scans, TrainConfig(epochs=2, steps_per_epoch=1, resume=True, **tiny), tmp_path / "m",
                               lambda: True))[-1]
    assert stopped.stopped and stopped.best_epoch == 1
    assert (tmp_path / "m" / "config.json").read_text() == calibrated
    assert load_model(tmp_path / "m").config.training.calibration is not None


def test_resume_completes_a_best_model_whose_save_was_cut_between_its_two_files(sample_patient_dir, tmp_path):
    from napari_lgg_unet.engine.io import load_patients

    scans = load_patients(sample_patient_dir)
    tiny = dict(FAST, batch_size=2, decoder_channels=(16, 16, 16, 16, 16), val_fraction=0)
    list(train_model(scans, TrainConfig(epochs=1, steps_per_epoch=1, **tiny), tmp_path / "m"))
    (tmp_path / "m" / "config.json").unlink()  # killed after the weights' rename, before config.json's
    list(train_model(
        scans, TrainConfig(epochs=2, steps_per_epoch=1, resume=True, **tiny), tmp_path / "m", lambda: True
    ))
    assert read_config(tmp_path / "m").training.best_epoch == 1


def test_an_auto_run_resumes_in_the_precision_it_trained_in(sample_patient_dir, tmp_path, monkeypatch):
    """A resumed 'auto' run keeps its arithmetic even where 'auto' would choose otherwise now (another measurement)."""
    from napari_lgg_unet.engine import precision
    from napari_lgg_unet.engine.io import load_patients
    from napari_lgg_unet.engine.run_folder import RunFolder

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(precision, "_fastest", lambda candidates, stop=None: candidates[1])  # fp32, channels-last
    precision._CHOSEN.clear()
    scans = load_patients(sample_patient_dir)
    tiny = dict(FAST, batch_size=2, decoder_channels=(16, 16, 16, 16, 16), val_fraction=0)
    list(train_model(scans, TrainConfig(epochs=1, steps_per_epoch=1, **tiny), tmp_path / "m"))
    started = RunFolder(tmp_path / "m").trained_precision(torch.device("cpu"))
    assert started is not None and started.channels_last
    monkeypatch.setattr(precision, "_fastest", lambda candidates, stop=None: candidates[0])  # plain fp32 faster now
    monkeypatch.setenv(precision.REMEASURE_ENV, "1")
    precision._CHOSEN.clear()
    try:
        events = list(train_model(scans, TrainConfig(epochs=2, steps_per_epoch=1, resume=True, **tiny), tmp_path / "m"))
    finally:
        precision._CHOSEN.clear()
    assert events[0].message.endswith("; auto: kept from the resumed run")
    assert RunFolder(tmp_path / "m").trained_precision(torch.device("cpu")) == started


def test_a_failed_save_while_resuming_leaves_no_ddp_wrapper_behind(sample_patient_dir, tmp_path, monkeypatch):
    """Setup's rewrite of a resumed run's best model (e.g. a full disk) can fail; a DistributedDataParallel wrapper
    built before it would outlive the process group in the traceback, the hang `_let_go` prevents at the end of a
    run. So the network is wrapped last, after everything in setup that can fail."""
    from napari_lgg_unet.engine import distributed, train
    from napari_lgg_unet.engine.io import load_patients

    scans = load_patients(sample_patient_dir)
    tiny = dict(FAST, batch_size=2, decoder_channels=(16, 16, 16, 16, 16), val_fraction=0)
    list(train_model(scans, TrainConfig(epochs=1, steps_per_epoch=1, **tiny), tmp_path / "m"))
    (tmp_path / "m" / "config.json").unlink()  # the resume rewrites the best model
    wrapped = []
    monkeypatch.setattr(distributed.Group, "wrap", lambda self, network, sync: wrapped.append(network) or network)

    def full_disk(run):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train, "_save_best_model", full_disk)
    with pytest.raises(OSError, match="No space"):
        list(train_model(scans, TrainConfig(epochs=2, steps_per_epoch=1, resume=True, **tiny), tmp_path / "m"))
    assert wrapped == []


_OPEN_AT_EXIT = """
import itertools, sys
from napari_lgg_unet.engine.io import load_patients
from napari_lgg_unet.engine.settings import AugmentConfig, TrainConfig
from napari_lgg_unet.engine.train import train_model
config = TrainConfig(epochs=3, steps_per_epoch=5, batch_size=2, image_size=64, decoder_channels=(16,) * 5,
                     val_fraction=0, workers=1, device="cpu", threads=1, augment=AugmentConfig(enabled=False),
                     precision="fp32")
steps = itertools.count()
def stop():
    if sys.argv[3] == "error" and next(steps) == 2:
        raise ValueError("the caller's own error")
    return False
events = train_model(load_patients(sys.argv[1]), config, sys.argv[2], stop)
for _ in range(4):
    next(events)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="multiprocessing's exit waits for workers only where they fork")
@pytest.mark.parametrize("ending", ["half-run", "error"])
def test_a_script_whose_training_is_open_at_its_exit_ends(sample_patient_dir, tmp_path, ending):
    """The loader's workers ignore SIGTERM, which multiprocessing sends them when Python exits with them alive (kept
    by a half-run training generator, or an uncaught error's traceback); then it waits for them, and the script never
    ended."""
    source = str(Path(napari_lgg_unet.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    script = subprocess.Popen([sys.executable, "-c", _OPEN_AT_EXIT, str(sample_patient_dir), str(tmp_path / "m"),
                               ending], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        error = script.communicate(timeout=120)[1]
    except subprocess.TimeoutExpired:
        script.kill()  # its worker notices its parent is gone within seconds
        script.communicate()
        pytest.fail("the script did not end")
    assert script.returncode == (1 if ending == "error" else 0), error
    assert ("the caller's own error" in error) == (ending == "error")


def test_a_failed_training_ends_its_loader_workers_though_its_error_is_kept(sample_patient_dir, tmp_path):
    """A notebook keeps the last error, whose traceback keeps the run's loader: its workers stayed for as long as the
    kernel, and kept it from ending (see the test above)."""
    import multiprocessing

    from napari_lgg_unet.engine.io import load_patients

    before = set(multiprocessing.active_children())
    tiny = dict(FAST, batch_size=2, decoder_channels=(16, 16, 16, 16, 16), val_fraction=0, workers=1)

    def failing_stop() -> bool:
        raise ValueError("the caller's own error")

    with pytest.raises(ValueError) as failed:
        list(train_model(load_patients(sample_patient_dir), TrainConfig(epochs=2, steps_per_epoch=3, **tiny),
                         tmp_path / "m", failing_stop))
    assert failed.value.__traceback__ is not None and set(multiprocessing.active_children()) == before


def test_a_stop_during_the_first_validation_still_leaves_the_first_epochs_model(scans, tmp_path, monkeypatch):
    """A stop asked while epoch 1 was validated ended the validation, recorded no epoch and left no model: the
    trained epoch was thrown away (a stop one step earlier kept it). The first validation runs whole, as it does for a
    stop asked during the first epoch's steps; a stop during a later validation still ends it at once (test above)."""
    asked = []

    def watched(*args, **kwargs):
        for batch in volume_logits(*args, **kwargs):
            asked.append(True)  # the stop is asked during epoch 1's validation
            yield batch

    volume_logits = train.volume_logits
    monkeypatch.setattr(train, "volume_logits", watched)
    config = TrainConfig(epochs=3, steps_per_epoch=2, val_fraction=0.34, **FAST)
    events = list(train_model(scans, config, tmp_path / "m", lambda: bool(asked)))
    assert [e.epoch for e in events if isinstance(e, EpochEnd)] == [1]
    assert isinstance(events[-1], Finished) and events[-1].stopped and events[-1].best_epoch == 1
    assert load_model(tmp_path / "m").config.training.best_epoch == 1
