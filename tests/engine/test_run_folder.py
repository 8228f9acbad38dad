"""run_folder.RunFolder: the lock, the start checks, the resume state and the history of one training folder."""

import json

import pytest
import torch
from temp_files import LOOKALIKES, leftovers_of_a_killed_writer

from napari_lgg_unet.engine.errors import InputError, ModelError
from napari_lgg_unet.engine.run_folder import PATIENTS, RunFolder, RunProgress


def _parts():
    torch.manual_seed(0)
    network = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(network.parameters(), lr=0.01)
    network(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    return network, optimizer, torch.amp.GradScaler("cpu", enabled=False)


def test_a_second_lock_on_a_locked_folder_is_refused_naming_the_holder(tmp_path):
    folder = RunFolder(tmp_path / "run")
    with folder.locked("calibration"):
        with pytest.raises(InputError, match="in use by another calibration"):
            with RunFolder(tmp_path / "run").locked():
                pass
    with folder.locked():  # released: the next run takes it
        pass


def test_a_failed_first_run_leaves_no_empty_folder_and_a_file_is_no_folder(tmp_path):
    with pytest.raises(RuntimeError):
        with RunFolder(tmp_path / "run").locked():
            raise RuntimeError("failed before writing")
    assert not (tmp_path / "run").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="is a file"):
        with RunFolder(tmp_path / "file").locked():
            pass
    with pytest.raises(InputError, match="cannot create the output folder .*file/run-1: Not a directory"):
        with RunFolder(tmp_path / "file" / "run-1").locked():  # the Train widget's run folder inside a file
            pass


def test_a_new_run_refuses_a_folder_whose_history_files_it_would_replace(tmp_path):
    (tmp_path / "history.csv").write_text("date,km\n2026-01-02,5\n")  # a log of the user's own, no run's
    with pytest.raises(InputError, match="already holds history.csv, which a run writes"):
        with RunFolder(tmp_path).locked() as folder:
            folder.check_start({}, resume=False)
    assert (tmp_path / "history.csv").read_text() == "date,km\n2026-01-02,5\n"


@pytest.mark.parametrize("inside", [".", "lgg-unet-default", "lgg-unet-default/run-1", "my-model"])
def test_nothing_is_written_into_the_installed_packages_weights_folder(tmp_path, monkeypatch, inside):
    weights = tmp_path / "package" / "weights"  # stands in for the installed one, which must not be risked
    (weights / "lgg-unet-default").mkdir(parents=True)
    (weights / "lgg-unet-default" / "config.json").write_text("{}")
    monkeypatch.setattr("napari_lgg_unet.engine.model.default_model_path", lambda: weights / "lgg-unet-default")
    (tmp_path / "link").symlink_to(weights)
    for path in (weights / inside, tmp_path / "link" / inside):
        with pytest.raises(InputError, match="default model is part of the installed package"):
            with RunFolder(path).locked():
                pass
    assert sorted(p.relative_to(weights).as_posix() for p in weights.rglob("*")) == [
        "lgg-unet-default", "lgg-unet-default/config.json"]
    with RunFolder(tmp_path / "package" / "elsewhere").locked():  # beside the weights folder is the user's choice
        pass


def test_the_resume_state_restores_weights_optimizer_and_progress_and_refuses_other_settings(tmp_path):
    folder = RunFolder(tmp_path)
    network, optimizer, scaler = _parts()
    folder.save_resume_state(network, optimizer, scaler, RunProgress(epochs_done=2, best_epoch=1), {"lr": 0.01})
    folder.check_start({"lr": 0.01}, resume=True)
    folder.check_start({"lr": 0.01, PATIENTS: ["A", "B"]}, resume=True)  # a state saved before the scans were kept
    with pytest.raises(InputError, match="lr 0.01 -> 0.1"):
        folder.check_start({"lr": 0.1}, resume=True)
    with pytest.raises(InputError, match="--resume"):
        folder.check_start({"lr": 0.01}, resume=False)
    fresh, fresh_optimizer, fresh_scaler = _parts()
    torch.nn.init.zeros_(fresh.weight)
    progress = folder.load_resume_state(fresh, fresh_optimizer, fresh_scaler)
    assert progress.epochs_done == 2 and progress.best_epoch == 1
    assert torch.equal(fresh.weight, network.weight)
    assert torch.equal(fresh_optimizer.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])


def test_a_corrupt_resume_state_is_a_model_error_and_an_empty_folder_has_nothing_to_resume(tmp_path):
    folder = RunFolder(tmp_path)
    with pytest.raises(InputError, match="no run to resume"):
        folder.check_start({}, resume=True)
    folder.resume_file.write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match="corrupt"):
        folder.load_resume_state(*_parts())


def test_history_is_written_as_json_always_and_csv_once_there_is_a_row(tmp_path):
    folder = RunFolder(tmp_path)
    folder.write_history([])
    assert json.loads((tmp_path / "history.json").read_text()) == [] and not (tmp_path / "history.csv").exists()
    rows = [{"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "train_loss": 0.25}]
    folder.write_history(rows)
    assert json.loads((tmp_path / "history.json").read_text()) == rows
    assert (tmp_path / "history.csv").read_text().splitlines() == ["epoch,train_loss", "1,0.5", "2,0.25"]


def test_taking_the_lock_removes_our_leftovers_and_keeps_a_users_hidden_files(tmp_path):
    ours = leftovers_of_a_killed_writer((tmp_path / "model.safetensors", ""), (tmp_path / "config.json", ""))
    for name in LOOKALIKES:
        (tmp_path / name).write_text("the user's")
    with RunFolder(tmp_path).locked():
        pass
    assert not any(p.exists() for p in ours)
    assert all((tmp_path / name).read_text() == "the user's" for name in LOOKALIKES)
