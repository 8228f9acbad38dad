import numpy as np
import pytest
import tifffile
import torch

from napari_lgg_unet.engine.errors import InputError
from napari_lgg_unet.engine.metrics import volume_scores
from napari_lgg_unet.engine.model import load_model
from napari_lgg_unet.engine.precision import choose, grad_scaler, native_bf16_cpu
from napari_lgg_unet.engine.predict import SegmentOptions, segment_steps
from napari_lgg_unet.engine.settings import PRECISION_CHOICES
from napari_lgg_unet.sample_data import SAMPLE_PATIENT, sample_folder

CPU = torch.device("cpu")


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
    progress = list(segment_steps(load_model("default"), sample_scan[:1], SegmentOptions(precision="fp32", backend="torch"), rgb=True))
    assert {p.runs_on for p in progress} == {f"cpu, fp32, {torch.get_num_threads()} threads"}


def test_an_explicit_precision_overrides_the_automatic_choice():
    assert choose(CPU, "fp32").dtype is None and not choose(CPU, "fp32").channels_last
    assert choose(CPU, "bf16").dtype is torch.bfloat16 and choose(CPU, "bf16").channels_last
    assert choose("cpu", "FP16").dtype is torch.float16
    assert choose(CPU, "bf16").label == f"cpu, bf16, {torch.get_num_threads()} threads"
    with pytest.raises(InputError, match="precision must be one of auto"):
        choose(CPU, "int8")


def test_auto_is_decided_once_per_process_and_uses_bf16_only_on_cpus_that_have_it():
    chosen = choose(CPU, "auto")
    assert choose(CPU) is chosen and chosen.name in PRECISION_CHOICES
    assert chosen.name == "fp32" or (chosen.name == "bf16" and native_bf16_cpu())


def test_training_gets_a_grad_scaler_only_for_fp16():
    assert grad_scaler(choose(CPU, "fp16")).is_enabled()
    assert not grad_scaler(choose(CPU, "bf16")).is_enabled()
    assert not grad_scaler(choose(CPU, "fp32")).is_enabled()
