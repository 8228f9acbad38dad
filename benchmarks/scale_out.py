"""Scale-out speed, run by hand; results in docs/scale-out.md.

    # training samples/s (global), 1 vs 2 processes; each uses the whole machine
    python -m torch.distributed.run --nproc_per_node 1 benchmarks/scale_out.py train --data KAGGLE_ROOT
    python -m torch.distributed.run --nproc_per_node 2 benchmarks/scale_out.py train --data KAGGLE_ROOT
    # cohort predict cases/s: the batch job (read-ahead thread) vs a plain loop over the same cases
    python benchmarks/scale_out.py predict --data KAGGLE_ROOT --cases 8 --model default
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_lgg_unet.engine.batch_predict import segment_cohort
from napari_lgg_unet.engine.dataset import AugmentConfig
from napari_lgg_unet.engine.distributed import launched_ranks
from napari_lgg_unet.engine.events import Step
from napari_lgg_unet.engine.io import load_patient, load_scan, patient_folders, write_mask_tiff
from napari_lgg_unet.engine.model import load_model
from napari_lgg_unet.engine.predict import SegmentOptions, segment_volume
from napari_lgg_unet.engine.train import TrainConfig, train_model


def bench_train(args: argparse.Namespace) -> None:
    """Global training samples/s over the steps after `warmup`, as rank 0 sees them."""
    group = launched_ranks()
    scans = [load_patient(folder) for folder in patient_folders(args.data)[: args.patients]]
    config = TrainConfig(epochs=1, steps_per_epoch=args.steps, batch_size=args.batch_size, image_size=args.image_size,
                         val_fraction=0.0, workers=0, device="cpu", augment=AugmentConfig(enabled=False))
    stamps = []
    with tempfile.TemporaryDirectory() as out:
        for event in train_model(scans, config, Path(out) / "model"):
            if isinstance(event, Step):
                stamps.append(time.perf_counter())
    timed = np.diff(stamps[args.warmup :])
    if group.is_main:
        rate = args.batch_size * group.world / float(np.mean(timed))
        print(f"{group.world} process(es), batch {args.batch_size} each, {args.image_size} px: "
              f"{rate:.2f} samples/s (mean of {len(timed)} steps after {args.warmup} warm-up)")


def bench_predict(args: argparse.Namespace) -> None:
    """Cases/s of `segment_cohort` (read-ahead thread) against load -> segment -> write one case after another."""
    cases = patient_folders(args.data)[: args.cases]
    model = load_model(args.model, "cpu")
    options = SegmentOptions(batch_size=8, postprocess=model.config.postprocess)
    segment_volume(model, load_scan(cases[0]).image[:2], options)  # warm-up
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        for case in cases:
            scan = load_scan(case)
            write_mask_tiff(Path(out) / "plain" / f"{scan.name}_mask.tif",
                            segment_volume(model, scan.image, options, rgb=scan.rgb).mask)
        plain = time.perf_counter() - started
        started = time.perf_counter()
        for _ in segment_cohort(model, cases, Path(out) / "job", options, read_ahead=args.read_ahead):
            pass
        job = time.perf_counter() - started
    print(f"{len(cases)} cases: plain loop {len(cases) / plain:.3f} cases/s ({plain:.1f} s), "
          f"batch job with read-ahead {args.read_ahead} {len(cases) / job:.3f} cases/s ({job:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train")
    train.add_argument("--data", type=Path, required=True)
    train.add_argument("--patients", type=int, default=4)
    train.add_argument("--steps", type=int, default=12)
    train.add_argument("--warmup", type=int, default=2)
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--image-size", type=int, default=128)
    predict = commands.add_parser("predict")
    predict.add_argument("--data", type=Path, required=True)
    predict.add_argument("--cases", type=int, default=8)
    predict.add_argument("--model", default="default")
    predict.add_argument("--read-ahead", type=int, default=2)
    args = parser.parse_args()
    {"train": bench_train, "predict": bench_predict}[args.command](args)


if __name__ == "__main__":
    main()
