"""Does piece confidence rank true tumour pieces above false ones? ROC AUC per piece of evidence and of `confidence`.

The shipped default model segments each validation (and then test) patient as-is and, with --variants, as the
'flair-only' and 'skull-stripped' proxies; every 3D piece above the model's threshold is kept (no minimum size, so
small false pieces count too) and called true when at least 10 % of its voxels lie in the manual mask. The AUC of
each piece of evidence (the engine's, plus the brain mask's share of the piece inside the brain and depth among the
brain's slices) and of the confidence itself is printed per split and variant. Probabilities are cached as .npy
under --cache, so re-running costs seconds.

    PYTHONPATH=src:benchmarks python benchmarks/piece_confidence.py --lgg ../shared/data/lgg/kaggle_3m --variants as-is
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

import numpy as np

from cpu_speed import cpu_model
from napari_lgg_unet.engine.brain_mask import brain_mask
from napari_lgg_unet.engine.io import load_patient
from napari_lgg_unet.engine.model import load_model
from napari_lgg_unet.engine.pieces import GAP_SCALE, PieceEvidence, confidence, label_pieces, piece_evidence
from napari_lgg_unet.engine.variants import INPUT_VARIANTS, input_variant
from probability_cache import cached_probability

TRUE_SHARE = 0.10  # a piece is true when at least this share of its voxels lies in the manual mask
# the engine's evidence, then brain_mask.py's (measured here, not used by the engine)
EVIDENCE = ("peak", "mean", "voxels", "depth", "gap", "in_brain", "brain_depth")
CLOSER_IS_SURER = {"gap"}  # evidence whose AUC is taken of its negative


def auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney, ties count half); NaN when one class is missing."""
    positives, negatives = scores[truth], scores[~truth]
    if not len(positives) or not len(negatives):
        return float("nan")
    wins = (positives[:, None] > negatives[None]).sum() + 0.5 * (positives[:, None] == negatives[None]).sum()
    return float(wins / (len(positives) * len(negatives)))


def probability_and_brain(model, folder: Path, variant: str, cache: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probability, brain mask, manual mask) of one patient as `variant`, the model run only when not cached."""
    scan = load_patient(folder, require_masks=True)
    image, rgb = input_variant(scan.image, scan.rgb, variant)
    probability = cached_probability(model, image, rgb, cache / variant / f"{folder.name}.npy")
    flair = image if image.ndim == 3 else image[..., 1]
    return probability, brain_mask(flair), scan.mask


def patient_pieces(probability, brain, truth, threshold: float, gap_scales: tuple[float, ...]) -> dict[str, np.ndarray]:
    """Every piece above `threshold`: the engine's evidence, its confidence with each of `gap_scales`, the brain
    mask's evidence, and truth."""
    labels, n = label_pieces(probability >= threshold)
    evidence = piece_evidence(probability, labels, n)
    in_brain = np.bincount(labels[brain], minlength=n + 1)[1:] / np.maximum(evidence.voxels, 1)
    slices = np.flatnonzero(brain.any(axis=(1, 2))) if brain.any() else np.array([0, len(brain) - 1])
    z = evidence.centres[:, 0]
    brain_depth = np.clip(np.minimum(z - slices[0], slices[-1] - z) / max(slices[-1] - slices[0], 1), 0, 0.5)
    is_true = np.bincount(labels[truth], minlength=n + 1)[1:] >= TRUE_SHARE * np.maximum(evidence.voxels, 1)
    return {**{f.name: getattr(evidence, f.name) for f in fields(PieceEvidence) if f.name != "centres"},
            "in_brain": in_brain, "brain_depth": brain_depth, "true": is_true,
            **{f"confidence gap/{s:g}": confidence(evidence, s) for s in gap_scales}}


def collect(model, folders: list[Path], variant: str, cache: Path,
            gap_scales: tuple[float, ...] = (GAP_SCALE,)) -> dict[str, np.ndarray]:
    """Every piece of every patient, concatenated."""
    threshold = model.config.postprocess.threshold
    parts = [patient_pieces(*probability_and_brain(model, f, variant, cache), threshold, gap_scales) for f in folders]
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def report(split: str, variant: str, pieces: dict[str, np.ndarray]) -> dict:
    is_true = pieces["true"]
    row = {"split": split, "variant": variant, "pieces": int(len(is_true)), "true": int(is_true.sum())}
    scored = (*EVIDENCE, *(key for key in pieces if key.startswith("confidence")))
    sign = {name: -1.0 if name in CLOSER_IS_SURER else 1.0 for name in scored}
    return row | {name: auc(sign[name] * np.asarray(pieces[name], dtype=float), is_true) for name in sign}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lgg", type=Path, required=True, help="the kaggle_3m folder")
    parser.add_argument("--splits", nargs="+", default=["validation", "test"])
    parser.add_argument("--variants", nargs="+", default=list(INPUT_VARIANTS), choices=INPUT_VARIANTS)
    parser.add_argument("--patients", type=int, default=0, help="at most this many patients per split (0: all)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/piece-confidence"),
                        help="where probabilities are cached; use a new folder for another model")
    parser.add_argument("--model", default="default")
    parser.add_argument("--gap-scales", nargs="+", type=float, default=[GAP_SCALE],
                        help="score the confidence with these gap scales too (inf: no gap term, the rule before)")
    args = parser.parse_args()
    scales = tuple(args.gap_scales)
    model = load_model(args.model)
    print(f"CPU: {cpu_model()}; threshold {model.config.postprocess.threshold}; ROC AUC of each piece of evidence "
          "(larger = more likely tumour) and of the confidence, true piece = >= 10 % in the manual mask")
    print("| split | variant | pieces | true | " + " | ".join(EVIDENCE) + " | "
          + " | ".join(f"confidence gap/{s:g}" for s in scales) + " |")
    print("|---" * (4 + len(EVIDENCE) + len(scales)) + "|")
    for name in args.splits:
        folders = [args.lgg / p for p in model.config.training.patients(name)][: args.patients or None]
        for variant in args.variants:
            row = report(name, variant, collect(model, folders, variant, args.cache, scales))
            print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()) + " |",
                  flush=True)


if __name__ == "__main__":
    main()
