"""The pretrained default model ships in the package, loads by name and reproduces its model card."""

import json
from pathlib import Path

import pytest

from napari_lgg_unet.cli import main
from napari_lgg_unet.engine.io import load_patient
from napari_lgg_unet.engine.metrics import volume_scores
from napari_lgg_unet.engine.model import WEIGHTS_FILE, default_model_path, load_model
from napari_lgg_unet.engine.predict import segment_volume
from napari_lgg_unet.sample_data import SAMPLE_PATIENT

CARD_RESULTS = Path(__file__).resolve().parents[1] / "docs" / "default-model-test.json"


@pytest.fixture(scope="module")
def default_model():
    return load_model("default")


def test_default_model_loads_by_name_and_is_small(default_model):
    assert (default_model_path() / WEIGHTS_FILE).stat().st_size < 30 * 2**20
    assert default_model.config.preprocess.image_size % 32 == 0
    calibration = default_model.config.training.calibration
    assert calibration is not None and calibration.patients == default_model.config.training.patients("validation")
    assert 0 < calibration.mean_dice <= 1 and 0 < calibration.best_keep_largest.threshold < 1


def test_default_model_matches_its_model_card_on_a_held_out_patient(default_model, sample_patient_dir):
    training = default_model.config.training
    assert SAMPLE_PATIENT in training.patients("test")
    assert SAMPLE_PATIENT not in training.patients("train") + training.patients("validation")
    scan = load_patient(sample_patient_dir)
    dice = volume_scores(segment_volume(default_model, scan.image).mask, scan.mask).dice
    reported = json.loads(CARD_RESULTS.read_text())["patients"][SAMPLE_PATIENT]["dice"]
    assert dice == pytest.approx(reported, abs=0.01)


def test_cli_evaluates_the_default_model_on_a_folder_of_real_patients(lgg_root, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    test_patients = json.loads(CARD_RESULTS.read_text())["patients"]
    for name in sorted(test_patients)[:2]:
        (data / name).symlink_to(lgg_root / name)
    assert main(["evaluate", "--model", "default", "--data", str(data), "--json", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    for name, row in result["patients"].items():
        assert row["dice"] == pytest.approx(test_patients[name]["dice"], abs=0.01)
