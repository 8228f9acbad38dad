"""Print `lgg-unet evaluate --json` files as Markdown tables (for the model card).

    python scripts/results_table.py docs/default-model-test.json             # per-patient table of one file
    python scripts/results_table.py --summary runs/eval/new-test-*.json      # one summary row per file
    python scripts/results_table.py --side-by-side a.json b.json c.json      # per-patient Dice, one column a file
"""

import json
import statistics
import sys
from pathlib import Path


def load(path: str) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def per_patient(path: str) -> None:
    result = load(path)
    print("| patient | slices | Dice | IoU | pixel accuracy |")
    print("|---|---|---|---|---|")
    for name, row in sorted(result["patients"].items()):
        print(f"| {name} | {row['slices']} | {row['dice']:.3f} | {row['iou']:.3f} | {row['accuracy']:.4f} |")
    print(f"| **mean** | | **{result['mean_dice']:.3f}** | **{result['mean_iou']:.3f}** | "
          f"**{result['mean_accuracy']:.4f}** |")
    print(f"| **median** | | **{result['median_dice']:.3f}** | | |")


def summary(paths: list[str]) -> None:
    """Mean / median / worst per-volume Dice and how many patients fall below 0.5 or to 0, per file."""
    print("| result | patients | mean Dice | median Dice | worst | below 0.5 | at 0 |")
    print("|---|---|---|---|---|---|---|")
    for path in paths:
        dice = [row["dice"] for row in load(path)["patients"].values()]
        print(f"| {Path(path).stem} | {len(dice)} | {statistics.mean(dice):.3f} | {statistics.median(dice):.3f} | "
              f"{min(dice):.3f} | {sum(d < 0.5 for d in dice)} | {sum(d < 0.005 for d in dice)} |")


def side_by_side(paths: list[str]) -> None:
    results = [load(path)["patients"] for path in paths]
    print("| patient | " + " | ".join(Path(p).stem for p in paths) + " |")
    print("|---|" + "---|" * len(paths))
    for name in sorted(results[0]):
        print(f"| {name} | " + " | ".join(f"{r[name]['dice']:.3f}" if name in r else "" for r in results) + " |")
    print("| **mean** | "
          + " | ".join(f"**{statistics.mean(row['dice'] for row in r.values()):.3f}**" for r in results)
          + " |")


if __name__ == "__main__":
    if sys.argv[1] == "--summary":
        summary(sys.argv[2:])
    elif sys.argv[1] == "--side-by-side":
        side_by_side(sys.argv[2:])
    else:
        per_patient(sys.argv[1])
