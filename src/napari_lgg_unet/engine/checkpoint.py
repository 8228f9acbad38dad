"""Resumable training state (weights, Adam moments, progress) stored as safetensors + JSON, never pickles."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .atomic import atomic_path, write_text_atomic
from .errors import ModelError

RESUME_FOLDER = "resume"


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors = {
        f"{index}.{key}": value.detach().cpu().contiguous()
        for index, values in state["state"].items()
        for key, value in values.items()
        if isinstance(value, torch.Tensor)
    }
    return tensors, {"param_groups": state["param_groups"]}


def save_resume_state(
    folder: Path, network: torch.nn.Module, optimizer: torch.optim.Optimizer, progress: dict
) -> None:
    """Write everything needed to continue training; progress.json goes last and marks the state complete."""
    folder = Path(folder) / RESUME_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "weights.safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}, str(tmp))
    tensors, groups = _optimizer_tensors(optimizer)
    with atomic_path(folder / "optimizer.safetensors") as tmp:
        save_file(tensors, str(tmp))
    write_text_atomic(folder / "optimizer.json", json.dumps(groups))
    write_text_atomic(folder / "progress.json", json.dumps(progress, indent=1))


def has_resume_state(folder: Path) -> bool:
    return (Path(folder) / RESUME_FOLDER / "progress.json").is_file()


def load_resume_state(folder: Path, network: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore weights and optimizer in place; return the saved progress dict."""
    folder = Path(folder) / RESUME_FOLDER
    try:
        network.load_state_dict(load_file(str(folder / "weights.safetensors")))
        tensors = load_file(str(folder / "optimizer.safetensors"))
        groups = json.loads((folder / "optimizer.json").read_text())
        progress = json.loads((folder / "progress.json").read_text())
    except (OSError, RuntimeError, ValueError) as error:
        raise ModelError(f"cannot resume from {folder}: {error}") from None
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups["param_groups"]})
    return progress
