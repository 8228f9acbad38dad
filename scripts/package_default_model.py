"""Copy a trained model folder into the package as the default model, stored in half precision (< 30 MB).

    python scripts/package_default_model.py runs/s2-r18-256

Choose its threshold on the validation patients first (`lgg-unet calibrate --model runs/s2-r18-256 ...`: the
installed default is refused), then evaluate it on the test patients; see docs/MODEL_CARD.md.
"""

import sys

from importlib import resources

import numpy as np
import tifffile

from napari_lgg_unet.engine.model import load_model, save_packaged_default
from napari_lgg_unet.engine.predict import segment_volume


def main(source: str) -> None:
    model = load_model(source)
    target = save_packaged_default(model.network, model.config)
    probe = tifffile.imread(resources.files("napari_lgg_unet") / "samples" / "TCGA_CS_6665_20010817_image.tif")
    difference = np.abs(
        segment_volume(load_model(target), probe).probability - segment_volume(model, probe).probability
    )
    print(f"wrote {target}; largest probability change from half-precision storage: {difference.max():.2e}")


if __name__ == "__main__":
    main(sys.argv[1])
