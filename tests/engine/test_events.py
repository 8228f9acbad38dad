"""events: the training generator's event types carry their fields, and an epoch's record round-trips as a history
row."""

import dataclasses

import pytest

from napari_lgg_unet.engine.events import EpochEnd, EpochRecord, Finished, Prepared, Step, ValidationScores


def _record() -> EpochRecord:
    return EpochRecord(3, train_loss=0.4, lr=1e-3, seconds=2.0, selection_loss=0.35, validation={
        "as-is": ValidationScores(loss=0.3, dice=0.8, iou=0.7, accuracy=0.99),
        "flair-only": ValidationScores(loss=0.4, dice=0.6, iou=0.5, accuracy=0.98),
    })


def test_each_event_carries_its_fields_and_cannot_be_changed():
    step = Step(epoch=1, epochs=2, step=3, steps=4, loss=0.5, eta_seconds=6.0)
    assert (step.epoch, step.steps, step.loss) == (1, 4, 0.5)
    end = EpochEnd(epoch=1, epochs=2, record=_record(), best_epoch=1, best_val_loss=0.35, history=[_record()])
    assert end.record.main_validation.dice == 0.8
    assert Finished("m", None, None, stopped=True).history == [] and Prepared("go", 1, 2, 3, "m").first_epoch == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.loss = 0.0


def test_an_epoch_record_round_trips_through_its_history_row():
    record = _record()
    row = record.row()
    assert row["val_dice"] == 0.8 and row["val_dice_flair_only"] == 0.6 and row["selection_loss"] == 0.35
    assert EpochRecord.from_row(row, ("as-is", "flair-only")) == record


def test_a_row_without_a_variant_s_figures_leaves_it_out():
    row = _record().row()
    assert ValidationScores.from_row(row, "skull-stripped") is None
    back = EpochRecord.from_row(row, ("as-is", "skull-stripped"))
    assert list(back.validation) == ["as-is"]


def test_without_as_is_the_first_variant_is_the_main_validation():
    record = dataclasses.replace(_record(), validation={"flair-only": _record().validation["flair-only"]})
    assert record.main_validation == record.validation["flair-only"]
    assert dataclasses.replace(record, validation={}).main_validation is None
