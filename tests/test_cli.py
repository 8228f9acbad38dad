"""The `lgg-unet` command: real runs end to end, and every bad input ends in one line on stderr and exit code 2."""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch

from napari_lgg_unet.cli import main
from napari_lgg_unet.engine.model import CONFIG_FILE
from napari_lgg_unet.engine.postprocess import PostprocessConfig
from napari_lgg_unet.sample_data import SAMPLE_PATIENT


def _one_line_error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and err.startswith("lgg-unet: error:") and "Traceback" not in err
    return err


def test_predict_writes_a_0_255_mask_with_the_patient_shape(sample_patient_dir, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "mask.tif"
    assert main(
        ["predict", "--model", str(tiny_model_dir), "--input", str(sample_patient_dir), "--output", str(out)]
    ) == 0
    mask = tifffile.imread(out)
    n = len(list(sample_patient_dir.glob("*_mask.tif")))
    assert mask.shape == (n, 256, 256) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}


def test_predict_on_a_tiff_stack_keeps_its_shape(tiny_model_dir, tmp_path):
    tifffile.imwrite(tmp_path / "scan.tif", np.random.default_rng(0).integers(0, 999, (3, 70, 90)).astype(np.uint16))
    assert main(["predict", "--model", str(tiny_model_dir), "--input", str(tmp_path / "scan.tif"),
                 "--output", str(tmp_path / "o.tif")]) == 0
    assert tifffile.imread(tmp_path / "o.tif").shape == (3, 70, 90)


@pytest.mark.parametrize("shape", [(70, 90), (70, 90, 3)])
def test_predict_on_a_2d_image_writes_a_2d_mask_as_the_dataset_s_slice_masks_are(tiny_model_dir, tmp_path, shape):
    tifffile.imwrite(tmp_path / "slice.tif", np.random.default_rng(0).integers(0, 255, shape).astype(np.uint8))
    assert main(["predict", "--model", str(tiny_model_dir), "--input", str(tmp_path / "slice.tif"),
                 "--output", str(tmp_path / "o.tif")]) == 0
    assert tifffile.imread(tmp_path / "o.tif").shape == (70, 90)


def test_train_then_evaluate_writes_the_documented_json(lgg_root, sample_patient_dir, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("TCGA_CS_4941_19960909", "TCGA_CS_4942_19970222"):
        (data / name).symlink_to(lgg_root / name)
    (data / SAMPLE_PATIENT).symlink_to(sample_patient_dir)
    model = tmp_path / "model"
    argv = ["train", "--data", str(data), "--out", str(model), "--epochs", "1", "--steps-per-epoch", "3",
            "--batch-size", "4", "--image-size", "64", "--decoder-channels", "16,16,16,16,16", "--workers", "0",
            "--val-fraction", "0.3", "--augment", "flair_only=0.5,horizontal_flip=false",
            "--validate-on", "as-is,flair-only"]
    assert main(argv) == 0
    assert "best epoch 1" in capsys.readouterr().out
    report = tmp_path / "r.json"
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(report.read_text())
    assert set(result) == {"run", "mean_dice", "median_dice", "mean_iou", "mean_accuracy", "slices_per_second",
                           "patients"}
    assert result["run"]["model"] == str(model) and result["run"]["split"] == "all"  # which scoring this file holds
    assert result["run"]["weights_id"] == json.loads((model / CONFIG_FILE).read_text())["weights_id"]
    assert result["run"]["postprocess"]["threshold"] == 0.5 and result["run"]["input_variant"] == "as-is"
    assert set(result["patients"]) == {p.name for p in data.iterdir()}
    for name, row in result["patients"].items():
        assert set(row) == {"dice", "iou", "accuracy", "slices"} and name in printed
        assert 0.0 <= row["dice"] <= 1.0 and row["slices"] == len(list((data / name).glob("*_mask.tif")))
    assert result["mean_dice"] == pytest.approx(np.mean([r["dice"] for r in result["patients"].values()]))
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--split", "validation"]) == 0
    trained = json.loads((model / CONFIG_FILE).read_text())["training"]
    assert trained["config"]["augment"]["flair_only"] == 0.5 and not trained["config"]["augment"]["horizontal_flip"]
    assert "val_dice_flair_only" in trained["history"][0]
    assert main(["calibrate", "--model", str(model), "--data", str(data), "--input-variants", "as-is,flair-only"]) == 0
    config = json.loads((model / CONFIG_FILE).read_text())
    validation = config["training"]["split"]["validation"]
    assert config["training"]["calibration"]["patients"] == validation and len(validation) == 1
    assert config["training"]["calibration"]["input_variants"] == ["as-is", "flair-only"]
    assert config["postprocess"]["threshold"] in (0.3, 0.4, 0.5, 0.6, 0.7) and not config["postprocess"]["keep_largest"]
    largest = config["training"]["calibration"]["best_keep_largest"]
    assert 0.0 <= largest["mean_dice"] <= 1.0 and largest["threshold"] in (0.3, 0.4, 0.5, 0.6, 0.7)
    assert f"Best with keep largest: threshold {largest['threshold']}" in capsys.readouterr().out


def _model_of_the_defaults_recipe(folder: Path, **training: object) -> Path:
    """An untrained model built as the default is (its network, inputs and preprocessing), with its own record."""
    from napari_lgg_unet.engine.model import build_network, read_config, save_model
    from napari_lgg_unet.engine.records import TrainingRecord

    config = replace(read_config("default"), postprocess=PostprocessConfig(), weights_id="",
                     training=TrainingRecord(config={**read_config("default").training.config, **training}))
    return save_model(build_network(config), config, folder)


def test_a_model_trained_on_every_patient_adopts_its_recipe_models_calibration(tiny_model_dir, tmp_path, capsys):
    from napari_lgg_unet.engine.model import read_config

    model = _model_of_the_defaults_recipe(tmp_path / "all-patients", val_fraction=0.0)
    weights = (model / "model.safetensors").read_bytes()
    assert main(["calibrate", "--model", str(model), "--like", "default"]) == 0
    shipped, adopted = read_config("default"), read_config(model)
    assert adopted.postprocess == shipped.postprocess and adopted.weights_id != shipped.weights_id
    assert adopted.training.calibration.adopted_from == f"default (weights {shipped.weights_id})"
    assert adopted.training.calibration.patients == shipped.training.calibration.patients
    assert (model / "model.safetensors").read_bytes() == weights
    assert "adopted from default" in capsys.readouterr().out
    assert "either --data" in _one_line_error(capsys, ["calibrate", "--model", str(model)])
    assert "records no calibration" in _one_line_error(capsys, ["calibrate", "--model", str(model), "--like",
                                                               str(tiny_model_dir)])


@pytest.mark.parametrize("recipe", ["tiny", "bce"])
def test_a_calibration_is_not_adopted_by_a_model_of_another_recipe(tiny_model_dir, tmp_path, capsys, recipe):
    """A 64-pixel model without the default's extra inputs, or one trained with another loss, reads the probabilities
    another way: the default's threshold and minimum size would be numbers without meaning for it."""
    model = tmp_path / "mine"
    if recipe == "tiny":
        shutil.copytree(tiny_model_dir, model)
        expected = ["image size 256 vs 64 here", "neighbouring slices 2 vs 0 here", "click inputs True vs False here"]
    else:
        _model_of_the_defaults_recipe(model, loss="bce")
        expected = ["loss dice+bce (BCE weight 1.0) vs bce here"]
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    message = _one_line_error(capsys, ["calibrate", "--model", str(model), "--like", "default"])
    assert "default is not of this model's recipe" in message and all(part in message for part in expected)
    assert message.endswith("calibrate this model itself on folders (--data) of patients with masks")  # API and CLI
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before  # no config change, no lock file left


@pytest.mark.parametrize("how", [["--like", "default"], ["--data", "patients"]])
def test_calibrating_a_file_says_it_is_not_a_model_folder_and_leaves_it_alone(tmp_path, capsys, how):
    mine = tmp_path / "model.pt"
    mine.write_text("my weights")
    message = _one_line_error(capsys, ["calibrate", "--model", str(mine), *how])
    assert f"{mine} is a file, not a model folder" in message and "output folder" not in message
    assert mine.read_text() == "my weights" and [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_adopting_a_calibration_into_a_folder_that_holds_no_model_refuses_and_writes_nothing(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"name": "my settings"}')
    (tmp_path / "empty").mkdir()
    assert "is not a napari-lgg-unet/1 model" in _one_line_error(capsys, ["calibrate", "--model", str(mine), "--like",
                                                                       "default"])
    assert "not a model folder" in _one_line_error(capsys, ["calibrate", "--model", str(tmp_path / "empty"), "--like",
                                                            "default"])
    assert [p.name for p in mine.iterdir()] == ["config.json"] and not any((tmp_path / "empty").iterdir())
    assert (mine / "config.json").read_text() == '{"name": "my settings"}'


def test_bad_inputs_exit_2_with_one_line_and_leave_no_output(tiny_model_dir, tmp_path, capsys):
    model = str(tiny_model_dir)
    out = tmp_path / "o.tif"
    assert "not found" in _one_line_error(
        capsys, ["predict", "--model", model, "--input", str(tmp_path / "nope"), "--output", str(out)]
    )
    (tmp_path / "empty").mkdir()
    assert "no patient folders" in _one_line_error(
        capsys, ["predict", "--model", model, "--input", str(tmp_path / "empty"), "--output", str(out)]
    )
    (tmp_path / "broken.tif").write_bytes(b"garbage")
    assert "cannot read" in _one_line_error(
        capsys, ["predict", "--model", model, "--input", str(tmp_path / "broken.tif"), "--output", str(out)]
    )
    tifffile.imwrite(tmp_path / "four.tif", np.zeros((2, 16, 16, 4), np.uint8))
    assert "channels" in _one_line_error(
        capsys, ["predict", "--model", model, "--input", str(tmp_path / "four.tif"), "--output", str(out)]
    )
    patient = tmp_path / "P_1"
    patient.mkdir()
    tifffile.imwrite(patient / "P_1_1.tif", np.zeros((8, 8, 3), np.uint8))
    tifffile.imwrite(patient / "P_1_1_mask.tif", np.zeros((9, 8), np.uint8))
    assert "does not match" in _one_line_error(capsys, ["evaluate", "--model", model, "--data", str(patient)])
    assert "model folder not found" in _one_line_error(capsys, [
        "predict", "--model", str(tmp_path / "nomodel"), "--input", str(tmp_path / "four.tif"), "--output", str(out)
    ])
    message = _one_line_error(capsys, [
        "predict", "--model", str(tmp_path / "four.tif"), "--input", str(tmp_path / "four.tif"), "--output", str(out)
    ])
    assert f"{tmp_path / 'four.tif'} is a file, not a model folder" in message  # not 'not found': it is there
    assert "the model name is empty" in _one_line_error(capsys, [  # not ". is not a model folder"
        "predict", "--model", "", "--input", str(tmp_path / "four.tif"), "--output", str(out)
    ])
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / CONFIG_FILE).write_text("{")
    assert "corrupt" in _one_line_error(capsys, ["evaluate", "--model", str(corrupt), "--data", str(patient)])
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_evaluate_refuses_a_json_it_may_not_or_cannot_write_before_the_model_runs(sample_patient_dir, tiny_model_dir,
                                                                                  tmp_path, capsys, monkeypatch):
    mine, notes = tmp_path / "mine.json", tmp_path / "notes"
    mine.write_text('{"mine": 1}')  # a user's own file, given as --json by mistake
    notes.write_text("x")
    monkeypatch.setattr("napari_lgg_unet.engine.model.load_model", lambda *_, **__: pytest.fail("refused too late"))
    argv = ["evaluate", "--model", str(tiny_model_dir), "--data", str(sample_patient_dir), "--json"]
    assert "already exists; give --overwrite" in _one_line_error(capsys, [*argv, str(mine)])
    assert "is a folder; give a file name" in _one_line_error(capsys, [*argv, str(tmp_path)])
    assert f"{notes} is a file, not a folder" in _one_line_error(capsys, [*argv, str(notes / "r.json")])
    assert mine.read_text() == '{"mine": 1}' and notes.read_text() == "x"
    monkeypatch.undo()
    assert main([*argv, str(mine), "--overwrite"]) == 0
    assert SAMPLE_PATIENT in json.loads(mine.read_text())["patients"]


def test_evaluate_refuses_a_json_in_a_folder_it_may_not_write_before_the_model_runs(sample_patient_dir, tiny_model_dir,
                                                                                     tmp_path, capsys, monkeypatch):
    """A --json in a read-only folder (a shared data folder, a read-only disk) failed only after every patient was
    segmented: a long evaluation lost for a typo of its results' path. Permission is faked: root may write anywhere."""
    shared, access = tmp_path / "shared", os.access
    shared.mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != shared and access(path, mode, **kw))
    monkeypatch.setattr("napari_lgg_unet.engine.model.load_model", lambda *_, **__: pytest.fail("refused too late"))
    argv = ["evaluate", "--model", str(tiny_model_dir), "--data", str(sample_patient_dir), "--json"]
    for json_path in (shared / "r.json", shared / "new" / "r.json"):
        assert f"{shared} is not writable for you" in _one_line_error(capsys, [*argv, str(json_path)])
    assert list(shared.iterdir()) == []


def test_predict_refuses_an_output_below_a_file_before_the_model_runs(tiny_model_dir, tmp_path, capsys, monkeypatch):
    tifffile.imwrite(tmp_path / "scan.tif", np.zeros((2, 16, 16), np.uint8))
    (tmp_path / "notes").write_text("x")
    monkeypatch.setattr("napari_lgg_unet.engine.model.load_model", lambda *_, **__: pytest.fail("refused too late"))
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(tmp_path / "scan.tif"),
            "--output", str(tmp_path / "notes" / "mask.tif")]
    assert f"{tmp_path / 'notes'} is a file, not a folder" in _one_line_error(capsys, argv)
    assert (tmp_path / "notes").read_text() == "x"


def test_usage_errors_are_one_line_too(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", "x"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["train", "--help"], ["predict", "--help"]])
def test_help_and_version_answer_without_importing_torch_or_napari(argv):
    """`-X importtime` lists every module the process imported: none of the heavy ones may be among them."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "napari_lgg_unet", *argv],
                         capture_output=True, text=True)
    assert out.returncode == 0 and ("predict" in out.stdout or "lgg-unet 0" in out.stdout or "--" in out.stdout)
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "napari_lgg_unet.cli" in imported
    assert not imported & {"torch", "segmentation_models_pytorch", "napari", "numpy", "tqdm"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA, so asking for it is not an error")
def test_asking_for_a_missing_gpu_is_a_one_line_error(tiny_model_dir, tmp_path, capsys):
    argv = ["predict", "--model", str(tiny_model_dir), "--device", "cuda", "--input", str(tmp_path),
            "--output", str(tmp_path / "o.tif")]
    assert "no CUDA GPU" in _one_line_error(capsys, argv)


@pytest.mark.parametrize("where", ["the chosen model's config", "the chosen model's weights",
                                   "the default model's config", "a folder of masks in the chosen model's folder"])
def test_predict_refuses_an_output_in_a_model_folder_and_leaves_the_model_intact(tiny_model_dir, tmp_path, capsys,
                                                                                monkeypatch, where):
    model, default = tmp_path / "model", tmp_path / "default"
    shutil.copytree(tiny_model_dir, model)
    shutil.copytree(tiny_model_dir, default)  # stands in for the installed default model, which must not be risked
    monkeypatch.setattr("napari_lgg_unet.engine.model.default_model_path", lambda: default)
    scans = tmp_path / "scans"
    scans.mkdir()
    for name in ("a", "b"):
        nib.save(nib.Nifti1Image(np.zeros((32, 32, 2), np.int16), np.eye(4)), scans / f"{name}.nii.gz")
    scan, output = {
        "the chosen model's config": (scans / "a.nii.gz", model / CONFIG_FILE),
        "the chosen model's weights": (scans / "a.nii.gz", model / "model.safetensors"),
        "the default model's config": (scans / "a.nii.gz", default / CONFIG_FILE),
        "a folder of masks in the chosen model's folder": (scans, model / "masks"),
    }[where]
    before = {p: p.read_bytes() for folder in (model, default) for p in folder.iterdir()}
    error = _one_line_error(capsys, ["predict", "--model", str(model), "--input", str(scan), "--output", str(output)])
    assert "which is part of a model folder" in error
    assert {p: p.read_bytes() for folder in (model, default) for p in folder.iterdir()} == before


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_model_folder_that_holds_no_model_is_told_as_such_not_as_a_model_folder_the_output_lies_in(
        command, sample_patient_dir, tmp_path, capsys):
    """`--model .` (or a parent of the model) with the output in that folder was refused as "part of a model
    folder", which sent the user looking for a model where there is none."""
    output = (["--output", str(tmp_path / "mask.nii.gz")] if command == "predict"
              else ["--json", str(tmp_path / "r.json")])
    scan = ["--input" if command == "predict" else "--data", str(sample_patient_dir)]
    error = _one_line_error(capsys, [command, "--model", str(tmp_path), *scan, *output])
    assert f"{tmp_path} is not a model folder: it has no {CONFIG_FILE}" in error
    assert list(tmp_path.iterdir()) == []


def test_predict_over_the_mask_beside_its_scan_names_it_as_the_scans_manual_mask_even_with_overwrite(
        tiny_model_dir, tmp_path, capsys):
    """The first mask written beside a loose scan is read as its manual mask from then on (and may be corrected by
    hand): writing it again was refused as "part of the input", which named no reason, after --overwrite was given."""
    scan, mask = tmp_path / "a.nii.gz", tmp_path / "a_mask.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((32, 32, 2), np.int16), np.eye(4)), scan)
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(scan), "--output", str(mask)]
    assert main(argv) == 0
    before = mask.read_bytes()
    error = _one_line_error(capsys, [*argv, "--overwrite"])
    assert f"{mask} is the manual mask read with the input" in error
    assert mask.read_bytes() == before


def test_train_on_one_slice_warns_as_it_starts_that_nothing_is_validated_and_what_chooses_the_model(
        sample_patient_dir, tmp_path, capsys):
    """The same words as the Train widget's, from the engine: before, only the last line's "(training loss" said so."""
    tumour = next(m for m in sorted(sample_patient_dir.glob("*_mask.tif")) if tifffile.imread(m).any())
    data = tmp_path / "P"
    data.mkdir()
    shutil.copy(tumour, data / "P_1_mask.tif")
    shutil.copy(tumour.with_name(tumour.name.replace("_mask", "")), data / "P_1.tif")
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "m"), "--epochs", "1", "--steps-per-epoch", "1",
            "--batch-size", "2", "--image-size", "64", "--decoder-channels", "16,16,16,16,16", "--workers", "0",
            "--val-fraction", "0.2"]
    assert main(argv) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lgg-unet: warning:")]
    assert warned == ["lgg-unet: warning: no validation although the validation fraction is 0.2: there is one scan "
                      "with one slice to learn from, and validation needs a second scan (patients are split whole) or "
                      "a second labelled slice of this scan (held out from training); the best epoch is chosen by "
                      "training loss"]


@pytest.mark.parametrize("data, out", [("data/P", "data/P"), ("data/P", "data/P/model"), ("data", "data/models/m1"),
                                       ("linked", "linked/P/model")])
def test_train_refuses_an_out_folder_that_is_or_lies_in_its_data_and_writes_nothing(sample_patient_dir, tmp_path,
                                                                                   capsys, data, out):
    shutil.copytree(sample_patient_dir, tmp_path / "data" / "P")
    (tmp_path / "linked").mkdir()  # a root of links to patient folders kept elsewhere, as the docs build one
    (tmp_path / "linked" / "P").symlink_to(tmp_path / "data" / "P")
    before = sorted(tmp_path.rglob("*"))
    argv = ["train", "--data", str(tmp_path / data), "--out", str(tmp_path / out), "--epochs", "1",
            "--steps-per-epoch", "1", "--batch-size", "2", "--image-size", "64", "--decoder-channels", "16,16,16,16,16",
            "--workers", "0", "--val-fraction", "0"]
    assert "which is part of the input" in _one_line_error(capsys, argv)
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("out", ["weights/lgg-unet-default/fine-tuned", "weights/fine-tuned"])
def test_fine_tuning_the_default_never_writes_into_the_packages_weights_folder(sample_patient_dir, tiny_model_dir,
                                                                               tmp_path, capsys, monkeypatch, out):
    default = tmp_path / "weights" / "lgg-unet-default"
    shutil.copytree(tiny_model_dir, default)  # stands in for the installed default model, which must not be risked
    monkeypatch.setattr("napari_lgg_unet.engine.model.default_model_path", lambda: default)
    monkeypatch.setattr("napari_lgg_unet.engine.io.load_scan", lambda *_, **__: pytest.fail("refused too late"))
    before = sorted(tmp_path.rglob("*"))
    argv = ["train", "--data", str(sample_patient_dir), "--init", "default", "--out", str(tmp_path / out),
            "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2", "--workers", "0", "--val-fraction", "0"]
    assert "default model is part of the installed package" in _one_line_error(capsys, argv)
    assert sorted(tmp_path.rglob("*")) == before


def test_a_percent_sign_in_a_settings_help_shows_in_help_instead_of_crashing_it(monkeypatch, capsys):
    """argparse formats help texts with %: a setting's help saying '10% of' crashed every --help of its command."""
    from napari_lgg_unet import cli
    from napari_lgg_unet.engine.settings import settings_of

    def with_percent(cls):
        declared = settings_of(cls)
        first = next(iter(declared))
        return {**declared, first: replace(declared[first], help="keep 10% of the slices aside")}

    monkeypatch.setattr(cli, "settings_of", with_percent)
    with pytest.raises(SystemExit) as stopped:
        main(["train", "--help"])
    assert stopped.value.code == 0 and "keep 10% of the slices aside" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("command", ["train", "predict", "evaluate", "calibrate"])
def test_help_says_the_default_of_every_option_that_has_one(command):
    """An option left out takes its default: --help must say which (predict's --read-ahead and --backend, evaluate's
    --input-variant and calibrate's --input-variants did not). Flags (off unless given) and options whose default is
    "none given" (None, an empty set of changes) have nothing to say."""
    from napari_lgg_unet.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    silent = [action.option_strings[0] for action in commands[command]._actions
              if action.option_strings and action.default not in (None, False, {}, argparse.SUPPRESS)
              and "default" not in action.help]
    assert not silent, f"{command} --help does not say the default of " + ", ".join(silent)


def test_calibrate_refuses_an_input_variant_named_twice(tiny_model_dir, sample_patient_dir, capsys):
    """as-is,flair-only,as-is weighted as-is twice in the mean that chose the threshold; train's --validate-on
    refuses the same list."""
    with pytest.raises(SystemExit) as exit_info:
        main(["calibrate", "--model", str(tiny_model_dir), "--data", str(sample_patient_dir),
              "--input-variants", "as-is,flair-only,as-is"])
    assert exit_info.value.code == 2 and "comma-separated, each once" in capsys.readouterr().err


def test_a_model_without_a_split_is_calibrated_on_every_patient_and_a_split_short_of_patients_is_told(
        tiny_model_dir, sample_patient_dir, tmp_path, capsys):
    """A model trained elsewhere records no split: calibrate, whose --split defaults to validation, could not use
    --data at all, and the refusal named no way out; a split whose patients are partly missing from --data was scored
    on the rest without a word, a mean over fewer patients than the user asked for."""
    from napari_lgg_unet.engine.model import read_config, write_config
    from napari_lgg_unet.engine.records import TrainingRecord

    model = tmp_path / "elsewhere"
    shutil.copytree(tiny_model_dir, model)
    write_config(replace(read_config(model), training=TrainingRecord()), model)
    assert "give --split all" in _one_line_error(capsys, ["calibrate", "--model", str(model), "--data",
                                                         str(sample_patient_dir)])
    assert "leave out --split" in _one_line_error(capsys, ["evaluate", "--model", str(model), "--data",
                                                          str(sample_patient_dir), "--split", "test"])
    assert main(["calibrate", "--model", str(model), "--data", str(sample_patient_dir), "--split", "all"]) == 0
    assert "on 1 patient " in capsys.readouterr().out
    assert read_config(model).training.calibration.patients == [SAMPLE_PATIENT]

    split = TrainingRecord(split={"test": [SAMPLE_PATIENT, "TCGA_XX_0000_20000101"]})
    write_config(replace(read_config(model), training=split), model)
    assert main(["evaluate", "--model", str(model), "--data", str(sample_patient_dir), "--split", "test"]) == 0
    assert "1 of the model's 2 test patients are in" in capsys.readouterr().err


def _patients_some_without_masks(root: Path) -> Path:
    """Kaggle patients A (masks), B (none) and C (a mask for 1 of its 2 slices), and a NIfTI case D without labels."""
    rng = np.random.default_rng(0)
    for name, masked in (("A", 2), ("B", 0), ("C", 1)):
        (root / name).mkdir(parents=True)
        for number in (1, 2):
            tifffile.imwrite(root / name / f"{name}_{number}.tif", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
            if number <= masked:
                tifffile.imwrite(root / name / f"{name}_{number}_mask.tif", np.eye(32, dtype=np.uint8) * 255)
    (root / "D").mkdir()
    flair = nib.Nifti1Image(rng.integers(0, 500, (32, 32, 2), dtype=np.int16), np.eye(4))
    nib.save(flair, root / "D" / "D_flair.nii.gz")
    return root


def test_patients_without_masks_are_named_together_before_the_model_runs(tiny_model_dir, tmp_path, capsys,
                                                                         monkeypatch):
    """evaluate (and calibrate) stopped at the first patient without a manual mask, after segmenting those before
    it, with no JSON, and named that one alone: fixing it and running again met the next. Which patients have masks
    is told by their files' names, so every one without is named at once, before any is segmented."""
    from napari_lgg_unet.engine.errors import InputError
    from napari_lgg_unet.engine.evaluate import evaluate_patients
    from napari_lgg_unet.engine.io import find_scans
    from napari_lgg_unet.engine.model import load_model
    from napari_lgg_unet.engine.predict import SegmentOptions

    root = _patients_some_without_masks(tmp_path / "data")
    said = ("3 of the 4 patients (B, C and D) have no manual mask to score against: a Kaggle patient needs a "
            "<patient>_<n>_mask.tif beside every slice, a case a labels file (*_seg or *_mask beside its scans, or "
            "labelsTr/<case> for nnU-Net); add them, or leave them out")
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    monkeypatch.setattr("napari_lgg_unet.engine.cohort.segment_volume", lambda *_, **__: pytest.fail("too late"))
    for argv in (["evaluate", "--model", str(model), "--data", str(root), "--json", str(tmp_path / "r.json")],
                 ["calibrate", "--model", str(model), "--data", str(root), "--split", "all"]):
        assert _one_line_error(capsys, argv) == f"lgg-unet: error: {said}"
        assert capsys.readouterr().out == ""  # not even the table's header
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "model"]
    with pytest.raises(InputError) as refused:  # when called, not when its first result is asked for
        evaluate_patients(load_model(model, "cpu"), find_scans(root), SegmentOptions())
    assert str(refused.value) == said
    for name in ("B", "C"):
        shutil.rmtree(root / name)
    with pytest.raises(InputError, match=r"^D has no manual mask to score against: .+; add it, or leave it out$"):
        evaluate_patients(load_model(model, "cpu"), [root / "D"], SegmentOptions())


def test_train_names_every_patient_without_a_mask_before_loading_any(tmp_path, capsys, monkeypatch):
    """train loaded the patients one by one and stopped at the first without a manual mask, naming that one alone
    (after loading those before it: about 40 s for the 81 Kaggle patients); fixing it and running again met the
    next. Every one without a mask is named at once, before any is loaded, and no run folder is made."""
    root = _patients_some_without_masks(tmp_path / "data")
    monkeypatch.setattr("napari_lgg_unet.engine.io.load_scan", lambda *_, **__: pytest.fail("loaded too soon"))
    argv = ["train", "--data", str(root), "--out", str(tmp_path / "run"), "--epochs", "1", "--threads", "1"]
    assert _one_line_error(capsys, argv) == (
        "lgg-unet: error: 3 of the 4 patients (B, C and D) have no manual mask to learn from: a Kaggle patient needs "
        "a <patient>_<n>_mask.tif beside every slice, a case a labels file (*_seg or *_mask beside its scans, or "
        "labelsTr/<case> for nnU-Net); add them, or leave them out")
    assert not (tmp_path / "run").exists()


class _SignalUnanswered(Exception):
    """Raised by the test's own handler: a stop signal the command left to the system's default, which kills the
    process without a word (here it would have killed the test run)."""


def _main_signalled_in(monkeypatch, module, name: str, number: int, argv: list[str]) -> int:
    """`main(argv)`, where this process sends itself signal `number` as `module.name` is first called."""
    import signal

    real, sent = getattr(module, name), []

    def signalled(*args, **kwargs):
        if not sent:
            sent.append(number)
            os.kill(os.getpid(), number)
        return real(*args, **kwargs)

    def unanswered(*_):
        raise _SignalUnanswered(f"signal {number} reached the test's own handler")

    monkeypatch.setattr(module, name, signalled)
    previous = signal.signal(number, unanswered)
    try:
        return main(argv)
    finally:
        signal.signal(number, previous)
        assert sent, f"{module.__name__}.{name} was never called"


@pytest.mark.parametrize("command, where, name, signal_name", [
    ("evaluate", "cohort", "segment_volume", "SIGTERM"),
    ("calibrate", "cohort", "segment_volume", "SIGUSR1"),
    ("calibrate", "calibrate", "write_config", "SIGTERM"),
    ("predict", "cohort", "segment_volume", "SIGTERM"),
    ("train", "io", "load_scan", "SIGTERM"),  # while train loads its patients, before it can stop between steps
])
def test_a_scheduler_s_stop_signal_ends_a_command_as_ctrl_c_does_with_one_line_and_nothing_half_written(
        tiny_model_dir, sample_patient_dir, tmp_path, capsys, monkeypatch, command, where, name, signal_name):
    """SIGTERM (a scheduler's stop, `kill`) or SIGUSR1 killed evaluate, calibrate, one scan's predict and train's
    loading without a word, leaving calibrate's lock file in the model folder and a temporary file of a write. Now
    they end as Ctrl-C does: `lgg-unet: interrupted`, exit code 130, no --json, mask or model written, and the model
    folder (its config.json above all) as it was."""
    import signal
    from importlib import import_module

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    before = {path.name: path.read_bytes() for path in model.iterdir()}
    out = tmp_path / "out"
    argv = {
        "evaluate": ["evaluate", "--model", str(model), "--data", str(sample_patient_dir), "--json", str(out)],
        "calibrate": ["calibrate", "--model", str(model), "--data", str(sample_patient_dir), "--split", "all"],
        "predict": ["predict", "--model", str(model), "--input", str(sample_patient_dir), "--output", f"{out}.tif"],
        "train": ["train", "--data", str(sample_patient_dir.parent), "--out", str(out), "--epochs", "1",
                  "--device", "cpu", "--workers", "0"],
    }[command]
    module = import_module(f"napari_lgg_unet.engine.{where}")
    code = _main_signalled_in(monkeypatch, module, name, getattr(signal, signal_name), argv)
    assert capsys.readouterr().err == "lgg-unet: interrupted\n" and code == 130
    assert {path.name: path.read_bytes() for path in model.iterdir()} == before  # no lock, no temporary file
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]


def test_ctrl_c_that_an_interrupted_import_swallows_still_ends_predict_as_interrupted(
        tiny_model_dir, sample_patient_dir, tmp_path, capsys, monkeypatch):
    """A Ctrl-C a second after the start lands inside scipy's import of numpy, which swallows the KeyboardInterrupt
    and leaves numpy half-made: predict then failed with a RecursionError, reported as `internal error` with exit
    code 1. The user's stop is still one line, `lgg-unet: interrupted`, exit code 130, and nothing is written."""
    import signal

    from napari_lgg_unet.engine import outputs

    def interrupted_import(*_):
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:
            pass  # as the import machinery lost it
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(outputs, "model_folders", interrupted_import)
    out = tmp_path / "out" / "m.tif"
    code = main(["predict", "--model", str(tiny_model_dir), "--input", str(sample_patient_dir), "--output", str(out)])
    assert capsys.readouterr().err == "lgg-unet: interrupted\n" and code == 130
    assert not out.parent.exists()


def test_ctrl_c_while_torch_loads_is_held_until_it_has_loaded_then_ends_the_command_as_interrupted(
        tiny_model_dir, sample_patient_dir, tmp_path, capsys, monkeypatch):
    """A Ctrl-C inside torch's import was swallowed there (numpy left half-made: a RecursionError later) or thrown
    through its C++ code (`terminate called after throwing ... KeyboardInterrupt`, the process aborted). It waits
    until torch has loaded, then ends the command as Ctrl-C does, before anything is read or written."""
    import signal

    from napari_lgg_unet.engine import distributed, outputs

    loaded, real = [], distributed.interrupt_on_signals

    def ctrl_c_while_loading(stopped):
        os.kill(os.getpid(), signal.SIGINT)  # as if it came while `import torch` ran, just before
        loaded.append(True)
        return real(stopped)

    monkeypatch.setattr(distributed, "interrupt_on_signals", ctrl_c_while_loading)
    monkeypatch.setattr(outputs, "model_folders", lambda *_: pytest.fail("the command ran"))
    out = tmp_path / "m.tif"
    code = main(["predict", "--model", str(tiny_model_dir), "--input", str(sample_patient_dir), "--output", str(out)])
    assert loaded and code == 130 and capsys.readouterr().err == "lgg-unet: interrupted\n"
    assert not out.exists()


# `lgg-unet predict` run as its console script runs it, with `segment_volume` saying on stdout that it has started
# and then waiting for the test's Ctrl-C: the tiny model segments the sample in less time than the signals take
_PREDICT_WAITING_FOR_CTRL_C = """
import sys, time
from napari_lgg_unet import cli
from napari_lgg_unet.engine import cohort

def waiting(*_args, **_kwargs):
    print("waiting for Ctrl-C", flush=True)
    time.sleep(600)

cohort.segment_volume = waiting
sys.argv[0] = "lgg-unet"
sys.exit(cli.main())
"""


@pytest.mark.parametrize("presses, gap", [(2, 0.01), (math.inf, 0.002)], ids=["twice-10ms-apart", "until-it-ends"])
def test_ctrl_c_pressed_again_while_predict_stops_still_ends_it_with_one_line_and_exit_code_130(
        tiny_model_dir, sample_patient_dir, tmp_path, presses, gap):
    """A second Ctrl-C 10 ms after the first raised again while the first one's clean-up or Python's exit hooks ran
    (torch's): "Exception ignored in atexit callback ... KeyboardInterrupt" after "lgg-unet: interrupted", or the
    process killed by SIGINT (exit code -2). Any number of them now ends it as one does."""
    out = tmp_path / "out" / "m.tif"
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(sample_patient_dir), "--output", str(out),
            "--precision", "fp32"]
    code, _, err = _ctrl_c_pressed(_PREDICT_WAITING_FOR_CTRL_C, argv, "stdout", "waiting for Ctrl-C", presses, gap)
    assert (code, err) == (130, "lgg-unet: interrupted\n")
    assert not out.parent.exists()


# `lgg-unet train` run as its console script runs it
_TRAIN_AS_ITS_CONSOLE_SCRIPT = """
import sys
from napari_lgg_unet import cli

sys.argv[0] = "lgg-unet"
sys.exit(cli.main())
"""
_TINY_TRAINING = ["--steps-per-epoch", "10", "--batch-size", "4", "--image-size", "64", "--encoder", "mobilenet_v2",
                  "--decoder-channels", "16,16,16,16,16", "--val-fraction", "0", "--no-augment", "--workers", "0",
                  "--threads", "1", "--precision", "fp32", "--device", "cpu"]


@pytest.mark.parametrize("presses, gap", [(2, 0.01), (2, 0.2), (math.inf, 0.002)],
                         ids=["twice-10ms-apart", "twice-200ms-apart", "until-it-ends"])
def test_ctrl_c_pressed_again_while_training_stops_still_ends_it_with_its_best_model_and_exit_code_0(
        sample_patient_dir, tmp_path, presses, gap):
    """Training answers the first Ctrl-C between steps; one pressed after training had stopped, while `train` ended
    (torch's exit hooks), printed "Exception ignored in atexit callback ... KeyboardInterrupt" or killed the process by
    SIGINT (exit code -2, not 0). Any number of them now ends it as one does, and --resume continues the run."""
    from napari_lgg_unet.engine.model import load_model
    from napari_lgg_unet.engine.run_folder import RunFolder

    out = tmp_path / "run"
    argv = ["train", "--data", str(sample_patient_dir.parent), "--out", str(out), *_TINY_TRAINING]
    code, out_text, err = _ctrl_c_pressed(_TRAIN_AS_ITS_CONSOLE_SCRIPT, [*argv, "--epochs", "1000"], "stderr",
                                          "epoch 1/1000 step", presses, gap)  # once training takes steps
    assert code == 0 and "Traceback" not in err and "Exception ignored" not in err, err
    assert out_text.splitlines()[-1].startswith("stopped: best epoch 1")
    assert RunFolder(out).holds_resume_state() and load_model(out).config.training.best_epoch == 1
    assert not [path.name for path in out.iterdir() if ".tmp" in path.name] and not (out / ".lock").read_bytes()
    assert main([*argv, "--epochs", "2", "--resume"]) == 0
    assert [record["epoch"] for record in json.loads((out / "history.json").read_text())] == [1, 2]


def test_a_stop_that_a_library_swallowed_does_not_leave_the_command_deaf_to_the_next_one():
    """A Ctrl-C caught on its way (an import or a `__del__` that swallows it) set the command's stop, and from then on
    every SIGTERM and Ctrl-C was ignored: a cohort of hours that went on after it could be ended by SIGKILL only."""
    import signal

    from napari_lgg_unet.cli import _signals_as_ctrl_c

    with pytest.raises(KeyboardInterrupt), _signals_as_ctrl_c("predict", program=False):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(1000))
        except KeyboardInterrupt:
            pass  # swallowed by a library: the command goes on
        os.kill(os.getpid(), signal.SIGTERM)
        sum(range(1000))


def test_a_stop_sent_while_the_first_ones_clean_up_runs_is_ignored():
    """The clean-up a stop runs (a lock let go, the run's masks removed) is not cut short by a second Ctrl-C."""
    import signal

    from napari_lgg_unet.cli import _signals_as_ctrl_c

    cleaned = []
    with pytest.raises(KeyboardInterrupt), _signals_as_ctrl_c("predict", program=False):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(1000))
        finally:
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(1000))
            cleaned.append(True)
    assert cleaned == [True]


def test_main_called_from_another_thread_runs_its_command_without_signal_handlers(tmp_path, capsys):
    """Python installs signal handlers from the main thread only: a script's worker thread calling main() got an
    internal error from the stop-signal handling before its command ran."""
    import threading

    codes = []
    worker = threading.Thread(target=lambda: codes.append(main(["evaluate", "--model", str(tmp_path / "none"),
                                                                "--data", str(tmp_path)])))
    worker.start()
    worker.join()
    assert codes == [2] and "lgg-unet: error:" in capsys.readouterr().err


def test_a_stop_sent_after_training_answered_one_and_stopped_is_ignored_not_an_interruption():
    """A training that stopped between steps (`stop_on_signals` sets the command's stop as it ends) has saved and
    ends with exit code 0: a Ctrl-C pressed again before the command returned must not make it "interrupted"."""
    import signal

    from napari_lgg_unet.cli import _signals_as_ctrl_c

    with _signals_as_ctrl_c("train", program=False) as stopped:
        stopped.set()  # as `stop_on_signals(ended=stopped)` does once training stopped and saved
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(1000))


def _ctrl_c_pressed(script: str, argv: list[str], stream: str, ready: str, presses: float,
                    gap: float) -> tuple[int, str, str]:
    """Run `script` (a command run as its console script) on `argv`, wait for a line on `stream` starting with
    `ready`, then press Ctrl-C `presses` times `gap` s apart, or until it ends: its exit code, stdout and stderr."""
    import signal

    process = subprocess.Popen([sys.executable, "-c", script, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    started = any(line.startswith(ready) for line in getattr(process, stream))
    sent = 0
    while started and process.poll() is None and sent < presses:
        process.send_signal(signal.SIGINT)
        sent += 1
        time.sleep(gap)
    out, err = process.communicate(timeout=300)
    assert started and sent >= 2, err
    return process.returncode, out, err


def test_an_error_line_holds_the_error_and_its_notes_and_no_empty_part():
    """A failed cohort adds what became of its masks as a note; an error of no words (a bare OSError) then printed
    "error: ; the masks ...". With neither, the error's class names it."""
    from napari_lgg_unet.cli import _one_line
    from napari_lgg_unet.engine.errors import InputError

    error = OSError()
    error.add_note("the masks this run made were removed")
    assert _one_line(error) == "the masks this run made were removed"
    error = InputError("cannot read\n  a.nii.gz")
    error.add_note("the masks this run made were removed")
    assert _one_line(error) == "cannot read a.nii.gz; the masks this run made were removed"
    assert _one_line(OSError()) == "OSError"
