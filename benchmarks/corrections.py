r"""A simulated user corrects the automatic mask with clicks: how fast does the Dice rise, and how fast is a click?

On each patient: segment (0 clicks), then 5 times click the voxel deepest inside the largest 3D error region
(positive where tumour is missed, negative where false tumour is drawn) through `CorrectionSession`, exactly as
issue 15 defines the user. Reports the mean Dice after 0..N clicks, the share of patients at >= 0.90, the clicks
that made the Dice worse by more than 0.005, the median and worst click latency, and the ROC AUC of piece
confidence (a piece is true when at least 10 % of it lies in the manual mask). Run by hand; results in
docs/corrections.md with the CPU model this prints.

    PYTHONPATH=src python benchmarks/corrections.py --model runs/r2-context-clicks \
        --lgg ../shared/data/lgg/kaggle_3m --split test
    PYTHONPATH=src python benchmarks/corrections.py --model default --cases ../shared/data/brats-sample

The second form scores the scans of a case folder, for a model trained on every LGG patient (no held-out ones).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from napari_lgg_unet.engine.click_training import next_click
from napari_lgg_unet.engine.corrections import WINDOW, CorrectionSession
from napari_lgg_unet.engine.io import find_scans, load_patient, load_scan
from napari_lgg_unet.engine.metrics import volume_scores
from napari_lgg_unet.engine.model import load_model
from napari_lgg_unet.engine.variants import input_variant
from probability_cache import cached_probability
from timing import cpu_model

WORSE = 0.005
TRUE_PIECE = 0.10


def roc_auc(scores: list[float], labels: list[bool]) -> float:
    """Probability that a random true piece scores above a random false one (ties count half); NaN without both."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    positive, negative = scores[labels], scores[~labels]
    if not len(positive) or not len(negative):
        return float("nan")
    above = (positive[:, None] > negative[None, :]).sum() + 0.5 * (positive[:, None] == negative[None, :]).sum()
    return float(above / (len(positive) * len(negative)))


def lgg_scans(model, lgg: Path, split: str, first: int | None) -> Iterator[tuple[str, np.ndarray, bool, np.ndarray]]:
    """(name, image, rgb, truth) of the model's held-out LGG patients of `split`."""
    for name in model.config.training.patients(split)[:first]:
        scan = load_patient(lgg / name, require_masks=True)
        yield scan.name, scan.image, scan.rgb, scan.mask


def folder_cases(folder: Path, first: int | None) -> Iterator[tuple[str, np.ndarray, bool, np.ndarray]]:
    """(name, image, rgb, truth) of the scans in a case folder (BraTS / nnU-Net layouts), as `lgg-unet evaluate`
    reads them; the truth is labels > 0 (BraTS: the whole tumour)."""
    for source in find_scans(folder)[:first]:
        scan = load_scan(source, require_mask=True)
        yield scan.name, scan.image, scan.rgb, scan.mask


def correct_patient(model, name: str, image: np.ndarray, rgb: bool, mask: np.ndarray, clicks: int, variant: str,
                    window: int | None, cache: Path | None = None) -> dict:
    image, rgb = input_variant(image, rgb, variant)
    truth = np.asarray(mask > 0).reshape(-1, *mask.shape[-2:])
    probability = cached_probability(model, image, rgb, cache and cache / variant / f"{name}.npy")
    session = CorrectionSession(model, image, rgb=rgb, window=window, probability=probability)
    pieces = [(p.confidence, bool((truth & (session.piece_labels == p.index)).sum() >= TRUE_PIECE * p.voxels))
              for p in session.pieces]
    dice, latency = [volume_scores(session.mask, truth).dice], []
    for _ in range(clicks):
        click = next_click(session.mask > 0, truth)
        if click is not None:
            started = time.perf_counter()
            session.click(click.z, click.y, click.x, click.positive)
            latency.append(time.perf_counter() - started)
        dice.append(volume_scores(session.mask, truth).dice)
    return {"patient": name, "dice": dice, "latency_s": latency, "pieces": pieces}


def summary(results: list[dict]) -> dict:
    dice = np.array([r["dice"] for r in results])
    steps = np.diff(dice, axis=1)
    latency = np.concatenate([r["latency_s"] for r in results]) if results else np.zeros(0)
    pieces = [p for r in results for p in r["pieces"]]
    return {
        "patients": len(results),
        "mean_dice_after_clicks": dice.mean(axis=0).round(4).tolist(),
        "share_at_0.90": (dice >= 0.90).mean(axis=0).round(3).tolist(),
        "clicks_worse": int((steps < -WORSE).sum()), "clicks": int(steps.size),
        "median_click_s": float(np.median(latency)) if len(latency) else float("nan"),
        "worst_click_s": float(latency.max()) if len(latency) else float("nan"),
        "piece_auc": roc_auc([c for c, _ in pieces], [t for _, t in pieces]),
        "pieces_true_false": [int(sum(t for _, t in pieces)), int(sum(not t for _, t in pieces))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--lgg", default="../shared/data/lgg/kaggle_3m")
    parser.add_argument("--split", default="test", choices=("test", "validation"),
                        help="the model's own held-out patients (never trained on)")
    parser.add_argument("--cases", type=Path, default=None,
                        help="score the scans of this case folder (e.g. ../shared/data/brats-sample) instead of LGG "
                             "patients")
    parser.add_argument("--patients", type=int, default=None, help="only the first N patients")
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--variant", default="as-is")
    parser.add_argument("--window", type=int, default=WINDOW,
                        help="side of the square a click recomputes, in network pixels (0: whole slices)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep each patient's first segmentation here (.npy; one folder per model)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    scans = (folder_cases(args.cases, args.patients) if args.cases
             else lgg_scans(model, Path(args.lgg), args.split, args.patients))
    where = args.cases or f"{args.split} patients"
    print(f"{where}, {args.variant}, window {args.window or 'whole slices'}, {args.threads} threads, "
          f"CPU: {cpu_model()}", flush=True)
    results = []
    for name, image, rgb, mask in scans:
        results.append(correct_patient(model, name, image, rgb, mask, args.clicks, args.variant, args.window or None,
                                       args.cache))
        r = results[-1]
        print(f"{name}: Dice {' '.join(f'{d:.3f}' for d in r['dice'])}, clicks "
              f"{' '.join(f'{1000 * t:.0f}' for t in r['latency_s'])} ms", flush=True)
    report = {"cpu": cpu_model(), "model": args.model, "split": str(args.cases) if args.cases else args.split,
              "variant": args.variant, "window": args.window or None,
              "summary": summary(results), "per_patient": results}
    print(json.dumps(report["summary"], indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
