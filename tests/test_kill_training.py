"""`lgg-unet train` killed with SIGKILL at random moments: its folder holds no model or a loadable one, and
`--resume` continues the run.

Importing torch takes 5-15 s on a busy machine, so the trainings are not started with a fresh interpreter each: they
are forked by a multiprocessing fork server that imported the CLI once (and has run no torch code, so forking it is
safe). Each is a separate process running `lgg-unet train`'s `main`, killed by SIGKILL like any other.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from napari_lgg_unet import cli
from napari_lgg_unet.engine import train as train_module
from napari_lgg_unet.engine.io import load_patients
from napari_lgg_unet.engine.model import load_model
from napari_lgg_unet.engine.run_folder import RunFolder
from napari_lgg_unet.engine.train import train_model

KILLS = 12
SEED = 20240607
# Without validation the training loss picks the best model; it falls at this learning rate, so most epochs write one.
TINY = ["--steps-per-epoch", "1", "--batch-size", "4", "--image-size", "64", "--encoder", "mobilenet_v2",
        "--decoder-channels", "16,16,16,16,16", "--val-fraction", "0", "--lr", "1e-3", "--no-augment", "--workers", "0",
        "--threads", "1", "--precision", "fp32", "--device", "cpu"]


def run_train(argv: list[str], log: str) -> None:
    """The child: `lgg-unet train` with its output appended to `log`, its exit code as the process's."""
    handle = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(handle, 1)
    os.dup2(handle, 2)
    sys.exit(cli.main(argv))


@pytest.fixture(scope="module")
def fork_server() -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context("forkserver")
    # the CLI imports torch only inside its commands: preload what `train` runs, so a child starts training at once
    context.set_forkserver_preload(["napari_lgg_unet.cli", "napari_lgg_unet.engine.train", "napari_lgg_unet.engine.io",
                                    __name__])
    return context


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:] if log.exists() else "(no output)"


def _epochs_recorded(out: Path) -> int:
    """Epochs in history.json (written last at an epoch's end, so it may lag the resume state by one)."""
    history = out / "history.json"
    return len(json.loads(history.read_text())) if history.exists() else 0


def test_sigkill_at_random_moments_never_leaves_a_broken_model_and_resume_finishes(
    fork_server, sample_patient_dir, tmp_path
):
    out, log = tmp_path / "run", tmp_path / "train.log"
    base = ["train", "--data", str(sample_patient_dir), "--out", str(out), *TINY]
    delays = random.Random(SEED)
    resumed = killed_with_a_model = killed_mid_write = 0
    for kill in range(KILLS):
        resume = RunFolder(out).holds_resume_state()
        resumed += resume
        child = fork_server.Process(
            target=run_train, args=(base + ["--epochs", "1000"] + ["--resume"] * resume, str(log))
        )
        child.start()
        child.join(timeout=delays.uniform(0.2, 4.0))  # returns early only if the run ended, which it must not
        assert child.exitcode is None, f"kill {kill}: the run ended with {child.exitcode}:\n{_tail(log)}"
        child.kill()
        child.join()
        killed_mid_write += any(".tmp" in p.name for p in out.glob(".*"))
        if RunFolder(out).holds_model():
            load_model(out)  # raises if the kill left a model that cannot be loaded
            killed_with_a_model += 1
    print(f"{KILLS} kills: {killed_with_a_model} with a model in the folder, {killed_mid_write} during a write, "
          f"{resumed} runs resumed")
    assert resumed and killed_with_a_model, "no kill landed after the first epoch; lengthen the delays"
    epochs = _epochs_recorded(out) + 2  # at least one more epoch than the resume state holds
    final = fork_server.Process(target=run_train, args=(base + ["--epochs", str(epochs), "--resume"], str(log)))
    final.start()
    final.join(timeout=120)
    if final.exitcode is None:
        final.kill()
    assert final.exitcode == 0, _tail(log)
    history = json.loads((out / "history.json").read_text())
    assert [record["epoch"] for record in history] == list(range(1, epochs + 1))
    assert 1 <= load_model(out).config.training.best_epoch <= epochs
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after the point where it is raised runs."""


def test_a_run_killed_before_its_best_model_was_written_gets_it_back_on_resume(
    sample_patient_dir, tmp_path, monkeypatch
):
    scans = load_patients(sample_patient_dir)
    args = cli.build_parser().parse_args(["train", "--data", str(sample_patient_dir), "--out", str(tmp_path), *TINY])
    tiny = cli.train_config(args)

    def killed(*_, **__):
        raise _Killed

    with monkeypatch.context() as patch:
        patch.setattr(train_module, "save_model", killed)
        with pytest.raises(_Killed):
            list(train_model(scans, replace(tiny, epochs=3), tmp_path / "run"))
    assert not RunFolder(tmp_path / "run").holds_model() and RunFolder(tmp_path / "run").holds_resume_state()
    finished = list(train_model(scans, replace(tiny, epochs=1, resume=True), tmp_path / "run"))[-1]
    assert finished.best_epoch == 1
    assert load_model(tmp_path / "run").config.training.best_epoch == 1
