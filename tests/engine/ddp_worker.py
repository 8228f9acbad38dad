"""One rank of the two-process training test (run as a script with torchrun's variables set by the test).

It trains through the engine like the CLI does and records, for the test to check, which slices this rank drew
and the loss of every step.
"""

import json
import sys
from pathlib import Path

from napari_lgg_unet.engine import dataset
from napari_lgg_unet.engine.dataset import AugmentConfig
from napari_lgg_unet.engine.events import Step
from napari_lgg_unet.engine.io import load_patient
from napari_lgg_unet.engine.train import TrainConfig, train_model


def main(data: str, out: str, record: str, settings: str) -> None:
    drawn: list[int] = []
    read = dataset.SliceDataset.__getitem__

    def recording(self, item):
        drawn.append(int(item))
        return read(self, item)

    dataset.SliceDataset.__getitem__ = recording
    options = json.loads(settings)
    config = TrainConfig(**{**options, "decoder_channels": tuple(options["decoder_channels"])},
                         augment=AugmentConfig(enabled=False))
    scans = [load_patient(folder) for folder in sorted(Path(data).iterdir())]
    losses = [event.loss for event in train_model(scans, config, out) if isinstance(event, Step)]
    Path(record).write_text(json.dumps({"drawn": drawn, "losses": losses}))


if __name__ == "__main__":
    main(*sys.argv[1:])
