"""napari-lgg-unet: brain tumour segmentation in napari, and the same engine as a Python API.

    from napari_lgg_unet import load_model, segment_volume
    model = load_model("default")
    result = segment_volume(model, image)   # result.mask, result.probability

Names are imported on first use, so napari can read the plugin manifest without loading torch.
"""

from importlib import import_module

__version__ = "0.1.0"

_API = {
    "LggUnetError": "engine.errors",
    "TrainConfig": "engine.train",
    "train_model": "engine.train",
    "load_model": "engine.model",
    "save_model": "engine.model",
    "load_patient": "engine.io",
    "load_patients": "engine.io",
    "load_scan": "engine.io",
    "segment_volume": "engine.predict",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
