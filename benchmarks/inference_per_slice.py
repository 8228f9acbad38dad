"""Seconds per slice of the whole segmentation pipeline, for several models on the same scan and cores.

Issue 16 allows a new default at most 1.3x the old one's time per slice. Each model segments the packaged sample
patient (`segment_volume`, the models' own settings, PyTorch backend) best of `--repeats`, the models interleaved so
that a busy moment hurts both alike. Results in docs/MODEL_CARD.md with the CPU model this prints.

    PYTHONPATH=src:benchmarks python benchmarks/inference_per_slice.py --models runs/old-default default
"""

from __future__ import annotations

import argparse
from importlib import resources

import tifffile
import torch

from napari_lgg_unet.engine.model import load_model
from napari_lgg_unet.engine.predict import SegmentOptions, segment_volume
from timing import best_of, cpu_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True, help="model folders or 'default'")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scan = tifffile.imread(resources.files("napari_lgg_unet") / "samples" / "TCGA_CS_6665_20010817_image.tif")
    models = {name: load_model(name) for name in args.models}
    options = SegmentOptions(backend="torch")
    best = {name: float("inf") for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            best[name] = min(best[name], best_of(1, lambda: segment_volume(model, scan, options)))
    print(f"{len(scan)} slices of {scan.shape[1]}x{scan.shape[2]}, {args.threads} threads, CPU: {cpu_model()}")
    first = next(iter(best.values()))
    for name, seconds in best.items():
        print(f"{name}: {1000 * seconds / len(scan):.1f} ms per slice ({seconds / first:.2f}x the first)")


if __name__ == "__main__":
    main()
