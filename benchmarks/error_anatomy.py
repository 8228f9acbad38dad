"""Where are the errors the clicks and the clean-up have to fix? Boundary rims, missed ends, or separate pieces.

For each held-out patient of the model's split (or each case of a folder), with the model's own clean-up: the Dice;
what the best threshold for that patient alone would give (an oracle: no setting can know it); what moving the whole
boundary in or out by the best 1-3 pixels in-plane for that patient would give (an oracle for any rule that widens or
narrows the mask, which a wide rim invites); what removing every false piece would give (an oracle for the review
list and for any clean-up rule); and where the wrong voxels lie:
within 3 pixels of the other mask's edge (a boundary rim, in-plane distance), more than 10 pixels from it, and missed
tumour on slices where nothing was predicted (the tumour's ends). If the oracles barely beat the model, no clean-up
rule can reach issue 16's targets, and if most wrong voxels are thin rims, a click (which fixes a region around it
on a few slices) gains little per click: that is what docs/corrections.md reports. Uses the probability cache of
benchmarks/probability_cache.py, so a re-run costs seconds.

    PYTHONPATH=src:benchmarks python benchmarks/error_anatomy.py --model default --split test --cache /tmp/anatomy
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from corrections import TRUE_PIECE, folder_cases, lgg_scans
from napari_lgg_unet.engine.model import load_model
from napari_lgg_unet.engine.postprocess import kept_labels
from probability_cache import cached_probability
from timing import cpu_model

THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SHIFTS = (-3, -2, -1, 0, 1, 2, 3)  # pixels in-plane: negative erodes the mask, positive dilates it
RIM, FAR = 3, 10  # pixels (in-plane) from the other mask's edge
SLICE_WEIGHT = 10.0  # distance across slices counts this many pixels, so "near" means near on the same slice


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def shifted(mask: np.ndarray, pixels: int) -> np.ndarray:
    """`mask` with its boundary moved out (`pixels` > 0) or in, by a disc of that radius on each slice."""
    if pixels == 0:
        return mask
    r = np.arange(-abs(pixels), abs(pixels) + 1) ** 2
    disc = (np.add.outer(r, r) <= pixels * pixels)[None]
    return (ndimage.binary_dilation if pixels > 0 else ndimage.binary_erosion)(mask, disc)


def anatomy(probability: np.ndarray, truth: np.ndarray, config) -> dict:
    """The row of one patient (see the module docstring); `config` is the model's clean-up."""
    labels, count = kept_labels(probability, config)
    mask = labels > 0
    best = max((dice(kept_labels(probability, replace(config, threshold=t))[0] > 0, truth), t) for t in THRESHOLDS)
    best_shift = max((dice(shifted(mask, k), truth), k) for k in SHIFTS)
    true_pieces = [k for k in range(1, count + 1)
                   if (truth & (labels == k)).sum() >= TRUE_PIECE * (labels == k).sum()]
    missed, false = truth & ~mask, mask & ~truth
    from_mask = ndimage.distance_transform_edt(~mask, sampling=(SLICE_WEIGHT, 1, 1))
    from_truth = ndimage.distance_transform_edt(~truth, sampling=(SLICE_WEIGHT, 1, 1))
    return {
        "dice": dice(mask, truth), "best_threshold": best[1], "dice_best_threshold": best[0],
        "best_shift": best_shift[1], "dice_best_shift": best_shift[0],
        "dice_false_pieces_removed": dice(np.isin(labels, true_pieces), truth),
        "truth_voxels": int(truth.sum()), "missed": int(missed.sum()), "false": int(false.sum()),
        "missed_rim": int((missed & (from_mask <= RIM)).sum()), "missed_far": int((missed & (from_mask > FAR)).sum()),
        "missed_on_empty_slices": int((missed & ~mask.any(axis=(1, 2))[:, None, None]).sum()),
        "false_rim": int((false & (from_truth <= RIM)).sum()), "false_far": int((false & (from_truth > FAR)).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--lgg", default="../shared/data/lgg/kaggle_3m")
    parser.add_argument("--split", default="test", choices=("test", "validation"))
    parser.add_argument("--cases", type=Path, default=None, help="score the scans of this case folder instead")
    parser.add_argument("--cache", type=Path, default=None, help="keep each first segmentation here (.npy)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    model = load_model(args.model)
    scans = folder_cases(args.cases, None) if args.cases else lgg_scans(model, Path(args.lgg), args.split, None)
    print(f"{args.cases or args.split}, model {args.model}, CPU: {cpu_model()}", flush=True)
    rows = {}
    for name, image, rgb, mask in scans:
        probability = cached_probability(model, image, rgb, args.cache and args.cache / f"{name}.npy")
        rows[name] = anatomy(probability, np.asarray(mask > 0).reshape(probability.shape), model.config.postprocess)
        print(name, json.dumps(rows[name]), flush=True)
    mean = {key: float(np.mean([r[key] for r in rows.values()])) for key in ("dice", "dice_best_threshold",
                                                                              "dice_best_shift",
                                                                              "dice_false_pieces_removed")}
    wrong = {key: int(sum(r[key] for r in rows.values())) for key in next(iter(rows.values())) if
             key.startswith(("missed", "false"))}
    print("mean", json.dumps(mean), "\nsums", json.dumps(wrong))
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_model(), "model": args.model, "split": args.split, "mean": mean,
                                         "sums": wrong, "per_patient": rows}, indent=2))


if __name__ == "__main__":
    main()
