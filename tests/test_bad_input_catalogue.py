"""The bad-input catalogue: each case is something a user (or a hostile file) can hand us.

Through the CLI every case ends with exit code 2, exactly one line on stderr and nothing half-written in the output
folder; through the API it raises the engine's own error type, with the same words. The widget cases are in
tests/widgets/test_bad_input_widgets.py; the bad model folders are shared with them (tests/bad_inputs.py).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
from safetensors.torch import save_file

from bad_inputs import BAD_IMAGES, BAD_MODELS, make_bad_model
from napari_lgg_unet import cli, launch
from napari_lgg_unet.engine import model as model_module
from napari_lgg_unet.engine.augment import AugmentConfig
from napari_lgg_unet.engine.errors import InputError, LggUnetError, ModelError
from napari_lgg_unet.engine.io import load_scan
from napari_lgg_unet.engine.model import default_model_path, load_model
from napari_lgg_unet.engine.postprocess import PostprocessConfig
from napari_lgg_unet.engine.predict import SegmentOptions, segment_volume
from napari_lgg_unet.engine.run_folder import RESUME_FILE, RESUME_FORMAT, LOCK_FILE, RunFolder
from napari_lgg_unet.engine.train import TrainConfig, train_model


@dataclass
class Workspace:
    """Inputs for one case (in `inputs`), a good model and patient, and the output folder that must stay clean."""

    inputs: Path
    out: Path
    model: Path
    patient: Path

    def file(self, name: str, data: bytes) -> Path:
        (self.inputs / name).write_bytes(data)
        return self.inputs / name

    def tiff(self, name: str, data: np.ndarray) -> Path:
        tifffile.imwrite(self.inputs / name, data)
        return self.inputs / name

    def nifti(self, name: str, data: np.ndarray, folder: Path | None = None) -> Path:
        path = (folder or self.inputs) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(data, np.eye(4)), path)
        return path

    def folder(self, name: str) -> Path:
        (self.inputs / name).mkdir()
        return self.inputs / name

    def kaggle_patient(self, image: np.ndarray, masks: list[np.ndarray] | None) -> Path:
        """A Kaggle-style folder `P` with one `P_<n>.tif` per slice of `image` and the given `_mask.tif` slices."""
        folder = self.folder("P")
        for number, data in enumerate(image, start=1):
            tifffile.imwrite(folder / f"P_{number}.tif", data)
        for number, data in enumerate(masks or [], start=1):
            tifffile.imwrite(folder / f"P_{number}_mask.tif", data)
        return folder


@pytest.fixture
def w(tmp_path: Path, tiny_model_dir: Path, sample_patient_dir: Path) -> Workspace:
    (tmp_path / "inputs").mkdir()
    (tmp_path / "out").mkdir()
    return Workspace(tmp_path / "inputs", tmp_path / "out", tiny_model_dir, sample_patient_dir)


def _nan_slice_the_percentiles_skip(w: Workspace) -> Path:
    """More voxels than the percentile sampling reads, so it samples every other slice and misses slice 1."""
    image = np.random.default_rng(0).random((66, 256, 256), dtype=np.float32)
    image[1] = np.nan
    return w.tiff("nan.tif", image)


def _infinite(w: Workspace) -> Path:
    image = np.ones((3, 32, 32), np.float32)
    image[2, 5, 5] = np.inf
    return w.tiff("inf.tif", image)


def _case_without_flair(w: Workspace) -> Path:
    case = w.folder("case")
    for sequence in ("t1", "t1ce"):
        w.nifti(f"case_{sequence}.nii.gz", np.zeros((16, 16, 4), np.float32), case)
    return case


def _two_flair_files(w: Workspace) -> Path:
    case = w.folder("case")
    w.nifti("a_flair.nii.gz", np.zeros((16, 16, 4), np.float32), case)
    w.nifti("a_flair.nii", np.zeros((16, 16, 4), np.float32), case)
    return case


def _slices_of_different_shapes(w: Workspace) -> Path:
    folder = w.folder("P")
    tifffile.imwrite(folder / "P_1.tif", np.zeros((32, 32, 3), np.uint8))
    tifffile.imwrite(folder / "P_2.tif", np.zeros((40, 32, 3), np.uint8))
    return folder


# name -> (make the scan, phrase of the refusal); each is refused by `predict --input` and by load_scan/segment_volume
BAD_SCANS: dict[str, tuple[Callable[[Workspace], Path], str]] = {
    "missing file": (lambda w: w.inputs / "absent.tif", "not found"),
    "corrupt TIFF": (lambda w: w.file("c.tif", b"II*\0garbage"), "empty or corrupt"),
    "unreadable TIFF": (lambda w: w.file("u.tif", b"garbage"), "cannot read"),
    "TIFF with 4 channels": (lambda w: w.tiff("rgba.tif", np.zeros((2, 16, 16, 4), np.uint8)), "channels"),
    "NaN slice the percentiles skip": (_nan_slice_the_percentiles_skip, "NaN"),
    "infinite value": (_infinite, "infinite"),
    "zero-slice TIFF stack": (lambda w: w.tiff("empty.tif", np.zeros((0, 32, 32), np.float32)), "holds no image"),
    "1x1 slices": (lambda w: w.tiff("dot.tif", np.ones((3, 1, 1), np.uint8)), "too small"),
    "complex pixels": (lambda w: w.tiff("complex.tif", np.ones((3, 8, 8), np.complex64)), "pixel type"),
    "2D NIfTI": (lambda w: w.nifti("flat.nii.gz", np.zeros((32, 32), np.float32)), "2D image"),
    "5D NIfTI": (lambda w: w.nifti("five.nii.gz", np.zeros((8, 8, 8, 1, 2), np.float32)), "5 dimensions"),
    "zero-slice NIfTI": (lambda w: w.nifti("empty.nii.gz", np.zeros((32, 32, 0), np.float32)), "no voxels"),
    "4D NIfTI with 5 unnamed channels": (lambda w: w.nifti("multi.nii.gz", np.zeros((8, 8, 4, 5), np.float32)),
                                         "5 channels and no dataset.json"),
    "case folder without FLAIR": (_case_without_flair, "no FLAIR"),
    "case with two FLAIR files": (_two_flair_files, "two FLAIR files"),
    "Kaggle folder with slices of different shapes": (_slices_of_different_shapes, "different shapes"),
    "folder without scans": (lambda w: w.folder("nothing"), "DICOM"),
    "file that is not a scan": (lambda w: w.file("notes.txt", b"hello"), "not a scan file"),
}


def _settings(w: Workspace, *extra: str) -> str:
    """The settings a `_train("--resume", *extra)` run records, as a matching resume state holds them."""
    args = cli.build_parser().parse_args(_train("--resume", *extra)(w))
    return json.dumps(cli.train_config(args).to_dict())


def _resume_state(w: Workspace, *, truncate: bool = False, **metadata: str | None) -> None:
    """A resume state in the run folder with the given metadata (None drops a key) and weights of no network."""
    run = w.out / "run"
    run.mkdir(exist_ok=True)
    fields = {"format": RESUME_FORMAT, "progress": json.dumps({"epochs_done": 1, "history": []}),
              "settings": _settings(w), "param_groups": "[]", "scaler": "{}", **metadata}
    path = run / RESUME_FILE
    save_file({"network.unknown": torch.zeros(4)}, str(path), metadata={k: v for k, v in fields.items() if v is not None})
    if truncate:
        path.write_bytes(path.read_bytes()[:-8])


def _garbage_resume_state(w: Workspace) -> None:
    (w.out / "run").mkdir()
    (w.out / "run" / RESUME_FILE).write_bytes(b"\x08\0\0\0\0\0\0\0{}garbage")


def _model_in_run_folder(w: Workspace) -> None:
    shutil.copytree(w.model, w.out / "run")


def _nan_patient(w: Workspace) -> Path:
    image = np.random.default_rng(0).random((4, 32, 32), dtype=np.float32)
    image[2, 3, 3] = np.nan
    masks = [np.full((32, 32), 255, np.uint8)] * 4
    return w.kaggle_patient(image, masks)


def _good_scan(w: Workspace) -> Path:
    return w.tiff("scan.tif", np.random.default_rng(0).integers(0, 999, (3, 40, 40)).astype(np.uint16))


def _predict(
    *extra: str,
    model: Callable[[Workspace], Path] = lambda w: w.model,
    scan: Callable[[Workspace], Path] = _good_scan,
    output: Callable[[Workspace], Path] = lambda w: w.out / "mask.tif",
) -> Callable[[Workspace], list[str]]:
    """`predict` with one bad option, model, scan or output (made in this order)."""
    return lambda w: ["predict", "--model", str(model(w)), "--input", str(scan(w)), "--output", str(output(w)), *extra]


def _evaluate(*extra: str, data: Callable[[Workspace], Path] | None = None) -> Callable[[Workspace], list[str]]:
    def argv(w: Workspace) -> list[str]:
        folder = data(w) if data else w.patient
        return ["evaluate", "--model", str(w.model), "--data", str(folder), "--json", str(w.out / "r.json"), *extra]

    return argv


def _train(*extra: str, data: Callable[[Workspace], Path] | None = None,
           before: Callable[[Workspace], None] | None = None) -> Callable[[Workspace], list[str]]:
    """A tiny training into out/run with one bad option or input; `before` prepares the run folder."""

    def argv(w: Workspace) -> list[str]:
        if before is not None:
            before(w)
        folder = data(w) if data else w.patient
        return ["train", "--data", str(folder), "--out", str(w.out / "run"), "--epochs", "1", "--steps-per-epoch", "1",
                "--batch-size", "2", "--image-size", "64", "--decoder-channels", "16,16,16,16,16", "--workers", "0",
                "--device", "cpu", "--no-augment", *extra]

    return argv


def _bad_model(name: str) -> Callable[[Workspace], Path]:
    return lambda w: make_bad_model(name, w.model, w.inputs)


def _folder_of_two_scans(w: Workspace) -> Path:
    folder = w.folder("cohort")
    for name in ("a", "b"):
        w.nifti(f"{name}.nii.gz", np.random.default_rng(0).random((24, 24, 3), dtype=np.float32), folder)
    return folder


def _folder_whose_third_scan_is_corrupt(w: Workspace) -> Path:
    folder = _folder_of_two_scans(w)
    (folder / "c.nii.gz").write_bytes(b"not a NIfTI")
    return folder


def _inside_a_file(w: Workspace) -> Path:
    (w.out / "file").write_text("x")
    return w.out / "file" / "mask.tif"


def _existing_file(w: Workspace) -> Path:
    (w.out / "masks.tif").write_text("x")
    return w.out / "masks.tif"


# (command, its bad options, phrase of the refusal); the rest of each command line is valid
OPTION_CASES = [
    ("predict", "--batch-size -1", "batch size must be between"),
    ("predict", "--batch-size 0", "batch size must be between"),
    ("evaluate", "--batch-size -1", "batch size must be between"),
    ("evaluate", "--batch-size 0", "batch size must be between"),
    ("predict", "--batch-size many", "invalid int value"),
    ("predict", "--threshold nan", "threshold must be a finite number"),
    ("predict", "--threshold 2", "threshold must be in"),
    ("evaluate", "--threshold 0", "threshold must be in"),
    ("predict", "--min-size -3", "minimum tumour size must be between"),
    ("predict", "--min-confidence 2", "minimum confidence must be in"),
    ("evaluate", "--min-confidence inf", "minimum confidence must be a finite number"),
    ("predict", "--threads 0", "threads must be at least 1"),
    ("predict", "--device tpu", "unknown device"),
    ("predict", "--precision fp8", "invalid choice"),
    ("predict", "--backend tensorrt", "invalid choice"),
    ("evaluate", "--split test", "records no test patients"),
    ("train", "--lr nan", "learning rate must be a finite number"),
    ("train", "--lr 0", "learning rate must be in"),
    ("train", "--workers -1", "workers must be between"),
    ("train", "--steps-per-epoch -5", "steps per epoch must be between"),
    ("train", "--tumour-fraction 2", "tumour fraction must be in"),
    ("train", "--tumour-fraction nan", "tumour fraction must be a finite"),
    ("train", "--seed -1", "seed must be between"),
    ("train", "--epochs 0", "epochs must be between"),
    ("train", "--batch-size 0", "batch size must be between"),
    ("train", "--decoder-channels 0,16,16,16,16", "decoder width must be between"),
    ("train", "--decoder-channels=-8,16,16,16,16", "decoder width must be between"),
    ("train", "--decoder-channels 20000,16,16,16,16", "decoder width must be between"),
    ("train", "--decoder-channels 16,16", "number of decoder stages"),
    ("train", "--decoder-channels wide", "is not whole numbers separated by commas"),
    ("train", "--image-size 8192", "image size must be between"),
    ("train", "--image-size 100", "multiple of 32"),
    ("train", "--val-fraction 1.5", "must each be in [0, 1) and add up to less than 1"),
    ("train", "--val-fraction 0.6 --test-fraction 0.5", "add up to less than 1"),
    ("train", "--hard-negatives 2", "hard-negative share must be in"),
    ("train", "--hard-negatives-every 0", "hard-negative refresh interval"),
    ("train", "--encoder resnet9000", "unknown encoder"),
    ("train", "--threads 0", "threads must be between"),
    ("train", "--augment flair_only=2", "augment flair_only must be in"),
    ("train", "--augment nokey=1", "is not KEY=VALUE"),
    ("train", "--augment enabled=maybe", "enabled takes true or false"),
    ("train", "--augment skull_strip=lots", "skull_strip takes a number"),
    ("train", "--validate-on blurred", "validation input variants must be one or more distinct names from"),
    ("train", "--validate-on as-is,as-is", "got as-is, as-is"),
]
COMMANDS = {"predict": _predict, "evaluate": _evaluate, "train": _train}

CLI_CASES = [
    *[pytest.param(COMMANDS[command](*options.split()), phrase, id=f"{command} {options}")
      for command, options, phrase in OPTION_CASES],
    pytest.param(_predict(output=lambda w: w.inputs / "scan.tif"), "same path as --input",
                 id="predict --output equal to --input"),
    pytest.param(_predict(output=_inside_a_file), "File exists", id="predict --output inside a file"),
    pytest.param(_predict("--read-ahead", "-1", scan=_folder_of_two_scans, output=lambda w: w.out / "masks"),
                 "--read-ahead must be 0 or more", id="predict --read-ahead -1"),
    pytest.param(_predict(scan=_folder_of_two_scans, output=_existing_file), "give a folder as --output",
                 id="predict a folder of scans into a file"),
    pytest.param(_evaluate(data=lambda w: w.inputs / "absent"), "not found", id="evaluate --data missing"),
    pytest.param(_evaluate(data=lambda w: w.kaggle_patient(np.zeros((2, 32, 32, 3), np.uint8), None)),
                 "have no _mask.tif", id="evaluate a patient without masks"),
    pytest.param(_evaluate(data=lambda w: w.kaggle_patient(np.zeros((2, 32, 32, 3), np.uint8),
                                                           [np.zeros((32, 40), np.uint8)] * 2)),
                 "does not match", id="evaluate masks of another shape"),
    pytest.param(lambda w: ["calibrate", "--model", "default", "--data", str(w.patient)],
                 "default model is part of the installed package", id="calibrate --model default"),
    pytest.param(lambda w: ["view", str(BAD_SCANS["corrupt TIFF"][0](w))], "empty or corrupt", id="view a corrupt TIFF"),
    # training inputs and run folders
    pytest.param(_train(data=lambda w: w.inputs / "absent"), "not found", id="train --data missing"),
    pytest.param(_train(data=lambda w: w.kaggle_patient(np.zeros((2, 32, 32, 3), np.uint8), None)),
                 "have no _mask.tif", id="train on a patient without masks"),
    pytest.param(_train(data=_nan_patient), "NaN", id="train on a NaN slice"),
    pytest.param(_train("--init", "/nonexistent/model"), "model folder not found", id="train --init missing"),
    pytest.param(_train(before=lambda w: (w.out / "run").write_text("x")), "is a file, not a folder",
                 id="train --out is a file"),
    pytest.param(_train(before=_model_in_run_folder), "already holds a model", id="train over a model"),
    pytest.param(_train("--resume"), "no run to resume", id="train --resume without a run"),
    pytest.param(_train("--resume", before=_model_in_run_folder), "a model but no resume state",
                 id="train --resume on a model without resume state"),
    pytest.param(_train("--resume", before=lambda w: _resume_state(w, format="napari-lgg-unet-resume/1")),
                 "not a napari-lgg-unet-resume/2 state", id="train --resume from another format"),
    pytest.param(_train("--resume", before=_garbage_resume_state), "corrupt",
                 id="train --resume from a garbage resume state"),
    pytest.param(_train("--resume", before=lambda w: _resume_state(w, param_groups=None)),
                 "param_groups is missing or corrupt", id="train --resume without optimizer groups"),
    pytest.param(_train("--resume", before=lambda w: _resume_state(w, progress='{"history": "none"}')),
                 "history must be a list", id="train --resume with a history that is not a list"),
    pytest.param(_train("--resume", before=lambda w: _resume_state(w, settings=_settings(w, "--lr", "0.5"))),
                 "with other settings: lr 0.5 -> 0.0001", id="train --resume with other settings"),
    pytest.param(_train("--resume", before=lambda w: _resume_state(w, truncate=True)), "corrupt",
                 id="train --resume from a truncated resume state"),
    pytest.param(_train("--resume", before=_resume_state), "does not match this run",
                 id="train --resume with weights of another network"),
    *[pytest.param(_predict(scan=make), phrase, id=f"predict {name}") for name, (make, phrase) in BAD_SCANS.items()],
    *[pytest.param(_predict(model=_bad_model(name)), phrase, id=f"predict with model: {name}")
      for name, (_, phrase, _) in BAD_MODELS.items()],
]


def _files(folder: Path) -> dict[str, str]:
    """Every file under `folder` with a hash of its bytes (the run folder's lock file is not output)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != LOCK_FILE}


def _installed_default_model() -> dict[str, str]:
    return _files(default_model_path())


@pytest.mark.parametrize("make_argv, phrase", CLI_CASES)
def test_cli_refuses_with_one_line_exit_2_and_leaves_no_output(make_argv, phrase, w, capsys, monkeypatch):
    monkeypatch.setattr(launch, "run", lambda *_: pytest.fail("a napari window was opened"))
    argv = make_argv(w)
    capsys.readouterr()
    before, installed = _files(w.out), _installed_default_model()
    inputs = _files(w.inputs)
    try:
        code = cli.main(argv)
    except SystemExit as usage_error:  # argparse's one-line usage errors
        code = usage_error.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.endswith("\n") and "Traceback" not in err, err
    assert phrase in err, err
    assert _files(w.out) == before  # nothing new, nothing changed, nothing half-written
    assert not [p for p in w.out.parent.rglob("*") if ".tmp" in p.name]
    assert _files(w.inputs) == inputs and _installed_default_model() == installed


def test_cli_leaves_no_mask_or_summary_row_when_a_later_scan_of_a_folder_is_corrupt(w, capsys):
    """The first two scans are segmented (and logged on stderr) before the third fails: all or nothing."""
    argv = _predict(scan=_folder_whose_third_scan_is_corrupt, output=lambda w: w.out / "masks")(w)
    assert cli.main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["a", "b", "lgg-unet"] and "cannot read" in lines[-1]
    assert _files(w.out) == {}


@pytest.mark.parametrize("name", BAD_SCANS)
def test_api_refuses_a_bad_scan_with_an_input_error(name, w):
    make, phrase = BAD_SCANS[name]
    with pytest.raises(InputError, match=phrase):
        scan = load_scan(make(w))
        segment_volume(load_model(w.model), scan.image, rgb=scan.rgb)


@pytest.mark.parametrize("name", BAD_MODELS)
def test_api_refuses_a_bad_model_folder_with_a_model_error_before_building_it(name, w, monkeypatch):
    make, phrase, before_building = BAD_MODELS[name]
    if before_building:
        monkeypatch.setattr(model_module, "build_network", lambda config: pytest.fail("a network was built"))
    folder = make_bad_model(name, w.model, w.inputs)
    with pytest.raises(ModelError, match=phrase):
        load_model(folder)


nan = math.nan
API_CASES = [
    pytest.param(lambda: SegmentOptions(batch_size=-1), InputError, id="SegmentOptions batch_size -1"),
    pytest.param(lambda: SegmentOptions(batch_size=0), InputError, id="SegmentOptions batch_size 0"),
    pytest.param(lambda: SegmentOptions(batch_size=2.5), InputError, id="SegmentOptions batch_size 2.5"),
    pytest.param(lambda: SegmentOptions(tta="yes"), InputError, id="SegmentOptions tta as text"),
    pytest.param(lambda: SegmentOptions(precision="fp8"), InputError, id="SegmentOptions precision fp8"),
    pytest.param(lambda: PostprocessConfig(threshold=nan), InputError, id="PostprocessConfig threshold nan"),
    pytest.param(lambda: PostprocessConfig(threshold=2), InputError, id="PostprocessConfig threshold 2"),
    pytest.param(lambda: PostprocessConfig(threshold="0.5"), InputError, id="PostprocessConfig threshold as text"),
    pytest.param(lambda: PostprocessConfig(min_size=-3), InputError, id="PostprocessConfig min_size -3"),
    pytest.param(lambda: PostprocessConfig(min_size="abc"), InputError, id="PostprocessConfig min_size as text"),
    pytest.param(lambda: PostprocessConfig(min_confidence=2), InputError, id="PostprocessConfig min_confidence 2"),
    pytest.param(lambda: TrainConfig(lr=nan), InputError, id="TrainConfig lr nan"),
    pytest.param(lambda: TrainConfig(workers=-1), InputError, id="TrainConfig workers -1"),
    pytest.param(lambda: TrainConfig(steps_per_epoch=-5), InputError, id="TrainConfig steps_per_epoch -5"),
    pytest.param(lambda: TrainConfig(tumour_fraction=2), InputError, id="TrainConfig tumour_fraction 2"),
    pytest.param(lambda: TrainConfig(tumour_fraction=nan), InputError, id="TrainConfig tumour_fraction nan"),
    pytest.param(lambda: TrainConfig(seed=-1), InputError, id="TrainConfig seed -1"),
    pytest.param(lambda: TrainConfig(image_size=8192), InputError, id="TrainConfig image_size 8192"),
    pytest.param(lambda: TrainConfig(image_size=256.0), InputError, id="TrainConfig image_size 256.0"),
    pytest.param(lambda: TrainConfig(decoder_channels=(0, 16, 16, 16, 16)), InputError, id="TrainConfig decoder 0"),
    pytest.param(lambda: TrainConfig(decoder_channels=(-8, 16, 16, 16, 16)), InputError,
                 id="TrainConfig decoder negative"),
    pytest.param(lambda: TrainConfig(validation_variants=("blurred",)), InputError, id="TrainConfig variant blurred"),
    pytest.param(lambda: TrainConfig(device="tpu"), InputError, id="TrainConfig device tpu"),
    pytest.param(lambda: AugmentConfig(flair_only=2), InputError, id="AugmentConfig flair_only 2"),
    pytest.param(lambda: AugmentConfig(enabled="maybe"), InputError, id="AugmentConfig enabled maybe"),
    pytest.param(lambda: AugmentConfig(rotation_degrees=nan), InputError, id="AugmentConfig rotation nan"),
]


@pytest.mark.parametrize("make, error", API_CASES)
def test_api_refuses_a_bad_setting_with_our_error(make, error):
    with pytest.raises(error) as raised:
        make()
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("name", BAD_IMAGES)
def test_api_refuses_a_bad_image_array_with_an_input_error(name, tiny_model_dir):
    make, phrase = BAD_IMAGES[name]
    with pytest.raises(InputError, match=phrase):
        segment_volume(load_model(tiny_model_dir), make())


TRAIN_API_CASES = [
    pytest.param(lambda w: train_model(
        [load_scan(w.patient)], TrainConfig(resume=True, workers=0, device="cpu"), w.out / "run"),
        "no run to resume", id="train_model resume without a run"),
    pytest.param(lambda w: train_model(
        [load_scan(_nan_patient(w), require_mask=True)], TrainConfig(workers=0, device="cpu"), w.out / "run"),
        "NaN", id="train_model on a NaN slice"),
    pytest.param(lambda w: train_model([], TrainConfig(workers=0, device="cpu"), w.out / "run"),
                 "no scans", id="train_model without scans"),
]


@pytest.mark.parametrize("start, phrase", TRAIN_API_CASES)
def test_api_training_refuses_bad_runs_and_writes_no_model(start, phrase, w):
    with pytest.raises(LggUnetError, match=phrase):
        list(start(w))
    assert not RunFolder(w.out / "run").holds_model()
