"""How much do our pipelines cost over a bare PyTorch model on the same batch?

Inference: `segment_volume` (normalise, resize, batch, restore size, threshold) vs `model(x)` on the already
prepared batch. Training: `train_model` steps (DataLoader, augmentation, tumour-aware sampling, loss, Adam) vs a
bare forward + backward + Adam step on a fixed batch. Run by hand; results go in docs/benchmarks.md.

    python benchmarks/pipeline_vs_bare.py --patient ../shared/data/lgg/kaggle_3m/TCGA_CS_6665_20010817
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from napari_lgg_unet.engine.dataset import AugmentConfig
from napari_lgg_unet.engine.events import Step
from napari_lgg_unet.engine.io import load_patient
from napari_lgg_unet.engine.losses import SegmentationLoss
from napari_lgg_unet.engine.model import LoadedModel, ModelConfig, build_network
from napari_lgg_unet.engine.predict import SegmentOptions, segment_volume
from napari_lgg_unet.engine.preprocess import PreprocessConfig, prepare_volume, to_model_size
from napari_lgg_unet.engine.train import TrainConfig, train_model
from timing import best_of


def bench_inference(image: np.ndarray, size: int, batch: int, repeats: int) -> tuple[float, float]:
    config = ModelConfig(preprocess=PreprocessConfig(image_size=size))
    network = build_network(config).eval()
    model = LoadedModel(network, config, "benchmark")
    prepared = torch.from_numpy(prepare_volume(image)).permute(0, 3, 1, 2)
    x = to_model_size(prepared, size)

    def bare() -> None:
        with torch.inference_mode():
            for start in range(0, len(x), batch):
                torch.sigmoid(network(x[start : start + batch]))

    bare_s = best_of(repeats, bare, warm_up=False)
    ours_s = best_of(
        repeats, lambda: segment_volume(model, image, SegmentOptions(batch_size=batch), rgb=True), warm_up=False
    )
    return len(image) / ours_s, len(image) / bare_s


def bench_training(scan, size: int, batch: int, steps: int, workers: int) -> tuple[float, float]:
    config = TrainConfig(epochs=1, steps_per_epoch=steps + 2, batch_size=batch, image_size=size, val_fraction=0.0,
                         workers=workers, device="cpu", augment=AugmentConfig(), lr=1e-4)
    stamps = []
    for event in train_model([scan], config, Path("/tmp/lgg-unet-benchmark")):
        if isinstance(event, Step):
            stamps.append(time.perf_counter())
    ours = batch * (len(stamps) - 2) / (stamps[-1] - stamps[1])  # skip the first steps (worker start-up)

    network = build_network(ModelConfig()).train()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    loss_fn = SegmentationLoss()
    x, y = torch.rand(batch, 3, size, size), (torch.rand(batch, 1, size, size) > 0.7).float()

    def step() -> None:
        optimizer.zero_grad()
        loss_fn(network(x), y).backward()
        optimizer.step()

    step()
    bare = batch * steps / best_of(1, lambda: [step() for _ in range(steps)], warm_up=False)
    return ours, bare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patient", type=Path, required=True)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    scan = load_patient(args.patient, require_masks=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, image size {args.size}, batch {args.batch}")
    ours, bare = bench_inference(scan.image, args.size, args.batch, args.repeats)
    print(f"inference: ours {ours:.1f} slices/s, bare model(x) {bare:.1f} slices/s, ratio {ours / bare:.2f}")
    ours, bare = bench_training(scan, args.size, args.batch, args.steps, args.workers)
    print(f"training:  ours {ours:.1f} samples/s, bare fwd+bwd {bare:.1f} samples/s, ratio {ours / bare:.2f}")


if __name__ == "__main__":
    main()
