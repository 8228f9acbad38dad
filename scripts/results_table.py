"""Print an `lgg-unet evaluate --json` file as a Markdown table (for the model card).

    python scripts/results_table.py docs/default-model-test.json
"""

import json
import sys


def main(path: str) -> None:
    result = json.loads(open(path, encoding="utf-8").read())
    print("| patient | slices | Dice | IoU | pixel accuracy |")
    print("|---|---|---|---|---|")
    for name, row in sorted(result["patients"].items()):
        print(f"| {name} | {row['slices']} | {row['dice']:.3f} | {row['iou']:.3f} | {row['accuracy']:.4f} |")
    print(f"| **mean** | | **{result['mean_dice']:.3f}** | **{result['mean_iou']:.3f}** | **{result['mean_accuracy']:.4f}** |")
    print(f"| **median** | | **{result['median_dice']:.3f}** | | |")


if __name__ == "__main__":
    main(sys.argv[1])
