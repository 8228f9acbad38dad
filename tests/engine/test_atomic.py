"""atomic: a file is either the old one or the new one, never half of one, and no temporary file is left behind."""

import errno
import json
import os
import sys
import threading
import time

import numpy as np
import pytest
import safetensors.torch
import torch
from temp_files import LOOKALIKES, a_live_writer, leftovers_of_a_killed_writer

from napari_lgg_unet.engine import atomic
from napari_lgg_unet.engine.atomic import (
    atomic_path, remove_leftover_temp_files, write_tensors_atomic, write_text_atomic,
)
from napari_lgg_unet.engine.batch_predict import _unshare
from napari_lgg_unet.engine.errors import InputError
from napari_lgg_unet.engine.formats import FORMATS, file_format


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_write_replaces_the_file_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "out" / "config.json"
    write_text_atomic(target, "old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new" and _names(target.parent) == ["config.json"]


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "mask.tif"
    target.write_text("old")
    with pytest.raises(ZeroDivisionError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            1 / 0
    assert target.read_text() == "old" and _names(tmp_path) == ["mask.tif"]


def test_a_place_that_cannot_be_written_is_our_error_naming_the_target(tmp_path):
    (tmp_path / "file").write_text("")
    target = tmp_path / "file" / "mask.tif"  # its folder is a file
    with pytest.raises(InputError, match="cannot write .*mask.tif"):
        write_text_atomic(target, "x")


def test_atomically_written_files_get_ordinary_permissions(tmp_path):
    write_text_atomic(tmp_path / "m.json", "{}")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="the umask is read from /proc/self/status")
def test_a_save_never_sets_the_umask_so_files_other_threads_make_meanwhile_keep_their_protection(tmp_path,
                                                                                                monkeypatch):
    """Setting the umask to 0 and back, for an instant, left a file or folder another thread made then writable by
    everyone; where the system tells the umask it is read instead."""
    previous = os.umask(0o027)
    try:
        monkeypatch.setattr(atomic.os, "umask", lambda *_: pytest.fail("the umask was set"))
        write_text_atomic(tmp_path / "m.json", "{}")
    finally:
        monkeypatch.undo()
        os.umask(previous)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o640


def test_the_clean_up_removes_what_killed_writers_left_and_keeps_the_files_live_writers_fill(tmp_path):
    dead = leftovers_of_a_killed_writer((tmp_path / "a.tif", ""), (tmp_path / "b.nii.gz", ".nii.gz"))
    (tmp_path / "c.tif").write_text("")
    with a_live_writer(tmp_path / "d.tif") as elsewhere, atomic_path(tmp_path / "e.tif") as here:
        here.write_text("whole")
        remove_leftover_temp_files(tmp_path)
        assert _names(tmp_path) == sorted([elsewhere.name, here.name, "c.tif"])
        assert not any(path.exists() for path in dead)
    assert _names(tmp_path) == ["c.tif", "d.tif", "e.tif"]


def test_a_killed_writers_leftovers_go_at_the_next_save_of_its_file(tmp_path):
    [dead] = leftovers_of_a_killed_writer((tmp_path / "mask.tif", ""))
    write_text_atomic(tmp_path / "mask.tif", "new")
    assert _names(tmp_path) == ["mask.tif"]


def test_a_killed_writers_leftovers_go_at_the_next_save_of_any_file_in_its_folder(tmp_path):
    """A predict killed while writing P1's mask, then P2 segmented into the same folder: P1's half-written temporary
    file goes then, not only when P1's mask is written again or a run takes the folder's lock."""
    dead = leftovers_of_a_killed_writer((tmp_path / "P1_mask.nii.gz", ".nii.gz"), (tmp_path / "P1_mask.tif", ""))
    for path in dead:  # another file's leftover goes once it has been quiet a while (see the next test)
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    write_text_atomic(tmp_path / "P2_mask.tif", "new")
    assert not any(path.exists() for path in dead) and _names(tmp_path) == ["P2_mask.tif"]


def test_a_save_leaves_another_files_fresh_temporary_file_whose_lock_it_cannot_see(tmp_path):
    """A torchrun rank on another node filling P1's mask, on a file system that keeps each machine's locks to that
    machine (BeeGFS's default, Lustre's localflock, NFS mounted nolock): no lock this machine can see, as here. Each
    rank's save of its own mask removed it, and the other node's save failed. Another file's temporary file goes once
    it has not changed for ten minutes, which no live save's does."""
    elsewhere = tmp_path / ".P1_mask.nii.gz.abcd1234.lgg-unet.tmp.nii.gz"
    elsewhere.write_bytes(b"half a mask")
    write_text_atomic(tmp_path / "P2_mask.tif", "new")
    assert elsewhere.read_bytes() == b"half a mask"
    os.utime(elsewhere, (time.time() - 3600, time.time() - 3600))  # its writer died an hour ago
    write_text_atomic(tmp_path / "P3_mask.tif", "new")
    assert _names(tmp_path) == ["P2_mask.tif", "P3_mask.tif"]


def test_a_save_leaves_the_temporary_file_another_process_is_filling_in_its_folder(tmp_path):
    with a_live_writer(tmp_path / "P1_mask.tif") as elsewhere:
        write_text_atomic(tmp_path / "P2_mask.tif", "new")
        assert elsewhere.exists()
    assert _names(tmp_path) == ["P1_mask.tif", "P2_mask.tif"]


def test_a_save_of_a_file_leaves_the_temporary_file_of_a_slower_save_of_the_same_file(tmp_path):
    """A 150 MB resume state on a slow network disk, or a mask saved from napari while a predict writes it: however
    long the slower save has taken (here: begun an hour ago), the other's clean-up leaves its file alone."""
    target = tmp_path / "resume.safetensors"
    with atomic_path(target) as slower, open(slower, "w") as file:
        file.write("the slower")
        an_hour_ago = time.time() - 3600
        os.utime(slower, (an_hour_ago, an_hour_ago))
        write_text_atomic(target, "the faster")
        assert slower.exists()
    assert target.read_text() == "the slower" and _names(tmp_path) == [target.name]


def test_a_temporary_file_removed_by_a_clean_up_before_it_was_held_is_made_anew(tmp_path, monkeypatch):
    """A clean-up (a run taking the folder's lock) may list the folder between the making of a temporary file and its
    hold: the file it removes then is replaced by one that is held, so a later clean-up spares what the block wrote."""
    real_hold, holds = atomic._hold, []

    def cleaned_up_first(handle):
        if not holds:
            remove_leftover_temp_files(tmp_path)
        holds.append(handle)
        return real_hold(handle)

    monkeypatch.setattr(atomic, "_hold", cleaned_up_first)
    with atomic_path(tmp_path / "mask.tif") as temporary, open(temporary, "w") as file:
        remove_leftover_temp_files(tmp_path)
        file.write("whole")
    assert len(holds) == 2 and (tmp_path / "mask.tif").read_text() == "whole" and _names(tmp_path) == ["mask.tif"]


@pytest.mark.skipif(sys.platform == "win32", reason="Windows renames no open file: the handle is closed before")
def test_a_clean_up_in_the_moment_before_the_rename_leaves_the_file(tmp_path, monkeypatch):
    real_replace = os.replace

    def cleaned_up_first(source, target):
        remove_leftover_temp_files(tmp_path)
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", cleaned_up_first)
    write_text_atomic(tmp_path / "mask.tif", "whole")
    assert (tmp_path / "mask.tif").read_text() == "whole"


def test_on_a_file_system_without_locks_saves_go_ahead_and_the_clean_up_removes_nothing(tmp_path, monkeypatch):
    """Where no file can be locked, no clean-up can tell a killed writer's file from a live one's: it keeps both."""
    [dead] = leftovers_of_a_killed_writer((tmp_path / "mask.tif", ""))

    def no_locks(handle):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(atomic, "try_lock", no_locks)
    write_text_atomic(tmp_path / "mask.tif", "new")
    remove_leftover_temp_files(tmp_path)
    assert (tmp_path / "mask.tif").read_text() == "new" and dead.exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_the_clean_up_leaves_a_named_pipe_or_a_folder_under_one_of_our_temporary_names(tmp_path):
    """We only ever make plain temporary files: anything else of that name is someone's. Opening the named pipe must not
    wait for a writer either (the test would hang)."""
    pipe, folder = tmp_path / ".mask.tif.abcd1234.lgg-unet.tmp", tmp_path / ".mask.tif.efgh5678.lgg-unet.tmp"
    os.mkfifo(pipe)
    folder.mkdir()
    write_text_atomic(tmp_path / "mask.tif", "new")  # cleans up the leftovers in its folder
    remove_leftover_temp_files(tmp_path)
    assert _names(tmp_path) == sorted([pipe.name, folder.name, "mask.tif"])


def _save_every_way(folder):
    """Each kind of file lgg-unet writes through `atomic_path`, by the function that writes it."""
    mask = np.zeros((3, 16, 16), np.uint8)
    mask[1, 4:9, 4:9] = 1
    for suffix in (suffix for kind in FORMATS for suffix in kind.mask_suffixes):
        yield folder / f"mask{suffix}", lambda path: file_format(path).write_mask(path, mask, None)
    yield folder / "history.json", lambda path: write_text_atomic(path, "[]")
    yield folder / "model.safetensors", lambda path: write_tensors_atomic(path, {"w": torch.ones(3)}, {})
    journal = folder / "journal.csv"
    journal.write_text("case\n")
    os.link(journal, folder / "backup.csv")
    yield journal, _unshare


def test_every_writer_fills_the_temporary_file_it_is_given_in_place(tmp_path, monkeypatch):
    """The hold that keeps a clean-up away is on the file `atomic_path` made: a writer that put a new file at that
    path (written elsewhere and renamed there) would write unheld. Each one writes the file itself."""
    real_temp_file, made = atomic._temp_file, []

    def recorded(target, suffix):
        path, handle = real_temp_file(target, suffix)
        made.append(os.fstat(handle.fileno()))
        return path, handle

    monkeypatch.setattr(atomic, "_temp_file", recorded)
    for target, save in _save_every_way(tmp_path):
        save(target)
        assert os.path.samestat(made.pop(), target.stat()), target.name
    assert not made


def test_a_users_hidden_files_that_look_temporary_survive_the_clean_up(tmp_path):
    (ours,) = leftovers_of_a_killed_writer((tmp_path / "mask.tif", ""))
    for name in LOOKALIKES:
        (tmp_path / name).write_text("the user's")
    write_text_atomic(tmp_path / "mask.tif", "new")  # cleans up the leftovers in its folder
    assert not ours.exists() and _names(tmp_path) == sorted([*LOOKALIKES, "mask.tif"])
    remove_leftover_temp_files(tmp_path)
    assert all((tmp_path / name).read_text() == "the user's" for name in LOOKALIKES)


def test_tensors_are_written_through_our_own_temporary_file(tmp_path):
    weights = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    write_tensors_atomic(tmp_path / "model.safetensors", weights, {"format": "pt"})
    assert _names(tmp_path) == ["model.safetensors"]
    assert torch.equal(safetensors.torch.load_file(tmp_path / "model.safetensors")["w"], weights["w"])


def test_tensors_of_every_kind_a_model_holds_read_back_exactly(tmp_path):
    tensors = {
        "weight": torch.randn(3, 4, 5), "half": torch.randn(7).half(), "brain": torch.randn(2, 3).bfloat16(),
        "steps": torch.tensor(12, dtype=torch.int64), "rng": torch.get_rng_state(),
        "flags": torch.tensor([True, False]),
        "empty": torch.zeros(0, 3), "strided": torch.arange(12.0).reshape(3, 4).t(),
    }
    write_tensors_atomic(tmp_path / "state.safetensors", tensors, {"format": "pt", "note": "résumé"})
    with safetensors.safe_open(tmp_path / "state.safetensors", "pt") as file:
        assert file.metadata() == {"format": "pt", "note": "résumé"}
        for name, tensor in tensors.items():
            read = file.get_tensor(name)
            assert read.dtype == tensor.dtype and torch.equal(read, tensor), name


def test_writing_tensors_leaves_other_threads_running(tmp_path):
    """The viewer's thread keeps running while a training thread saves (the GIL is not held for the whole write)."""
    tensors = {f"layer{i}": torch.randn(2_000_000) for i in range(20)}  # 160 MB, a resnet34 U-Net with Adam's state
    longest = [0.0]
    done = threading.Event()

    def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            time.sleep(0.005)
            now = time.perf_counter()
            longest[0] = max(longest[0], now - last)
            last = now

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        write_tensors_atomic(tmp_path / "state.safetensors", tensors, {})
    finally:
        done.set()
        ticker.join()
    assert longest[0] < 0.1, f"another thread waited {longest[0] * 1000:.0f} ms"


def test_each_tensor_starts_aligned_to_its_element_size(tmp_path):
    """As safetensors' own writer places them, so readers that map the file can use the data where it lies."""
    tensors = {"a": torch.ones(3, dtype=torch.uint8), "b": torch.randn(4).double(), "c": torch.randn(3).half(),
               "d": torch.tensor(7), "e": torch.ones(5, dtype=torch.bool)}
    write_tensors_atomic(tmp_path / "state.safetensors", tensors, {})
    raw = (tmp_path / "state.safetensors").read_bytes()
    length = int.from_bytes(raw[:8], "little")
    assert (8 + length) % 8 == 0
    header = json.loads(raw[8:8 + length])
    for name, tensor in tensors.items():
        assert header[name]["data_offsets"][0] % tensor.element_size() == 0, name


@pytest.mark.parametrize("tensors, metadata", [
    ({"a": torch.ones(1, dtype=torch.complex64)}, {}), ({"a": torch.ones(1)}, {"steps": 1}),
])
def test_what_a_model_file_cannot_hold_is_refused_before_the_old_file_is_touched(tmp_path, tensors, metadata):
    write_tensors_atomic(tmp_path / "model.safetensors", {"w": torch.zeros(2)}, {})
    with pytest.raises(TypeError):
        write_tensors_atomic(tmp_path / "model.safetensors", tensors, metadata)
    assert _names(tmp_path) == ["model.safetensors"]
    assert torch.equal(safetensors.torch.load_file(tmp_path / "model.safetensors")["w"], torch.zeros(2))


@pytest.mark.parametrize("name, suffix", [("a" * 250 + ".tif", ""), ("é" * 120 + "_mask.nii.gz", ".nii.gz")])
def test_a_file_whose_name_is_near_the_file_systems_limit_is_written_and_its_leftovers_are_found(
        tmp_path, name, suffix):
    """A name of up to 255 bytes is a valid file name, so it is written, though its temporary name holds more."""
    target = tmp_path / name
    assert len(os.fsencode(target.name)) > 230  # our temporary name adds 23 bytes and the suffix
    with atomic_path(target, suffix=suffix) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and _names(tmp_path) == [name]
    (left,) = leftovers_of_a_killed_writer((target, suffix))
    remove_leftover_temp_files(tmp_path)
    assert not left.exists() and _names(tmp_path) == [name]


def test_a_write_that_fails_removes_the_folders_it_made_and_keeps_those_it_found(tmp_path):
    (tmp_path / "kept").mkdir()
    with pytest.raises(ZeroDivisionError):
        with atomic_path(tmp_path / "kept" / "new" / "deeper" / "mask.tif") as tmp:
            tmp.write_text("half")
            1 / 0
    assert _names(tmp_path) == ["kept"] and _names(tmp_path / "kept") == []
    write_text_atomic(tmp_path / "kept" / "new" / "mask.tif", "whole")
    assert (tmp_path / "kept" / "new" / "mask.tif").read_text() == "whole"


@pytest.mark.skipif(sys.platform == "win32", reason="file owners and sticky folders are POSIX's")
def test_replacing_another_users_file_in_a_sticky_folder_is_refused_naming_its_owner_and_what_to_do(
        tmp_path, monkeypatch):
    """A shared folder of mode 1777 (/tmp, many lab folders) lets only a file's owner replace it: the refusal said
    "cannot write X: Operation not permitted", not whose the file is. Root replaces any file, so the rename is refused
    as the system refuses a user, and this process becomes someone other than the file's owner."""
    import pwd

    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    target = shared / "mask.tif"
    target.write_text("theirs")
    real_replace = os.replace

    def refused(source, destination):
        if os.fspath(destination) == os.fspath(target):
            raise PermissionError(errno.EPERM, "Operation not permitted")
        real_replace(source, destination)

    monkeypatch.setattr(atomic.os, "replace", refused)
    monkeypatch.setattr(atomic.os, "geteuid", lambda: target.stat().st_uid + 1)
    owner = pwd.getpwuid(target.stat().st_uid).pw_name
    with pytest.raises(InputError) as refusal:
        write_text_atomic(target, "ours")
    message = str(refusal.value)
    assert "\n" not in message and message.startswith(f"cannot write {target}: it belongs to {owner}")
    assert "choose another output name or folder" in message and f"ask {owner} to remove it" in message
    assert target.read_text() == "theirs" and _names(shared) == ["mask.tif"]
    os.chmod(shared, 0o777)  # not sticky: the system's own words, since the owner is not the reason
    with pytest.raises(InputError, match=f"^cannot write {target}: Operation not permitted$"):
        write_text_atomic(target, "ours")
