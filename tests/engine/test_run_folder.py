"""run_folder.RunFolder and its lock (folder_lock): the lock, the start checks, the resume state and the history of
one training folder."""

import contextlib
import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from temp_files import LOOKALIKES, a_live_writer, leftovers_of_a_killed_writer

from napari_lgg_unet.engine import folder_lock
from napari_lgg_unet.engine.atomic import atomic_path
from napari_lgg_unet.engine.errors import FolderInUse, InputError, ModelError
from napari_lgg_unet.engine.folder_lock import LOCK_FILE, held_folder
from napari_lgg_unet.engine.precision import Precision
from napari_lgg_unet.engine.run_folder import PATIENTS, RunFolder, RunProgress

if sys.platform != "win32":
    import fcntl
    import pwd


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


def test_a_run_that_may_wait_takes_the_lock_when_its_holder_lets_go_and_removes_what_it_made_when_it_fails(
    tmp_path, monkeypatch
):
    """Another run locked the lock file this run had just created: this run waits its turn, and the file is still the
    one it created, so it removes it (and the folder it made) when it fails."""
    real_try_lock, tries = folder_lock.try_lock, []

    def held_by_another_at_first(handle):
        tries.append(handle)
        return len(tries) > 1 and real_try_lock(handle)

    monkeypatch.setattr(folder_lock, "try_lock", held_by_another_at_first)
    with pytest.raises(FolderInUse, match="in use by another run"):  # not waiting: refused at once
        with held_folder(tmp_path / "refused", "update"):
            pass
    tries.clear()
    with pytest.raises(RuntimeError):
        with held_folder(tmp_path / "cache", "update", wait=60):
            assert len(tries) == 2 and (tmp_path / "cache" / LOCK_FILE).read_text() == f"update (process {os.getpid()})"
            raise RuntimeError("the update fails")
    assert not (tmp_path / "cache").exists()


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


def test_a_failed_first_run_removes_every_folder_it_created_but_no_folder_that_holds_something(tmp_path):
    with pytest.raises(InputError, match=re.escape("no run to resume; start a new run in a new folder (or fine-tune "
                                                   "with init (--init))")):  # `train --out x/a/b/c --resume`
        with RunFolder(tmp_path / "x" / "a" / "b" / "c").locked() as folder:
            folder.check_start({}, resume=True)
    assert sorted(tmp_path.iterdir()) == []
    (tmp_path / "x").mkdir()
    with pytest.raises(RuntimeError):
        with RunFolder(tmp_path / "x" / "a" / "b" / "c").locked():
            (tmp_path / "x" / "a" / "notes.txt").write_text("written meanwhile")
            raise RuntimeError("failed")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["x", "x/a", "x/a/notes.txt"]


def test_a_failed_run_removes_the_lock_it_created_in_an_existing_folder_and_keeps_one_it_found(tmp_path):
    (tmp_path / "scan.tif").write_text("the user's")
    for found in (False, True):
        with pytest.raises(RuntimeError):
            with RunFolder(tmp_path).locked():
                raise RuntimeError("refused after taking the lock")
        assert (tmp_path / LOCK_FILE).exists() == found
        (tmp_path / LOCK_FILE).write_text("")  # an ended run's lock


@pytest.mark.parametrize("text", ["", "calibration (process 4242)"])  # a killed run leaves its text
def test_a_lock_file_left_by_an_ended_or_killed_run_is_taken(tmp_path, text):
    (tmp_path / LOCK_FILE).write_text(text)
    with RunFolder(tmp_path).locked("training run"):
        assert (tmp_path / LOCK_FILE).read_text() == f"training run (process {os.getpid()})"
    assert (tmp_path / LOCK_FILE).read_text() == ""


def _as_another_user(monkeypatch: pytest.MonkeyPatch, lock: Path, mode: int) -> str:
    """Make `lock` (left by a run) look as a colleague's run in a shared folder leaves it under their umask: a file of
    `mode` this process may not open for writing (nor reading, unless `mode` lets others read). Root opens any file,
    so the refusal is the system's as a user meets it, and this process becomes someone other than the file's owner.
    Returns the owner's name, as the message should give it."""
    os.chmod(lock, mode)
    real_open = os.open

    def refused(path, flags, *args, **kwargs):
        writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        if Path(path) == lock and (writing or not mode & 0o004):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(folder_lock.os, "open", refused)
    monkeypatch.setattr(folder_lock.os, "geteuid", lambda: lock.stat().st_uid + 1, raising=False)
    return pwd.getpwuid(lock.stat().st_uid).pw_name


@pytest.mark.skipif(sys.platform == "win32", reason="file owners and modes are POSIX's")
def test_a_lock_another_user_left_unreadable_is_refused_in_a_line_naming_it_its_owner_and_what_to_do(
        tmp_path, monkeypatch):
    """A shared lab folder: a colleague's run, under umask 077, left `.lock` as 0600. The refusal said only "cannot
    open the lock file ...: Permission denied": not whose it is, nor that it may be a live run's."""
    run = tmp_path / "run"
    with held_folder(run, "training run"):
        pass
    owner = _as_another_user(monkeypatch, run / LOCK_FILE, 0o600)
    with pytest.raises(InputError) as refused:
        with RunFolder(run).locked():
            pytest.fail("the run went on")
    message = str(refused.value)
    assert "\n" not in message and str(run / LOCK_FILE) in message and f"belongs to {owner}" in message
    assert "may still be running" in message and "ask them to remove it" in message
    assert "choose another output folder" in message and (run / LOCK_FILE).exists()


@pytest.mark.skipif(sys.platform == "win32", reason="file owners and modes are POSIX's")
def test_a_readable_lock_of_another_users_run_says_whether_that_run_still_holds_the_folder(tmp_path, monkeypatch):
    run = tmp_path / "run"
    with held_folder(run, "training run"):
        pass
    owner = _as_another_user(monkeypatch, run / LOCK_FILE, 0o644)
    with pytest.raises(InputError, match=f"belongs to {owner}.*its run has ended.*ask them to remove it"):
        with RunFolder(run).locked():
            pytest.fail("the run went on")
    (run / LOCK_FILE).write_text("training run (process 4242)")
    with open(run / LOCK_FILE, "rb") as holder:  # their run, live: it holds the file's lock
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(FolderInUse, match=rf"in use by {owner}'s training run \(process 4242\); wait for it"):
            with RunFolder(run).locked():
                pytest.fail("the run went on")


_LOCK_FORK_AND_DIE = """
import os, signal, sys, time
from pathlib import Path
from napari_lgg_unet.engine.folder_lock import held_folder
with held_folder(Path(sys.argv[1]), "training run"):
    child = os.fork()
    if child == 0:  # as a DataLoader worker: lives on a while after its parent is killed
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)  # lets go of the test's pipe, which would otherwise stay open
        os.dup2(null, 2)
        time.sleep(60)
        os._exit(0)
    print(child, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks, and reads the worker's state in /proc")
def test_the_lock_of_a_killed_run_is_free_at_once_though_its_forked_workers_live_on(tmp_path):
    run = subprocess.run([sys.executable, "-c", _LOCK_FORK_AND_DIE, str(tmp_path)], capture_output=True, text=True)
    child = int(run.stdout)
    try:
        assert Path(f"/proc/{child}/stat").read_text().split()[2] != "Z"  # the worker is alive
        with RunFolder(tmp_path).locked("resumed run"):
            assert "resumed run" in (tmp_path / LOCK_FILE).read_text()
    finally:
        os.kill(child, 9)



@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks, and finds the lock's descriptor in /proc")
def test_a_forked_child_keeps_no_descriptor_that_a_program_it_starts_would_inherit(tmp_path):
    """The child's copy of a lock descriptor is pointed at /dev/null; made inheritable by that, it went on into any
    program the child started with exec (Python's own descriptors are not inherited, PEP 446)."""
    with RunFolder(tmp_path).locked("training run"):
        lock = next(int(fd) for fd in os.listdir("/proc/self/fd")
                    if os.path.realpath(f"/proc/self/fd/{fd}") == str((tmp_path / LOCK_FILE).resolve()))
        assert not os.get_inheritable(lock)
        child = os.fork()
        if child == 0:
            os._exit(0 if os.readlink(f"/proc/self/fd/{lock}") == os.devnull and not os.get_inheritable(lock) else 1)
        assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0

def _users_own(lock: Path, kind: str) -> Path:
    """A `.lock` that lgg-unet did not write; returns the file whose bytes must survive."""
    if kind == "file":
        lock.write_bytes(b"my notes\n")
        return lock
    if kind == "binary file":
        lock.write_bytes(bytes(range(256)) * 4)
        return lock
    if kind == "newline":
        lock.write_bytes(b"\n")
        return lock
    if kind == "folder":
        lock.mkdir()
        (lock / "inside.txt").write_bytes(b"mine")
        return lock / "inside.txt"
    target = lock.parent.parent / "unrelated.txt"  # a link: its target must not be written, even if empty
    target.write_bytes(b"" if kind.endswith("link to an empty file") else b"precious")
    if kind.startswith("hard"):
        os.link(target, lock)
    else:
        lock.symlink_to(target)
    return target


@pytest.mark.parametrize("kind", ["file", "binary file", "newline", "folder", "link", "link to an empty file",
                                  "hard link to a file", "hard link to an empty file"])
def test_a_lock_file_lgg_unet_did_not_write_is_refused_and_left_byte_for_byte(tmp_path, kind):
    run = tmp_path / "run"
    run.mkdir()
    kept = _users_own(run / LOCK_FILE, kind)
    before = kept.read_bytes(), kept.stat().st_mtime_ns
    refusal = rf"{re.escape(str(run / LOCK_FILE))} is .*not the lock file lgg-unet keeps .* move or rename it"
    with pytest.raises(InputError, match=refusal):
        with RunFolder(run).locked():
            pytest.fail("the run went on")
    assert (kept.read_bytes(), kept.stat().st_mtime_ns) == before
    assert (run / LOCK_FILE).is_symlink() == kind.startswith("link")


def test_a_link_put_in_place_of_the_lock_after_the_check_is_not_followed(tmp_path, monkeypatch):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / LOCK_FILE).symlink_to(tmp_path / "empty.txt")
    lstat = Path.lstat

    def lstat_before_the_link_came(path):
        if path.name == LOCK_FILE:
            raise FileNotFoundError(path)
        return lstat(path)

    monkeypatch.setattr(Path, "lstat", lstat_before_the_link_came)
    before = (tmp_path / "empty.txt").stat().st_mtime_ns
    with pytest.raises(InputError, match="cannot open the lock file .*choose another output folder"):
        with RunFolder(tmp_path / "run").locked():
            pass
    assert (tmp_path / "empty.txt").stat().st_mtime_ns == before


def test_a_run_that_opened_a_lock_its_failing_holder_then_removed_takes_the_new_one(tmp_path, monkeypatch):
    """The failing holder removes the lock it created while it still holds it; a run that had opened that file
    must not hold the removed file while a third run creates and holds a new `.lock`."""
    opened = []
    real_open = folder_lock._open_lock

    def open_then_lose_the_race(path):
        handle = real_open(path)
        if not opened:  # the holder removes it just after this run opened it, and releases it
            path.unlink()
        opened.append(path)
        return handle

    monkeypatch.setattr(folder_lock, "_open_lock", open_then_lose_the_race)
    with RunFolder(tmp_path).locked("training run"):
        assert len(opened) == 2
        assert (tmp_path / LOCK_FILE).read_text() == f"training run (process {os.getpid()})"
        with pytest.raises(InputError, match="in use by another training run"):
            with RunFolder(tmp_path).locked():
                pass


@pytest.mark.parametrize("made_by_the_holder", [True, False])
def test_a_run_whose_failing_holder_removed_the_folder_and_its_lock_takes_it_and_leaves_nothing_when_it_fails(
    tmp_path, monkeypatch, made_by_the_holder
):
    """Two runs into one folder, the holder failing: the other run opened the lock just before the holder removed
    it (and the folders, when the holder made them). That run was refused with 'cannot open the lock file: No such
    file or directory' when the folder had gone, and, failing in turn, left the lock it had created (and the folders)
    because both were there when it started."""
    folder = tmp_path / "a" / "run"
    folder.mkdir(parents=True)
    (folder / LOCK_FILE).write_text("")  # the holder's
    if not made_by_the_holder:
        (folder / "notes.txt").write_text("the user's")
    real_open = folder_lock._open_lock
    calls = []

    def open_then_the_holder_fails(path):
        opened = real_open(path)
        if not calls:  # the failing holder removes what it made, just after this run opened its lock
            path.unlink()
            if made_by_the_holder:
                folder.rmdir()
                folder.parent.rmdir()
        calls.append(path)
        return opened

    monkeypatch.setattr(folder_lock, "_open_lock", open_then_the_holder_fails)
    with pytest.raises(RuntimeError):
        with RunFolder(folder).locked():
            assert (folder / LOCK_FILE).read_text() == f"training run (process {os.getpid()})"
            raise RuntimeError("failed in turn")
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert left == ([] if made_by_the_holder else ["a", "a/run", "a/run/notes.txt"])


def test_a_run_that_takes_the_folder_of_a_failing_holder_as_it_is_let_go_leaves_no_folder_when_it_fails(
    tmp_path, monkeypatch
):
    """The failing holder used to let the lock go before removing the folders it made: a run taking the folder in
    between held it in a folder it had not made, so the holder could not remove it, and nor could that run."""
    folder = tmp_path / "a" / "run"
    real_release = folder_lock._release
    second, released = contextlib.ExitStack(), []

    def release_then_the_next_run_takes_it(*args):
        real_release(*args)
        released.append(args)
        if len(released) == 1:  # the failing holder's
            second.enter_context(RunFolder(folder).locked())

    monkeypatch.setattr(folder_lock, "_release", release_then_the_next_run_takes_it)
    with pytest.raises(RuntimeError):
        with RunFolder(folder).locked():
            raise RuntimeError("the holder fails")
    with pytest.raises(RuntimeError):
        with second:
            assert (folder / LOCK_FILE).read_text() == f"training run (process {os.getpid()})"
            raise RuntimeError("the next run fails too")
    assert sorted(tmp_path.iterdir()) == []


def test_a_lock_file_that_keeps_being_replaced_is_refused_instead_of_tried_forever(tmp_path, monkeypatch):
    monkeypatch.setattr(folder_lock, "same_file", lambda handle, path: False)
    with pytest.raises(InputError, match="keeps being replaced while this run takes it"):
        with RunFolder(tmp_path).locked():
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
    folder.save_resume_state(network, optimizer, scaler, RunProgress(epochs_done=2, best_epoch=1), {"lr": 0.01},
                             Precision(torch.device("cpu"), "bf16", True))
    assert folder.trained_precision(torch.device("cpu")) == Precision(torch.device("cpu"), "bf16", True)
    folder.check_start({"lr": 0.01}, resume=True)
    folder.check_start({"lr": 0.01, PATIENTS: ["A", "B"]}, resume=True)  # a state saved before the scans were kept
    with pytest.raises(InputError, match="lr 0.01 -> 0.1"):
        folder.check_start({"lr": 0.1}, resume=True)
    with pytest.raises(InputError, match=re.escape("continue its run with resume=True (--resume)")):  # API and CLI
        folder.check_start({"lr": 0.01}, resume=False)
    fresh, fresh_optimizer, fresh_scaler = _parts()
    torch.nn.init.zeros_(fresh.weight)
    progress = folder.load_resume_state(fresh, fresh_optimizer, fresh_scaler)
    assert progress.epochs_done == 2 and progress.best_epoch == 1
    assert torch.equal(fresh.weight, network.weight)
    assert torch.equal(
        fresh_optimizer.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"]
    )


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


def test_taking_the_lock_leaves_the_file_a_save_beside_the_run_is_writing(tmp_path):
    """A single predict or a save from napari takes no lock: a training or cohort starting in the same folder while it
    writes (here: another thread of the same napari) must not delete its temporary file, or the save fails with 'No
    such file or directory'."""
    with atomic_path(tmp_path / "mask.tif") as temporary, open(temporary, "wb") as file:
        file.write(b"the mask")
        with RunFolder(tmp_path).locked():
            pass
        assert temporary.exists()
    assert (tmp_path / "mask.tif").read_bytes() == b"the mask"


def test_taking_the_lock_removes_a_killed_writers_leftovers_and_keeps_a_live_writers_file(tmp_path):
    [dead] = leftovers_of_a_killed_writer((tmp_path / "model.safetensors", ""))
    with a_live_writer(tmp_path / "case_mask.nii.gz", ".nii.gz") as live:  # checks that its save succeeds
        with RunFolder(tmp_path).locked():
            pass
        assert live.exists() and not dead.exists()
