import json

import numpy as np
import pytest
import torch

from napari_lgg_unet.engine.errors import ModelError
from napari_lgg_unet.engine.model import CONFIG_FILE, WEIGHTS_FILE, build_network, load_model, read_config, save_model
from napari_lgg_unet.engine.predict import segment_volume


def test_save_load_round_trip_gives_identical_outputs(tiny_model_dir, tmp_path):
    model = load_model(tiny_model_dir)
    image = np.random.default_rng(0).random((3, 70, 90)).astype(np.float32)
    first = segment_volume(model, image).probability
    copy = save_model(model.network, model.config, tmp_path / "copy")
    np.testing.assert_array_equal(segment_volume(load_model(copy), image).probability, first)


def test_half_precision_storage_keeps_outputs_within_a_tiny_tolerance(tiny_model_dir, tmp_path):
    model = load_model(tiny_model_dir)
    image = np.random.default_rng(1).random((2, 64, 64)).astype(np.float32)
    half = load_model(save_model(model.network, model.config, tmp_path / "half", half=True))
    fp32 = {"precision": "fp32", "backend": "torch"}  # compare storage, not arithmetic
    np.testing.assert_allclose(
        segment_volume(half, image, **fp32).probability, segment_volume(model, image, **fp32).probability, atol=2e-3
    )
    assert (tmp_path / "half" / WEIGHTS_FILE).stat().st_size < (tiny_model_dir / WEIGHTS_FILE).stat().st_size * 0.6


def test_model_folder_holds_only_json_and_safetensors(tiny_model_dir):
    assert sorted(p.name for p in tiny_model_dir.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    assert json.loads((tiny_model_dir / CONFIG_FILE).read_text())["format"].startswith("napari-lgg-unet")


def _copy(src, dst):
    dst.mkdir()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_missing_corrupt_or_mismatched_folders_raise_model_errors(tiny_model_dir, tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        load_model(tmp_path / "empty")
    bad_json = _copy(tiny_model_dir, tmp_path / "bad_json")
    (bad_json / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="corrupt"):
        load_model(bad_json)
    bad_weights = _copy(tiny_model_dir, tmp_path / "bad_weights")
    (bad_weights / WEIGHTS_FILE).write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="corrupt"):
        load_model(bad_weights)
    mismatch = _copy(tiny_model_dir, tmp_path / "mismatch")
    config = json.loads((mismatch / CONFIG_FILE).read_text())
    config["decoder_channels"] = [32, 32, 32, 32, 32]
    (mismatch / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ModelError, match="does not match"):
        load_model(mismatch)


def test_a_network_built_from_a_saved_config_has_the_same_parameters(tiny_model_dir):
    config = read_config(tiny_model_dir)
    built = sum(p.numel() for p in build_network(config).parameters())
    loaded = sum(p.numel() for p in load_model(tiny_model_dir).network.parameters())
    assert built == loaded and isinstance(load_model(tiny_model_dir).network, torch.nn.Module)
