"""Which layers a widget may read, and the only layers it may write: the ones it created, marked in metadata.

A user's layer is never modified or removed, even when it has the name the plugin would use.
"""

from __future__ import annotations

from typing import Any

import napari
import numpy as np
from napari.layers import Image, Labels, Layer

from ..reader import GEOMETRY_KEY  # the scan geometry our reader stores and the writer needs to save a mask back

OWNER_KEY = "napari_lgg_unet"


def layers_of(viewer: napari.Viewer, kind: type[Layer]) -> list[tuple[str, Layer]]:
    """(name, layer) choices for a magicgui ComboBox."""
    return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, kind)]


def image_choices(viewer: napari.Viewer) -> list[tuple[str, Layer]]:
    return layers_of(viewer, Image)


def labels_choices(viewer: napari.Viewer) -> list[tuple[str, Layer]]:
    return layers_of(viewer, Labels)


def binary_mask(layer: Labels) -> tuple[np.ndarray, bool]:
    """The layer as a bool tumour mask (every value > 0) and whether several label values were merged."""
    data = np.asarray(layer.data)
    mask = data > 0
    merged = bool(mask.any()) and np.unique(data[mask]).size > 1
    return mask, merged


def owned_layer(viewer: napari.Viewer, source: Layer, role: str) -> Layer | None:
    """The layer this plugin made for `source` in `role` ('tumour', 'probability'), if it still exists."""
    tag = {"role": role, "source": str(source.unique_id)}
    for layer in viewer.layers:
        if layer.metadata.get(OWNER_KEY) == tag:
            return layer
    return None


def put_owned_layer(viewer: napari.Viewer, source: Layer, role: str, data: np.ndarray, **kwargs: Any) -> Layer:
    """Update this plugin's layer for (`source`, `role`) in place, or add it with `source`'s geometry."""
    layer = owned_layer(viewer, source, role)
    if layer is not None:
        layer.data = data
        return layer
    kind = Labels if role == "tumour" else Image
    metadata = {OWNER_KEY: {"role": role, "source": str(source.unique_id)}}
    if GEOMETRY_KEY in source.metadata:
        metadata[GEOMETRY_KEY] = source.metadata[GEOMETRY_KEY]
    layer = kind(data, name=f"{source.name} {role}", metadata=metadata, **spatial_geometry(source), **kwargs)
    return viewer.add_layer(layer)


def spatial_geometry(layer: Layer) -> dict[str, Any]:
    """scale and translate, plus units and axis labels where this napari version has them."""
    geometry = {"scale": layer.scale, "translate": layer.translate}
    for name in ("units", "axis_labels"):
        if hasattr(layer, name):
            geometry[name] = getattr(layer, name)
    return geometry


def current_slice(viewer: napari.Viewer, layer: Layer) -> int | None:
    """Index along the first axis of a 3D layer shown at the viewer's current position (None for 2D)."""
    if layer.ndim != 3:
        return None
    index = int(np.round(layer.world_to_data(viewer.dims.point[-layer.ndim :])[0]))
    return int(np.clip(index, 0, layer.data.shape[0] - 1))
