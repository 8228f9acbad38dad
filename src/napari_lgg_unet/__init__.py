"""napari-lgg-unet: brain tumour segmentation in napari, and the same engine as a Python API.

    from napari_lgg_unet import load_model, segment_volume
    model = load_model("default")
    result = segment_volume(model, image)   # result.mask, result.probability

Names are imported on first use, so napari can read the plugin manifest without loading torch.
"""

import sys
from importlib import import_module

__version__ = "0.1.0"


def _keep_triton_out_of_qt_processes() -> None:
    """Make `import triton` fail when Qt is already loaded (napari), so torch treats triton as absent.

    triton (torch's optional GPU compiler, which we never use) bundles LLVM; loading it after napari has opened an
    OpenGL context backed by Mesa, which loads its own LLVM, crashes the whole viewer (seen under xvfb).
    """
    if "triton" not in sys.modules and any(name.startswith(("PyQt", "PySide")) for name in list(sys.modules)):
        sys.modules["triton"] = None


_keep_triton_out_of_qt_processes()

_API = {
    "LggUnetError": "engine.errors",
    "TrainConfig": "engine.settings",
    "train_model": "engine.train",
    "load_model": "engine.model",
    "save_model": "engine.model",
    "load_patient": "engine.io",
    "load_patients": "engine.io",
    "load_scan": "engine.io",
    "segment_volume": "engine.predict",
    "SegmentOptions": "engine.predict",
    "CorrectionSession": "engine.corrections",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
