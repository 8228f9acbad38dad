"""device: which device a request resolves to, CPU threads, and out-of-memory errors turned into advice."""

import re

import pytest
import torch

from napari_lgg_unet.engine import device
from napari_lgg_unet.engine.device import (
    OOM_ADVICE, describe_device, is_out_of_memory, out_of_memory_as_advice, pick_device, set_threads,
)
from napari_lgg_unet.engine.errors import DeviceError, InputError


def test_cpu_is_always_there_and_auto_picks_a_real_device():
    assert pick_device("cpu") == pick_device("CPU") == pick_device(" Cpu\n") == torch.device("cpu")
    assert describe_device(pick_device("cpu")).startswith("cpu (")
    auto = pick_device("auto")
    assert auto == pick_device(None) and auto.type in ("cuda", "mps", "cpu")
    assert (auto.type == "cuda") == torch.cuda.is_available()


def test_an_unknown_device_is_our_input_error_and_a_missing_gpu_a_device_error():
    with pytest.raises(InputError, match="gpu0"):
        pick_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="cuda"):
            pick_device("cuda:0")


@pytest.mark.parametrize("requested", ["cuda", "mps"])
def test_a_missing_gpu_is_refused_with_advice_in_the_words_of_the_api_and_the_cli(monkeypatch, requested):
    """"use --device cpu" meant nothing to `load_model(folder, device="cuda")` or `TrainConfig(device="cuda")`."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device, "_mps_available", lambda: False)
    with pytest.raises(DeviceError, match=re.escape("use device='cpu' or 'auto' (--device cpu or auto)")):
        pick_device(requested)


def test_only_allocation_failures_become_advice():
    assert is_out_of_memory(MemoryError()) and is_out_of_memory(RuntimeError("CUDA out of memory. Tried to ..."))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    with pytest.raises(DeviceError, match=OOM_ADVICE):
        with out_of_memory_as_advice():
            raise MemoryError
    with pytest.raises(RuntimeError, match="shape mismatch"):
        with out_of_memory_as_advice():
            raise RuntimeError("shape mismatch")


def test_threads_follow_the_argument_then_omp_num_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 == torch.get_num_threads()
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert set_threads(None) == 2 == torch.get_num_threads()
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert 1 <= set_threads(None) <= (torch.multiprocessing.cpu_count())
        for threads in (0, 2000, "4"):  # as TrainConfig(threads=...) refuses them, for predict and evaluate too
            with pytest.raises(InputError, match="threads must be"):
                set_threads(threads)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("requested", ["gpu", 5, ["cpu"], "cuda:first"])
def test_a_device_that_names_none_is_refused_before_torch_sees_it(requested):
    with pytest.raises(InputError, match="unknown device"):
        pick_device(requested)


def test_a_cuda_device_beyond_the_gpus_of_this_machine_is_a_device_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("cuda:1") == torch.device("cuda:1") == pick_device(torch.device("cuda:1"))
    with pytest.raises(DeviceError, match=r"'cuda:2' was requested but this machine has 2 CUDA GPU\(s\), cuda:0 to "):
        pick_device("cuda:2")


def test_a_torch_device_of_a_tensor_is_taken_whatever_its_index():
    assert pick_device(torch.device("cpu", 0)) == pick_device(torch.device("cpu")) == torch.device("cpu")
