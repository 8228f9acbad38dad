"""napari reader: Kaggle LGG patient folders, TIFF stacks, NIfTI / NRRD / MHA volumes, case folders and DICOM series.

A TIFF or volume whose name ends in a labels word (`_mask`, `_seg`, `_label`, ...: engine/sequences.py, the words that
make a file a case's labels) opens as a Labels layer, so saving and reopening a mask gives back a mask, not a grey
image. Medical volumes open as axial slices in the LGG training orientation (anterior at the top, patient's right on the
left) with their voxel size as `scale` and position as `translate` in mm; a multi-sequence case opens as one grey layer
per sequence (see `case_layers`). Volume layers carry `metadata["lgg_unet_geometry"]`: what the writer needs to save a
mask onto the source grid. Every layer carries `metadata["lgg_unet_source"]`: the path it was read from, so the writer
never saves a mask onto that scan's files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from .engine.cases import Case
    from .engine.volumes import Geometry

LayerData = tuple  # (data, metadata, layer_type), napari's LayerDataTuple
GEOMETRY_KEY = "lgg_unet_geometry"
SOURCE_KEY = "lgg_unet_source"


def get_reader(path: str | list[str]) -> Callable[[str], list[LayerData]] | None:
    """The reader for `path` (whatever format engine/formats.py says it is), its layers marked with the path (see
    `with_source`), or None so napari tries other readers (any other file type, a list of paths)."""
    if not isinstance(path, (str, Path)):
        return None
    from .engine.formats import TIFF, format_of

    found = format_of(Path(path))
    if found is None:
        return None
    read = read_tiff_layer if found is TIFF else read_volume_layers if found.is_volume else read_scan
    return lambda opened: with_source(read(opened), opened)


def with_source(layers: list[LayerData], path: str | Path) -> list[LayerData]:
    """`layers` with the scan they were read from (`path`, made absolute) in their metadata: napari hands the writer
    only a layer's data and state, and the writer refuses to save onto that scan's files (see writer.py)."""
    source = str(Path(path).absolute())
    return [(data, {**meta, "metadata": {**meta.get("metadata", {}), SOURCE_KEY: source}}, kind)
            for data, meta, kind in layers]


def _geometry_meta(geometry: Geometry | None) -> dict:
    """scale, units, axis labels and the geometry the writer needs; {} for arrays without geometry."""
    if geometry is None:
        return {}
    from .engine.volumes import AXIS_LABELS

    return {"scale": geometry.spacing, "translate": geometry.origin, "units": ("mm",) * 3, "axis_labels": AXIS_LABELS,
            "metadata": {GEOMETRY_KEY: geometry.to_dict()}}


def scan_layers(name: str, image: np.ndarray, rgb: bool, mask: np.ndarray | None,
                geometry: Geometry | None = None) -> list[LayerData]:
    """Layer data for a scan and, when known, its mask as integer labels 0/1 named `<name> mask`."""
    spatial = _geometry_meta(geometry)
    return [(image, {"name": name, "rgb": rgb, **spatial}, "image"), *_mask_layer(name, mask, spatial)]


def _mask_layer(name: str, mask: np.ndarray | None, spatial: dict) -> list[LayerData]:
    return [] if mask is None else [((np.asarray(mask) > 0).astype(np.uint8), {"name": f"{name} mask", **spatial},
                                     "labels")]


def read_scan(path: str) -> list[LayerData]:
    """A patient, case or DICOM folder: a case opens as a radiologist reads it (see `case_layers`), a Kaggle patient
    as its image and labels."""
    from .engine.formats import format_of
    from .engine.io import load_scan

    found = format_of(Path(path))
    case = found.case(Path(path)) if found is not None else None
    if case is not None:
        return case_layers(case)
    scan = load_scan(path)
    return scan_layers(scan.name, scan.image, scan.rgb, scan.mask, scan.geometry)


def case_layers(case: Case) -> list[LayerData]:
    """A case as a radiologist reads it: one grey layer per sequence, named FLAIR, T1, T1c, T2, aligned on FLAIR's
    grid, FLAIR visible and on top (the others hidden below it), then its labels. The Segment widget picks the
    sequences up by these names. A case of FLAIR alone opens as one layer named after the case."""
    from .engine.cases import load_sequences
    from .engine.sequences import FLAIR, LAYER_NAMES

    loaded = load_sequences(case)
    spatial = _geometry_meta(loaded.geometry)
    if list(loaded.images) == [FLAIR]:
        return scan_layers(case.name, loaded.images[FLAIR], False, loaded.mask, loaded.geometry)
    sequences = [(data, {"name": LAYER_NAMES[sequence], "rgb": False, "colormap": "gray",
                         "visible": sequence == FLAIR, **spatial}, "image")
                 for sequence, data in reversed(loaded.images.items())]  # napari stacks the last layer on top
    return [*sequences, *_mask_layer(case.name, loaded.mask, spatial)]


def read_volume_layers(path: str) -> list[LayerData]:
    """One volume file on its own, so separate sequences open as separate layers; a file of an nnU-Net / Decathlon
    images folder opens as its whole case (its channels are named only by dataset.json)."""
    from .engine.cases import Case, Source, case_of_file, load_case, load_labels, nnunet_cases
    from .engine.formats import strip_volume_suffix
    from .engine.sequences import FLAIR

    stem = strip_volume_suffix(Path(path).name)
    if _named_as_labels(stem):
        mask, geometry = load_labels(Source(Path(path)))
        return [(mask.astype(np.uint8), {"name": stem, **_geometry_meta(geometry)}, "labels")]
    if nnunet_cases(Path(path).parent) is not None:
        return case_layers(case_of_file(Path(path)))
    loaded = load_case(Case(stem, ((FLAIR, Source(Path(path))),)))
    return scan_layers(stem, loaded.image, loaded.rgb, None, loaded.geometry)


def _named_as_labels(stem: str) -> bool:
    from .engine.sequences import LABELS, split_file_name

    return split_file_name(stem)[1] == LABELS


def read_tiff_layer(path: str) -> list[LayerData]:
    """A TIFF as an image, or, named as labels (`*_mask`, `*_seg`, ...), as the labels it holds, checked as every mask
    the engine reads is (an image saved as a mask is refused, not shown as all tumour and picked as the ground
    truth)."""
    from .engine.io import read_tiff
    from .engine.preprocess import resolve_rgb
    from .engine.scan_checks import tumour_of_labels

    data, stem = read_tiff(path), Path(path).stem
    if _named_as_labels(stem):
        return [(tumour_of_labels(path, data).astype(np.uint8), {"name": stem}, "labels")]
    return [(data, {"name": stem, "rgb": resolve_rgb(data, None)}, "image")]
