"""Copy a trained model folder into the package as the default model, stored in half precision (< 30 MB).

    python scripts/package_default_model.py runs/s2-r18-256

Then choose its threshold on the validation patients (`lgg-unet calibrate --model default ...`) and evaluate it
on the test patients; see docs/MODEL_CARD.md.
"""

import sys

from importlib import resources

import numpy as np
import tifffile

from napari_lgg_unet.engine.model import default_model_path, load_model, save_model
from napari_lgg_unet.engine.predict import segment_volume


def main(source: str) -> None:
    model = load_model(source)
    target = save_model(model.network, model.config, default_model_path(), half=True)
    probe = tifffile.imread(resources.files("napari_lgg_unet") / "samples" / "TCGA_CS_6665_20010817_image.tif")
    difference = np.abs(
        segment_volume(load_model(target), probe).probability - segment_volume(model, probe).probability
    )
    print(f"wrote {target}; largest probability change from half-precision storage: {difference.max():.2e}")


if __name__ == "__main__":
    main(sys.argv[1])
