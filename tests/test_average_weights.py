"""scripts/average_weights.py: the mean of a run's checkpoints goes into a new model folder, never over a model."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from napari_lgg_unet.engine.model import WEIGHTS_FILE, load_model

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "average_weights.py"


def _average(*args: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def test_the_mean_of_two_checkpoints_is_a_model_and_an_existing_model_is_not_replaced(tiny_model_dir, tmp_path):
    """Both arguments are folders, so a swapped or reused name (the run's own folder as the output) replaced that
    model's weights with the mean without a word."""
    weights = tiny_model_dir / WEIGHTS_FILE
    doubled = tmp_path / "doubled.safetensors"
    save_file({k: v * 2 if v.is_floating_point() else v for k, v in load_file(weights).items()}, doubled)
    done = _average(tiny_model_dir, tmp_path / "mean", weights, doubled)
    assert done.returncode == 0, done.stderr
    mean, original = load_model(tmp_path / "mean").network.state_dict(), load_file(weights)
    key = next(k for k, v in original.items() if v.is_floating_point() and v.abs().sum() > 0)
    torch.testing.assert_close(mean[key], original[key] * 1.5)
    record = load_model(tmp_path / "mean").config.training
    assert record.averaged_from == ["model.safetensors", "doubled.safetensors"] and record.best_epoch is None

    kept = tmp_path / "kept"
    shutil.copytree(tiny_model_dir, kept)
    before = (kept / WEIGHTS_FILE).read_bytes()
    refused = _average(tiny_model_dir, kept, weights, doubled)
    assert refused.returncode != 0 and "already holds a model; give a new folder" in refused.stderr
    assert (kept / WEIGHTS_FILE).read_bytes() == before
