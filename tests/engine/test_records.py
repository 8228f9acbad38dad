"""records: a model's training provenance and calibration, loaded from config.json as old or new code wrote it."""

import dataclasses

import pytest

from napari_lgg_unet.engine.errors import ModelError
from napari_lgg_unet.engine.records import Calibration, KeepLargestScore, TrainingRecord
from napari_lgg_unet.engine.validate import from_json


def test_an_old_style_dict_without_the_newer_fields_loads_with_their_defaults():
    old = {"config": {"epochs": 5}, "split": {"train": ["A", "B"], "validation": ["C"]}, "device": "cpu",
           "history": [{"epoch": 1, "train_loss": 0.5}], "no_longer_written": 1}
    record = from_json(TrainingRecord, old)
    assert record.config == {"epochs": 5} and record.device == "cpu" and record.history == old["history"]
    assert record.calibration is None and record.best_epoch is None and record.processes == 1


def test_a_nested_calibration_becomes_typed():
    data = {"calibration": {"patients": ["C"], "mean_dice": 0.7, "best_keep_largest": {"threshold": 0.4}}}
    calibration = from_json(TrainingRecord, data).calibration
    assert calibration == Calibration(["C"], ["as-is"], 0.7, KeepLargestScore(0.4, 0.0))


def test_a_record_round_trips_through_asdict():
    record = TrainingRecord(split={"test": ["D"]}, best_epoch=2, calibration=Calibration(mean_dice=0.5))
    assert from_json(TrainingRecord, dataclasses.asdict(record)) == record


def test_patients_of_a_split_and_none_for_a_model_trained_elsewhere():
    record = from_json(TrainingRecord, {"split": {"train": ["A", "B"]}})
    assert record.patients("train") == ["A", "B"] and record.patients("test") == []
    record.patients("train").append("X")  # a copy: the record itself stays as loaded
    assert record.patients("train") == ["A", "B"]


def test_a_wrong_type_is_refused_as_the_error_asked_for():
    with pytest.raises(ModelError, match="calibration.mean_dice"):
        from_json(TrainingRecord, {"calibration": {"mean_dice": "high"}}, ModelError)
