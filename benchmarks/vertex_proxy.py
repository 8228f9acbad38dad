"""Where is the false tumour? False-positive voxels per patient on tumour-free slices at each end of the head.

Issue 16's unseen-patient failures are confident false pieces on the last slices towards the vertex. This scores a
model's held-out patients (the split recorded in its config) on the tumour-free slices among the first and last
`--end` slices separately from the middle ones, with the model's own clean-up, for each input variant; with
`--hard-negatives` it also reports how much of the hard-negative sampling weight the training patients' end slices
get (the sampler is meant to reach them). Results go in docs/vertex-proxy.md with the CPU model this prints.

    PYTHONPATH=src python benchmarks/vertex_proxy.py --model default --lgg ../shared/data/lgg/kaggle_3m --split test
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from napari_lgg_unet.engine.dataset import hard_negative_weights, prepare_training_volume
from napari_lgg_unet.engine.io import load_patient
from napari_lgg_unet.engine.metrics import volume_scores
from napari_lgg_unet.engine.model import load_model
from napari_lgg_unet.engine.precision import choose
from napari_lgg_unet.engine.predict import segment_volume
from napari_lgg_unet.engine.variants import input_variant
from timing import cpu_model


def end_slices(count: int, end: int) -> dict[str, np.ndarray]:
    """Boolean slice selections: the first `end`, the last `end`, and the rest."""
    index = np.arange(count)
    first, last = index < end, index >= count - end
    return {"first": first, "last": last & ~first, "middle": ~(first | last)}


def patient_row(model, folder: Path, variant: str, end: int) -> dict:
    scan = load_patient(folder, require_masks=True)
    image, rgb = input_variant(scan.image, scan.rgb, variant)
    truth = np.asarray(scan.mask > 0).reshape(-1, *scan.mask.shape[-2:])
    mask = segment_volume(model, image, rgb=rgb).mask.reshape(truth.shape) > 0
    empty = ~truth.reshape(len(truth), -1).any(axis=1)
    false = (mask & ~truth).reshape(len(truth), -1).sum(axis=1)
    scores = volume_scores(mask, truth)
    row = {"patient": scan.name, "dice": scores.dice, "precision": scores.precision, "recall": scores.recall}
    for name, chosen in end_slices(len(truth), end).items():
        row[f"fp_{name}"] = int(false[chosen & empty].sum())
    return row


def hard_negative_reach(model, lgg: Path, names: list[str], end: int) -> dict:
    """Share of the hard-negative weight on the tumour-free slices of each end (and the middle), against their share
    of the tumour-free slices: a sampler that reaches the ends gives them more weight than slices."""
    volumes = [
        prepare_training_volume(load_patient(lgg / n, require_masks=True), model.config.preprocess) for n in names
    ]
    weights = hard_negative_weights(model.network, volumes, choose("cpu", "auto"), 16, model.config.inputs)
    parts: dict[str, list[np.ndarray]] = {}
    for volume in volumes:
        for name, chosen in end_slices(len(volume.mask), end).items():
            parts.setdefault(name, []).append(chosen)
    empty = np.concatenate([~v.mask.reshape(len(v.mask), -1).any(axis=1) for v in volumes])
    total = max(weights[empty].sum(), 1e-9)
    reach = {}
    for name, chosen in parts.items():
        chosen = np.concatenate(chosen) & empty
        reach[name] = {"weight_share": float(weights[chosen].sum() / total),
                       "slice_share": float(chosen.sum() / max(empty.sum(), 1))}
    return reach


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--lgg", type=Path, default=Path("../shared/data/lgg/kaggle_3m"))
    parser.add_argument("--split", default="test", choices=("test", "validation", "train"))
    parser.add_argument("--variants", default="as-is", help="comma-separated input variants ('': none)")
    parser.add_argument("--end", type=int, default=6, help="slices counted as an end of the head")
    parser.add_argument("--patients", type=int, default=None)
    parser.add_argument("--hard-negatives", action="store_true", help="also measure the sampler's reach (train split)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = load_model(args.model)
    names = model.config.training.patients(args.split)[: args.patients]
    segmented = f"{len(names)} {args.split} patients" if args.variants else "no patients segmented"
    print(f"{args.model}: {segmented}, ends of {args.end} slices, CPU: {cpu_model()}", flush=True)
    report = {"cpu": cpu_model(), "model": args.model, "split": args.split if args.variants else None,
              "end": args.end, "variants": {}}
    for variant in filter(None, args.variants.split(",")):
        rows = [patient_row(model, args.lgg / name, variant, args.end) for name in names]
        for row in rows:
            print(variant, json.dumps(row), flush=True)
        report["variants"][variant] = {"rows": rows, "mean": {k: float(np.mean([r[k] for r in rows])) for k in rows[0]
                                                              if k != "patient"}}
        print(variant, "mean", json.dumps(report["variants"][variant]["mean"]), flush=True)
    if args.hard_negatives:
        train = model.config.training.patients("train")[: args.patients]
        report["hard_negatives"] = {"split": "train", "patients": len(train),
                                    **hard_negative_reach(model, args.lgg, train, args.end)}
        print("hard negatives", json.dumps(report["hard_negatives"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
