"""Cost of per-sample augmentation at 256 px on one CPU thread (as in a loader worker), on the packaged patient.

Run by hand: `PYTHONPATH=src python benchmarks/augment_speed.py`; results in docs/training-runs.md.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import tifffile
import torch

from napari_lgg_unet.engine.augment import AugmentConfig
from napari_lgg_unet.engine.dataset import SliceDataset, prepare_training_volume
from napari_lgg_unet.engine.io import Scan
from napari_lgg_unet.engine.preprocess import PreprocessConfig
from napari_lgg_unet.sample_data import SAMPLE_PATIENT, sample_folder

READS = 400

# The augmentation of the shipped default model: geometry and gamma/contrast only.
PREVIOUS = replace(AugmentConfig(), zoom_fraction=0.1, intensity=0.1, skull_strip=0, missing_sequence=0, flair_only=0,
                   low_resolution=0, bias_field=0, outliers=0)
FORCED = replace(AugmentConfig(), skull_strip=1, missing_sequence=1, flair_only=1, low_resolution=1, bias_field=1,
                 outliers=1)


def main() -> None:
    torch.set_num_threads(1)
    folder = sample_folder()
    scan = Scan(SAMPLE_PATIENT, tifffile.imread(folder / f"{SAMPLE_PATIENT}_image.tif"),
                tifffile.imread(folder / f"{SAMPLE_PATIENT}_mask.tif") > 0)
    volume = prepare_training_volume(scan, PreprocessConfig(image_size=256))
    for name, config in (("none", AugmentConfig(enabled=False)), ("previous default", PREVIOUS),
                         ("new default", AugmentConfig()), ("every transform forced", FORCED)):
        started = time.perf_counter()
        dataset = SliceDataset([volume], config)
        setup = time.perf_counter() - started
        order = np.random.default_rng(0).integers(0, len(dataset), READS)
        started = time.perf_counter()
        for item in order:
            dataset[int(item)]
        per_sample = (time.perf_counter() - started) / READS
        print(f"{name:<24} {per_sample * 1000:6.2f} ms/sample   "
              f"set-up {setup * 1000:6.0f} ms for {len(dataset)} slices")


if __name__ == "__main__":
    main()
