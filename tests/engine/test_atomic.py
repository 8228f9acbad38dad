"""atomic: a file is either the old one or the new one, never half of one, and no temporary file is left behind."""

import json
import os
import threading
import time

import pytest
import safetensors.torch
import torch
from temp_files import LOOKALIKES, leftovers_of_a_killed_writer

from napari_lgg_unet.engine.atomic import (
    atomic_path, remove_leftover_temp_files, write_tensors_atomic, write_text_atomic,
)
from napari_lgg_unet.engine.errors import InputError


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


def test_only_stale_temporary_files_of_ours_are_cleaned_up(tmp_path):
    old, new = leftovers_of_a_killed_writer((tmp_path / "a.tif", ""), (tmp_path / "b.nii.gz", ".nii.gz"))
    (tmp_path / "c.tif").write_text("")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    remove_leftover_temp_files(tmp_path, older_than=600)
    assert _names(tmp_path) == sorted([new.name, "c.tif"])
    remove_leftover_temp_files(tmp_path)
    assert _names(tmp_path) == ["c.tif"]


def test_a_users_hidden_files_that_look_temporary_survive_the_clean_up(tmp_path):
    (ours,) = leftovers_of_a_killed_writer((tmp_path / "mask.tif", ""))
    for name in LOOKALIKES:
        (tmp_path / name).write_text("the user's")
    an_hour_ago = time.time() - 3600
    for path in tmp_path.iterdir():
        os.utime(path, (an_hour_ago, an_hour_ago))
    write_text_atomic(tmp_path / "mask.tif", "new")  # cleans up the stale leftovers of mask.tif
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
    remove_leftover_temp_files(tmp_path, "other" + name)
    assert left.exists()
    remove_leftover_temp_files(tmp_path, name)
    assert _names(tmp_path) == [name]


def test_a_write_that_fails_removes_the_folders_it_made_and_keeps_those_it_found(tmp_path):
    (tmp_path / "kept").mkdir()
    with pytest.raises(ZeroDivisionError):
        with atomic_path(tmp_path / "kept" / "new" / "deeper" / "mask.tif") as tmp:
            tmp.write_text("half")
            1 / 0
    assert _names(tmp_path) == ["kept"] and _names(tmp_path / "kept") == []
    write_text_atomic(tmp_path / "kept" / "new" / "mask.tif", "whole")
    assert (tmp_path / "kept" / "new" / "mask.tif").read_text() == "whole"
