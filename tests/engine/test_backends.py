import re

import numpy as np
import pytest
import torch

from napari_lgg_unet.engine import backends
from napari_lgg_unet.engine.errors import DeviceError, InputError
from napari_lgg_unet.engine.model import load_model
from napari_lgg_unet.engine.precision import choose
from napari_lgg_unet.engine.predict import SegmentOptions, segment_steps

needs_openvino = pytest.mark.skipif(
    not backends.openvino_installed(), reason="the fast-cpu extra (openvino) is not installed"
)
FP32 = choose("cpu", "fp32")


def _logits(network, batch, backend):
    with torch.inference_mode():
        return backends.forward(network, batch, FP32, backend)


def test_an_unknown_backend_is_a_user_error(tiny_model_dir):
    with pytest.raises(InputError, match="backend"):
        _logits(load_model(tiny_model_dir).network, torch.rand(1, 3, 64, 64), "tensorrt")


def test_openvino_refused_says_which_backend_to_use_as_the_api_and_the_cli_name_it(tiny_model_dir, monkeypatch):
    """"use --backend torch" meant nothing to SegmentOptions(backend=...) callers."""
    network, batch = load_model(tiny_model_dir).network, torch.rand(1, 3, 64, 64)
    with pytest.raises(DeviceError, match=re.escape("fp32 or bf16 only; use backend='torch' or 'auto' (--backend "
                                                    "torch or auto)")):
        with torch.inference_mode():
            backends.forward(network, batch, choose("cpu", "fp16"), "openvino")
    monkeypatch.setattr(backends, "openvino_installed", lambda: False)
    with pytest.raises(DeviceError, match=re.escape("or use backend='auto' (--backend auto)")):
        _logits(network, batch, "openvino")


@needs_openvino
def test_openvino_gives_torch_fp32_answers_at_any_batch_and_size_and_is_converted_once(tiny_model_dir):
    network = load_model(tiny_model_dir).network
    for shape in [(3, 3, 64, 64), (1, 3, 96, 128)]:
        batch = torch.rand(shape)
        np.testing.assert_allclose(_logits(network, batch, "openvino"), _logits(network, batch, "torch"), atol=1e-4)
    compiled = backends._states[network].compiled
    _logits(network, torch.rand(2, 3, 64, 64), "openvino")
    assert backends._states[network].compiled is compiled


@needs_openvino
def test_openvino_never_runs_weights_older_than_the_network(tiny_model_dir):
    network = load_model(tiny_model_dir).network
    batch = torch.rand(2, 3, 64, 64)
    _logits(network, batch, "openvino")
    with torch.no_grad():
        network.segmentation_head[0].bias += 1.0  # what an optimiser step does: change weights in place
    np.testing.assert_allclose(_logits(network, batch, "openvino"), _logits(network, batch, "torch"), atol=1e-4)


@needs_openvino
def test_auto_moves_a_model_to_openvino_once_it_has_run_long_enough(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(backends, "CONVERT_AFTER_SECONDS", 0.0)
    model = load_model(tiny_model_dir)
    image = np.random.default_rng(0).random((4, 64, 64)).astype(np.float32)
    labels = [
        p.runs_on for p in segment_steps(model, image, SegmentOptions(batch_size=2, precision="fp32", backend="auto"))
    ]
    assert labels[0] == f"cpu, fp32, {torch.get_num_threads()} threads"
    assert labels[-1] == f"cpu, fp32, openvino, {torch.get_num_threads()} threads"


def test_torch_runs_the_default_model_with_batch_norms_folded_and_the_same_answers():
    network = load_model("default").network
    batch = torch.rand(2, backends.input_channels(network), 128, 128)
    with torch.inference_mode():
        plain = network(batch)
    np.testing.assert_allclose(_logits(network, batch, "torch"), plain, atol=1e-4)
    folded = backends._states[network].folded
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in network.modules())  # the network itself is untouched


def test_the_folded_copy_follows_every_change_of_weights_or_statistics(tiny_model_dir):
    network = load_model(tiny_model_dir).network
    batch = torch.rand(2, 3, 64, 64)
    _logits(network, batch, "torch")
    norm = next(m for m in network.modules() if isinstance(m, torch.nn.BatchNorm2d))
    for change in (lambda: norm.running_mean.add_(0.5), lambda: next(network.parameters()).mul_(1.5)):
        with torch.no_grad():
            change()
        with torch.inference_mode():
            expected = network(batch)
        np.testing.assert_allclose(_logits(network, batch, "torch"), expected, atol=1e-4)


def test_a_network_in_training_mode_runs_as_it_is(tiny_model_dir):
    network = load_model(tiny_model_dir).network.train()
    _logits(network, torch.rand(2, 3, 64, 64), "torch")
    assert backends._states[network].folded is None
