"""The CUDA path on a real GPU: skipped without one (CI has none); benchmarks/gpu_check.sh runs it on a lent GPU."""

import numpy as np
import pytest
import tifffile
import torch

from napari_lgg_unet.engine.io import load_patient
from napari_lgg_unet.engine.metrics import volume_scores
from napari_lgg_unet.engine.model import load_model
from napari_lgg_unet.engine.precision import choose
from napari_lgg_unet.engine.predict import SegmentOptions, segment_volume
from napari_lgg_unet.engine.train import TrainConfig, train_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


def test_the_gpu_segments_the_sample_as_the_cpu_does(sample_patient_dir):
    scan = load_patient(sample_patient_dir)
    on_cpu = segment_volume(load_model("default", "cpu"), scan.image, SegmentOptions(precision="fp32"))
    on_gpu = segment_volume(load_model("default", "cuda"), scan.image, SegmentOptions(precision="auto"))
    assert volume_scores(on_gpu.mask, on_cpu.mask).dice >= 0.99
    assert volume_scores(on_gpu.mask, np.asarray(scan.mask) > 0).dice > 0.5


def test_auto_precision_on_the_gpu_is_reduced_precision():
    assert choose(torch.device("cuda"), "auto").name in ("bf16", "fp16")


def test_a_short_bf16_training_on_the_gpu_keeps_a_finite_loss_and_saves_a_model(sample_patient_dir, tmp_path):
    scan = load_patient(sample_patient_dir, require_masks=True)
    config = TrainConfig(epochs=1, batch_size=8, steps_per_epoch=4, image_size=128, device="cuda", precision="bf16",
                         val_fraction=0.2, workers=0, context_slices=1, clicks=True)
    events = list(train_model([scan], config, tmp_path / "model"))
    assert np.isfinite(events[-1].history[-1]["train_loss"])
    assert load_model(tmp_path / "model", "cuda").config.inputs.clicks
