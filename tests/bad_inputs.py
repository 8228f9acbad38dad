"""Bad model folders and images a user may hand us, shared by the bad-input catalogue of the CLI, the API and the
widgets.

Each entry names a phrase the refusal must contain, so the same input is refused with the same words wherever it is
given.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from safetensors import safe_open
from safetensors.torch import load_file, save_file

from napari_lgg_unet.engine.model import CONFIG_FILE, FORMAT, WEIGHTS_FILE


def _copy(good: Path, folder: Path) -> None:
    shutil.copytree(good, folder)


def _config_text(text: str) -> Callable[[Path, Path], None]:
    def make(good: Path, folder: Path) -> None:
        _copy(good, folder)
        (folder / CONFIG_FILE).write_text(text)

    return make


def _config_value(*keys: str, value: Any) -> Callable[[Path, Path], None]:
    """A copy whose config.json has `value` at the nested key path `keys`."""

    def make(good: Path, folder: Path) -> None:
        _copy(good, folder)
        config = json.loads((folder / CONFIG_FILE).read_text())
        parent = config
        for key in keys[:-1]:
            parent = parent[key]
        parent[keys[-1]] = value
        (folder / CONFIG_FILE).write_text(json.dumps(config))

    return make


def model_copy(good: Path, folder: Path, *keys: str, value: Any) -> Path:
    """A copy of the model folder `good` made as `folder`, whose config.json has `value` at the nested key path `keys`
    (a model of other settings, such as its own calibrated clean-up, or a bad one)."""
    _config_value(*keys, value=value)(good, folder)
    return folder


def _without_weights(good: Path, folder: Path) -> None:
    _copy(good, folder)
    (folder / WEIGHTS_FILE).unlink()


def _truncated_weights(good: Path, folder: Path) -> None:
    _copy(good, folder)
    weights = folder / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _weights_of_another_save(good: Path, folder: Path) -> None:
    """Weights that name another save and do not carry their own config (as models saved by earlier versions do)."""
    _copy(good, folder)
    weights = folder / WEIGHTS_FILE
    save_file(load_file(weights), weights, metadata={"format": FORMAT, "weights_id": "0" * 32})


def _weights(change: Callable[[Any], Any]) -> Callable[[Path, Path], None]:
    """A copy whose floating-point tensors are `change(tensor)`, in a file with the metadata our save wrote."""

    def make(good: Path, folder: Path) -> None:
        _copy(good, folder)
        weights = folder / WEIGHTS_FILE
        with safe_open(str(weights), "pt") as handle:
            metadata = handle.metadata()
        state = load_file(weights)
        save_file({name: change(value) if value.is_floating_point() else value for name, value in state.items()},
                  weights, metadata=metadata)

    return make


def _without_tensor(name: str) -> Callable[[Path, Path], None]:
    def make(good: Path, folder: Path) -> None:
        _copy(good, folder)
        weights = folder / WEIGHTS_FILE
        with safe_open(str(weights), "pt") as handle:
            metadata = handle.metadata()
        save_file({key: value for key, value in load_file(weights).items() if key != name}, weights, metadata=metadata)

    return make


# name -> (make(good_model, folder), phrase of the refusal, whether it is refused before any network is built (one
# laid out on the meta device, which allocates nothing, aside))
BAD_MODELS: dict[str, tuple[Callable[[Path, Path], None], str, bool]] = {
    "missing folder": (lambda good, folder: None, "model folder not found", True),
    "folder without config": (lambda good, folder: folder.mkdir(), "is not a model folder", True),
    "config not JSON": (_config_text("{not json"), "corrupt", True),
    "config nested too deeply": (_config_text("[" * 100_000 + "]" * 100_000), "corrupt", True),
    "config of another format": (_config_value("format", value="other/1"), "is not a napari-lgg-unet/1 model", True),
    "threshold as text": (_config_value("postprocess", "threshold", value="0.5"), "threshold must be a number", True),
    "min size as text": (
        _config_value("postprocess", "min_size", value="abc"), "min_size must be a whole number", True
    ),
    "image size as a float": (
        _config_value("preprocess", "image_size", value=256.0), "image_size must be a whole", True
    ),
    "image size 8192": (_config_value("preprocess", "image_size", value=8192), "image size must be between", True),
    "decoder 20000 wide": (_config_value("decoder_channels", value=[20000] * 5), "decoder width must be between", True),
    "decoder width 0": (_config_value("decoder_channels", value=[0, 16, 16, 16, 16]), "decoder width", True),
    "unknown encoder": (_config_value("encoder", value="resnet9000"), "unknown encoder", True),
    "no weights": (_without_weights, "has a config but no model.safetensors", True),
    "truncated weights": (_truncated_weights, "corrupt", True),
    "weights of another save": (_weights_of_another_save, "come from different saves", True),
    "weights of another decoder": (
        _config_value("decoder_channels", value=[32, 16, 16, 16, 16]), "does not match", True
    ),
    "config with a number too long to read": (
        _config_text('{"format": "napari-lgg-unet/1", "weights_id": ' + "9" * 5000 + "}"),
        "holds a number too long to read", True,
    ),
    "config with a setting of a newer version": (
        _config_value("preprocess", "bias_correction", value="n4"), "does not know: preprocess.bias_correction", True
    ),
    "config of another architecture": (
        _config_value("architecture", value="smp.FPN"), "describes a 'smp.FPN' network", True
    ),
    "weights lacking a tensor": (_without_tensor("encoder.conv1.weight"), "1 tensor missing", True),
    "whole-number weights": (_weights(lambda value: value.int()), "of another shape or number type", True),
    "NaN weights": (_weights(lambda value: value.fill_(float("nan"))), "NaN or infinite weights", False),
    "weights beyond float32": (_weights(lambda value: value.double() * 1e300), "NaN or infinite weights", False),
}


def make_bad_model(name: str, good: Path, parent: Path) -> Path:
    """The bad model folder `name` of BAD_MODELS, made in `parent`."""
    folder = parent / "bad-model"
    BAD_MODELS[name][0](good, folder)
    return folder


def _with(value: float, at: tuple[int, ...], shape: tuple[int, ...] = (4, 32, 32)) -> Callable[[], np.ndarray]:
    def make() -> np.ndarray:
        image = np.random.default_rng(0).random(shape, dtype=np.float32)
        image[at] = value
        return image

    return make


# name -> (make the image array, phrase of the refusal); napari layers and segment_volume get the same arrays
BAD_IMAGES: dict[str, tuple[Callable[[], np.ndarray], str]] = {
    "NaN slice": (_with(np.nan, (2,)), "NaN"),
    "one infinite voxel": (_with(np.inf, (1, 5, 5)), "infinite"),
    "4D stack": (lambda: np.zeros((2, 3, 32, 32), np.float32), "2D or 3D"),
    "4 colour channels": (lambda: np.zeros((2, 32, 32, 4), np.uint8), "channels"),
    "1x1 slices": (lambda: np.ones((3, 1, 1), np.uint8), "too small"),
}
