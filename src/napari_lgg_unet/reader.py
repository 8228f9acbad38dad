"""napari reader: a Kaggle LGG patient folder opens as an image and its tumour mask; a TIFF opens as an image.

A TIFF whose name ends in `_mask` (what the writer and the dataset produce) opens as a Labels layer, so saving
and reopening a mask gives back a mask, not a grey image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

LayerData = tuple  # (data, metadata, layer_type), napari's LayerDataTuple
TIFF_SUFFIXES = (".tif", ".tiff")


def get_reader(path: str | list[str]) -> Callable[[str], list[LayerData]] | None:
    """The reader for `path`, or None so napari tries other readers (any other file type, a list of paths)."""
    if not isinstance(path, (str, Path)):
        return None
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES and path.is_file():
        return read_tiff_layer
    from .engine.io import is_patient_folder

    return read_patient_folder if is_patient_folder(path) else None


def scan_layers(name: str, image: np.ndarray, rgb: bool, mask: np.ndarray | None) -> list[LayerData]:
    """Layer data for a scan and, when known, its mask as integer labels 0/1 named `<name> mask`."""
    layers: list[LayerData] = [(image, {"name": name, "rgb": rgb}, "image")]
    if mask is not None:
        layers.append(((np.asarray(mask) > 0).astype(np.uint8), {"name": f"{name} mask"}, "labels"))
    return layers


def read_patient_folder(path: str) -> list[LayerData]:
    from .engine.io import load_patient

    scan = load_patient(path)
    return scan_layers(scan.name, scan.image, scan.rgb, scan.mask)


def read_tiff_layer(path: str) -> list[LayerData]:
    from .engine.io import read_tiff
    from .engine.preprocess import resolve_rgb

    data, stem = read_tiff(path), Path(path).stem
    if stem.lower().endswith("_mask"):
        return [((data > 0).astype(np.uint8), {"name": stem}, "labels")]
    return [(data, {"name": stem, "rgb": resolve_rgb(data, None)}, "image")]
