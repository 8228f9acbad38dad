"""napari-lgg-unet: brain tumour segmentation in napari, and the same engine as a Python API.

    from napari_lgg_unet import load_model, segment_volume
    model = load_model("default")
    result = segment_volume(model, image)   # result.mask, result.probability
"""

from .engine.errors import LggUnetError
from .engine.io import load_patient, load_patients, load_scan
from .engine.model import load_model, save_model
from .engine.predict import segment_volume
from .engine.train import TrainConfig, train_model

__version__ = "0.1.0"
__all__ = [
    "LggUnetError",
    "TrainConfig",
    "load_model",
    "load_patient",
    "load_patients",
    "load_scan",
    "save_model",
    "segment_volume",
    "train_model",
]
