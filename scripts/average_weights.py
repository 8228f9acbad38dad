"""Average the weights of several checkpoints of one training run into a new model folder.

    python scripts/average_weights.py runs/r6-long runs/r6-mean runs/r6-snap/epoch1{4,5,6,7,8}.safetensors

The first argument is the run's model folder (its config.json is kept), the second the folder to write, then the
checkpoints: resume states (`resume.safetensors`, network tensors under run_folder.NETWORK_PREFIX) or model weights.
Points late in one run's learning-rate decay lie in one basin, so their mean is a network too, often a better one
than any of them ("stochastic weight averaging", Izmailov et al. 2018), at no inference cost; it needs no choice of
epoch by the noisy validation loss. Every float tensor is averaged, batch-norm statistics included; integer ones
(batch counters) are taken from the last checkpoint. Calibrate the result before use (docs/training-runs.md).
"""

import sys
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file

from napari_lgg_unet.engine.model import CONFIG_FILE, load_model, save_model
from napari_lgg_unet.engine.run_folder import NETWORK_PREFIX


def network_tensors(path: str) -> dict[str, torch.Tensor]:
    """The network's tensors of a resume state or a model's weights file."""
    tensors = load_file(path)
    if any(key.startswith(NETWORK_PREFIX) for key in tensors):
        return {key.removeprefix(NETWORK_PREFIX): value for key, value in tensors.items()
                if key.startswith(NETWORK_PREFIX)}
    return tensors


def main(model_folder: str, out: str, checkpoints: list[str]) -> None:
    if (Path(out) / CONFIG_FILE).exists():  # the run's own folder given twice, or a model kept there, replaced silently
        sys.exit(f"{out} already holds a model; give a new folder for the mean")
    model = load_model(model_folder)
    states = [network_tensors(path) for path in checkpoints]
    mean = {
        key: torch.stack([state[key].double() for state in states]).mean(0).to(value.dtype)
        if value.is_floating_point() else states[-1][key]
        for key, value in model.network.state_dict().items()
    }
    model.network.load_state_dict(mean)
    # the run's record would otherwise say its best epoch's weights are these
    training = replace(model.config.training, best_epoch=None, averaged_from=[Path(path).name for path in checkpoints])
    config = replace(model.config, training=training)
    print(f"wrote {save_model(model.network, config, out)}: the mean of {len(states)} checkpoints")


if __name__ == "__main__":
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
