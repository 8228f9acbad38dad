"""File > Open Sample: one real LGG patient shipped with the plugin, so it works offline (see samples/README.md)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import tifffile

from .reader import LayerData, scan_layers, with_source

SAMPLE_PATIENT = "TCGA_CS_6665_20010817"


def sample_folder() -> Path:
    return Path(str(resources.files("napari_lgg_unet") / "samples"))


def sample_patient() -> list[LayerData]:
    """The MRI (Z, 256, 256, 3) uint8 as an RGB image and its tumour mask as labels 0/1, marked with the packaged
    file they come from, so that File > Save never writes a mask over the sample (see writer.py)."""
    folder = sample_folder()
    image = tifffile.imread(folder / f"{SAMPLE_PATIENT}_image.tif")
    mask = tifffile.imread(folder / f"{SAMPLE_PATIENT}_mask.tif")
    return with_source(scan_layers(SAMPLE_PATIENT, image, True, mask), folder / f"{SAMPLE_PATIENT}_image.tif")
