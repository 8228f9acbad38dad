import datetime
import json
import re
import threading
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
import torch

from napari_lgg_unet.engine import folder_lock
from napari_lgg_unet.engine.errors import DeviceError, InputError, InputWarning
from napari_lgg_unet.engine.folder_lock import held_folder
from napari_lgg_unet.engine.metrics import volume_scores
from napari_lgg_unet.engine.model import load_model
from napari_lgg_unet.engine import precision
from napari_lgg_unet.engine.precision import (
    REMEASURE_ENV, Precision, choices_file, choose, grad_scaler, native_bf16_cpu,
)
from napari_lgg_unet.engine.predict import SegmentOptions, segment_steps
from napari_lgg_unet.engine.settings import PRECISION_CHOICES
from napari_lgg_unet.sample_data import SAMPLE_PATIENT, sample_folder

CPU = torch.device("cpu")
MEASURED_TODAY = f"auto: measured on {datetime.date.today().isoformat()}"


@pytest.fixture(scope="module")
def sample_scan() -> np.ndarray:
    return tifffile.imread(sample_folder() / f"{SAMPLE_PATIENT}_image.tif")


@pytest.fixture(scope="module")
def eager_fp32_mask(sample_scan) -> np.ndarray:
    """Today's reference path: plain eager fp32 PyTorch, default model, packaged sample patient."""
    return _segment(load_model("default"), sample_scan, "fp32", "torch").result.mask


def _segment(model, image, precision, backend):
    return list(segment_steps(model, image, SegmentOptions(precision=precision, backend=backend), rgb=True))[-1]


def _paths_to_check():
    paths = [("auto", "torch")]
    if native_bf16_cpu():
        paths.append(("bf16", "torch"))
    return paths


@pytest.mark.parametrize("precision, backend", _paths_to_check())
def test_the_chosen_path_segments_the_sample_patient_like_fp32_eager(sample_scan, eager_fp32_mask, precision, backend):
    last = _segment(load_model("default"), sample_scan, precision, backend)
    assert last.result.mask.any()
    assert volume_scores(last.result.mask, eager_fp32_mask).dice >= 0.995


def test_the_progress_label_names_device_precision_and_threads(sample_scan):
    progress = list(segment_steps(
        load_model("default"), sample_scan[:1], SegmentOptions(precision="fp32", backend="torch"), rgb=True
    ))
    assert {p.runs_on for p in progress} == {f"cpu, fp32, {torch.get_num_threads()} threads"}


def test_an_explicit_precision_overrides_the_automatic_choice():
    assert choose(CPU, "fp32").dtype is None and not choose(CPU, "fp32").channels_last
    assert choose(CPU, "bf16").dtype is torch.bfloat16 and choose(CPU, "bf16").channels_last
    assert choose("cpu", "FP16").dtype is torch.float16
    assert choose(CPU, "bf16").label == f"cpu, bf16, {torch.get_num_threads()} threads"
    with pytest.raises(InputError, match="precision must be one of auto"):
        choose(CPU, "int8")


def test_bf16_where_it_cannot_run_is_refused_with_the_precisions_as_the_api_and_the_cli_take_them():
    """"use --precision fp16" meant nothing to SegmentOptions(precision=...) or TrainConfig callers."""
    with pytest.raises(DeviceError, match=re.escape("use precision='fp16', 'fp32' or 'auto' (--precision fp16, fp32 "
                                                    "or auto)")):
        choose(torch.device("mps"), "bf16")


def test_auto_is_decided_once_per_process_and_uses_bf16_only_on_cpus_that_have_it():
    chosen = choose(CPU, "auto")
    assert choose(CPU) is chosen and chosen.name in PRECISION_CHOICES
    assert chosen.name == "fp32" or (chosen.name == "bf16" and native_bf16_cpu())


def test_training_gets_a_grad_scaler_only_for_fp16():
    assert grad_scaler(choose(CPU, "fp16")).is_enabled()
    assert not grad_scaler(choose(CPU, "bf16")).is_enabled()
    assert not grad_scaler(choose(CPU, "fp32")).is_enabled()


@pytest.fixture
def flipping_measurement(monkeypatch, tmp_path):
    """A busy machine: each timing picks the other fp32 layout. The cache folder is the test's own, and the process's
    memo of 'auto' is emptied before and after, as if each `choose` were a new run."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(REMEASURE_ENV, raising=False)
    timings = iter(range(100))
    monkeypatch.setattr(precision, "_fastest", lambda candidates, stop=None: candidates[1 - next(timings) % 2])
    precision._CHOSEN.clear()
    yield tmp_path / "cache"
    precision._CHOSEN.clear()


def _next_run(requested="auto"):
    precision._CHOSEN.clear()
    return choose(CPU, requested)


def test_auto_on_a_cpu_remembers_its_measurement_so_every_run_chooses_the_same(flipping_measurement, monkeypatch):
    first = _next_run()
    assert first.channels_last and first.label.endswith(f"; {MEASURED_TODAY}")
    again = _next_run()
    assert again == first and again.label.endswith(f"; auto: remembered from {datetime.date.today().isoformat()}")
    assert choices_file() == flipping_measurement / "napari-lgg-unet" / "precision.json"
    with monkeypatch.context() as relative:  # the XDG spec: a relative path is ignored, not taken from the cwd
        relative.setenv("XDG_CACHE_HOME", "cache")
        assert choices_file() == Path.home() / ".cache" / "napari-lgg-unet" / "precision.json"
    remembered = json.loads(choices_file().read_text())
    assert len(remembered) == 1 and f"{torch.get_num_threads()} threads" in next(iter(remembered))
    assert _next_run("fp32").label == f"cpu, fp32, {torch.get_num_threads()} threads"  # asked for: nothing to explain


def test_remeasuring_replaces_the_remembered_choice(flipping_measurement, monkeypatch):
    first = _next_run()
    monkeypatch.setenv(REMEASURE_ENV, "1")
    measured = _next_run()
    assert measured != first and measured.why == MEASURED_TODAY
    monkeypatch.delenv(REMEASURE_ENV)
    assert _next_run() == measured and "remembered" in _next_run().why


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"key": "fp32"}', "\x00\xff"])
def test_a_corrupt_choices_file_is_ignored_and_rewritten(flipping_measurement, content):
    choices_file().parent.mkdir(parents=True)
    choices_file().write_bytes(content.encode("latin-1"))
    assert _next_run().why == MEASURED_TODAY
    assert len(json.loads(choices_file().read_text())) >= 1 and "remembered" in _next_run().why


def test_a_cache_folder_that_cannot_be_written_costs_a_measurement_and_a_warning_not_an_error(flipping_measurement,
                                                                                             monkeypatch):
    blocker = flipping_measurement.parent / "a-file"
    blocker.write_text("mine")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    with pytest.warns(InputWarning, match=f"cannot create {blocker / 'napari-lgg-unet'}: Not a directory"):
        assert _next_run().why == MEASURED_TODAY
    with pytest.warns(InputWarning, match="cannot be remembered"):
        assert _next_run().why == MEASURED_TODAY
    assert blocker.read_text() == "mine"


def test_a_folder_named_like_the_choices_file_is_left_as_it_is_and_warned_of_once_per_process(flipping_measurement):
    """Not a file: each run measured again, choosing differently on a busy machine, and said only 'measured'."""
    choices_file().mkdir(parents=True)
    (choices_file() / "notes.txt").write_text("mine")
    with pytest.warns(InputWarning) as told:
        chosen = _next_run()
        assert choose(CPU) is chosen  # the rest of this process uses its choice, without telling again
    assert len(told) == 1 and chosen.why == MEASURED_TODAY
    assert str(told[0].message).startswith(f"the 'auto' precision cannot be remembered (cannot write {choices_file()}")
    assert "set XDG_CACHE_HOME to a folder you can write" in str(told[0].message)
    assert [p.name for p in choices_file().iterdir()] == ["notes.txt"]
    assert (choices_file() / "notes.txt").read_text() == "mine"


def test_a_resumed_run_keeps_the_precision_it_trained_in_when_auto_could_choose_it_here(flipping_measurement):
    kept = Precision(CPU, "fp32", channels_last=False)
    assert _next_run().channels_last  # what auto measures now
    resumed = choose(CPU, "auto", keep=kept)
    assert resumed == kept and resumed.why == "auto: kept from the resumed run"
    assert choose(CPU, "fp32", keep=Precision(CPU, "fp32", True)) == kept  # asked for explicitly: as asked
    assert choose(CPU, "auto", keep=Precision(CPU, "fp16", True)).name == "fp32"  # never auto's choice on a CPU


def test_two_runs_remembering_at_once_keep_both_verdicts(flipping_measurement, monkeypatch):
    """Run A has read the file and is about to write it when run B (another thread count) remembers its own verdict:
    B waits for A's lock and merges into what A wrote, instead of A overwriting B's entry with what it read."""
    a_is_writing, b_is_waiting = threading.Event(), threading.Event()
    real_write, real_try_lock = precision.write_text_atomic, folder_lock.try_lock

    def write_once_b_waits(target, text):
        if threading.current_thread().name == "run A":
            a_is_writing.set()
            b_is_waiting.wait(timeout=10)  # without the lock B never waits: A goes on after the timeout
        real_write(target, text)

    def try_lock(handle):
        taken = real_try_lock(handle)
        if not taken and threading.current_thread().name != "run A":
            b_is_waiting.set()
        return taken

    monkeypatch.setattr(precision, "write_text_atomic", write_once_b_waits)
    monkeypatch.setattr(folder_lock, "try_lock", try_lock)
    run_a = threading.Thread(target=precision._remember, args=("A", Precision(CPU, "fp32", True), "2025-03-03"),
                             name="run A")
    run_a.start()
    assert a_is_writing.wait(timeout=10)
    precision._remember("B", Precision(CPU, "fp32", False), "2025-03-03")
    run_a.join()
    remembered = json.loads(choices_file().read_text())
    assert {key: entry["channels_last"] for key, entry in remembered.items()} == {"A": True, "B": False}


def test_a_run_gives_up_remembering_rather_than_wait_long_for_another(flipping_measurement, monkeypatch):
    monkeypatch.setattr(precision, "_LOCK_WAIT", 0.1)
    with held_folder(choices_file().parent, "choice of precision"), warnings.catch_warnings():
        warnings.simplefilter("error")  # another run holding the lock is nothing to warn of: the next run remembers
        started = time.monotonic()
        assert _next_run().why == MEASURED_TODAY
        assert time.monotonic() - started < 5
    assert not choices_file().exists()
    assert _next_run().why == MEASURED_TODAY and "remembered" in _next_run().why


def test_a_choice_measured_earlier_in_the_process_says_the_day_it_was_measured(flipping_measurement, monkeypatch):
    """A napari session measured on Monday and trained on Wednesday: the model's record said 'auto: measured now'."""
    today = datetime.date(2025, 3, 3)
    monkeypatch.setattr(precision, "datetime", SimpleNamespace(date=SimpleNamespace(today=lambda: today)))
    measured = _next_run()
    today = datetime.date(2025, 3, 5)
    assert choose(CPU) is measured and measured.label.endswith("; auto: measured on 2025-03-03")
    assert [entry["measured"] for entry in json.loads(choices_file().read_text()).values()] == ["2025-03-03"]
