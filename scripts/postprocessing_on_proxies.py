"""Compare post-processing rules per patient on validation patients and the shift proxies (FLAIR only,
skull-stripped) and, optionally, on the BraTS-style NIfTI cases; the network runs once per scan and variant.

    PYTHONPATH=src python scripts/postprocessing_on_proxies.py --model default \\
        --data ../shared/data/lgg/kaggle_3m --split validation --brats ../shared/data/brats-sample --json out.json

BraTS cases are read with nibabel: channels (t1, flair, t1ce) as the model's (pre-contrast, FLAIR, post-contrast),
axial slices with anterior at the top and the patient's right on the image left like the LGG slices, truth seg > 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from napari_lgg_unet.engine.atomic import write_text_atomic
from napari_lgg_unet.engine.calibrate import candidates, validation_cases
from napari_lgg_unet.engine.variants import INPUT_VARIANTS, input_variant
from napari_lgg_unet.engine.io import patient_folders
from napari_lgg_unet.engine.metrics import volume_scores
from napari_lgg_unet.engine.model import load_model
from napari_lgg_unet.engine.postprocess import PostprocessConfig, postprocess
from napari_lgg_unet.engine.predict import segment_volume

BRATS_CHANNELS = ("t1", "flair", "t1ce")
NAMED_RULES = {
    "shipped: 0.6 + largest piece": PostprocessConfig(0.6, keep_largest=True),
    "0.5, no clean-up": PostprocessConfig(0.5),
    "0.6, no clean-up": PostprocessConfig(0.6),
    "0.5, pieces >= 200 vox with peak >= 0.9": PostprocessConfig(0.5, 200, min_confidence=0.9),
    "0.6, pieces >= 200 vox with peak >= 0.95": PostprocessConfig(0.6, 200, min_confidence=0.95),
}


def _axial(volume: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(Z, rows, cols) with rows running to posterior and columns to the patient's left, Z to superior."""
    canonical = nib.as_closest_canonical(nib.Nifti1Image(volume, affine))  # axes to R, A, S
    return np.asarray(canonical.dataobj)[::-1, ::-1, :].transpose(2, 1, 0)


def load_brats_case(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Image (Z, H, W, 3) float32 and whole-tumour truth (Z, H, W) bool of one BraTS case folder."""
    def read(kind: str) -> np.ndarray:
        img = nib.load(folder / f"{folder.name}_{kind}.nii.gz")
        return _axial(np.asarray(img.dataobj), img.affine)

    return np.stack([read(c).astype(np.float32) for c in BRATS_CHANNELS], axis=-1), read("seg") > 0


def _brats_cases(root: Path, model, variants) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    cases = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        image, truth = load_brats_case(folder)
        for variant in variants:
            proxy, rgb = input_variant(image, True, variant)
            prob = segment_volume(model, proxy, rgb=rgb).probability
            cases.append((folder.name, variant, prob, truth))
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--data", type=Path, required=True, help="Kaggle root")
    parser.add_argument("--split", default="validation", help="patients of this split in the model's config")
    parser.add_argument("--brats", type=Path, default=None, help="folder of BraTS case folders")
    parser.add_argument("--variants", nargs="+", default=list(INPUT_VARIANTS), choices=INPUT_VARIANTS)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    model = load_model(args.model, "cpu")
    names = set(model.config.training.patients(args.split))
    folders = [f for f in patient_folders(args.data) if f.name in names]
    variants = tuple(args.variants)
    probabilities = validation_cases(model, folders, variants=variants)
    cases = [
        (f.name, v, *probabilities[i * len(variants) + j])
        for i, f in enumerate(folders) for j, v in enumerate(variants)
    ]
    if args.brats:
        cases += [(f"brats/{n}", v, p, t) for n, v, p, t in _brats_cases(args.brats, model, variants)]
    # Best rule of the calibration grid (no keep-largest), chosen on the LGG patients of all variants together.
    lgg = [c for c in cases if not c[0].startswith("brats/")]
    best = max(candidates(), key=lambda r: np.mean([volume_scores(postprocess(p, r), t).dice for *_, p, t in lgg]))
    rules = {**NAMED_RULES, f"grid best over LGG variants: {best}": best}
    results: dict = {}
    for rule_name, rule in rules.items():
        for name, variant, prob, truth in cases:
            dice = volume_scores(postprocess(prob, rule), truth).dice
            results.setdefault(rule_name, {}).setdefault(variant, {})[name] = dice
    for rule_name, by_variant in results.items():
        print(rule_name)
        for variant, per_case in by_variant.items():
            values = np.array([d for n, d in per_case.items() if not n.startswith("brats/")])
            brats = {n: round(d, 3) for n, d in per_case.items() if n.startswith("brats/")}
            print(f"  {variant:<15} LGG mean {values.mean():.3f} median {np.median(values):.3f} "
                  f"min {values.min():.3f} (<0.1: {(values < 0.1).sum()})  {brats if brats else ''}")
    if args.json:
        write_text_atomic(
            args.json, json.dumps({"patients": [f.name for f in folders], "rules": results}, indent=1) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
