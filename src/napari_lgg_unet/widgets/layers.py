"""Which layers a widget may read, and the only layers it may write: the ones it created, marked in metadata.

A user's layer is never modified or removed, even when it has the name the plugin would use. A tumour layer of ours
that the user edited (painted on, or changed with clicks or the review list) is handed over to the user before a new
segmentation would replace it: what the user made is never lost.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import weakref
from pathlib import Path
from typing import Any, Callable

import napari
import numpy as np
from magicgui.widgets import ComboBox
from napari.layers import Image, Labels, Layer, Points
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

from ..engine import formats
from ..engine.errors import InputError, LggUnetError
from ..engine.scan_checks import refuse_negative_labels
from ..engine.units import mm_per_axis, voxel_volume as affine_voxel_volume
from ..engine.volumes import Geometry

# What our reader stores about a layer's scan: its geometry (the writer needs it to save a mask back onto the scan's
# grid) and its path (the writer never saves onto that scan's files). The layers made from a layer inherit both.
from ..reader import GEOMETRY_KEY, SOURCE_KEY

OWNER_KEY = "napari_lgg_unet"


def layers_of(viewer: napari.Viewer, kind: type[Layer]) -> list[tuple[str, Layer]]:
    """(name, layer) choices for a magicgui ComboBox."""
    return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, kind)]


class LayerPicker(ComboBox):
    """A ComboBox of layers (choices: (name, layer) pairs) that keeps the user's layer when it is renamed.

    napari resets a docked widget's choices on every rename, and magicgui matches choices by their text: the renamed
    layer's entry was dropped and the first layer picked in its place, without a word (Segment then ran on T2
    instead of the renamed FLAIR; a training pair trained on another layer). When the picked layer is deleted, a
    list that offers (none) shows it rather than the first layer (a training pair took another pair's scan and would
    have trained it on the deleted one's labels). `changed` fires only when the picked layer really changed.

    A picker that may be left empty is made `nullable`: it offers `null_string` first and reports picking it. It is
    the one way to offer no layer: magicgui says nothing of a pick of None in a box that is not nullable, so a
    ('(none)', None) choice of its own changed the value without a word (the Segment widget's readouts went on scoring
    against the ground truth picked before '(none)')."""

    null_string = "(none)"

    def reset_choices(self, *_: Any) -> None:
        current = self.value
        with self.changed.blocked():
            super().reset_choices()
            if current is not None and any(choice is current for choice in self.choices):
                self.value = current
            elif current is not None and any(choice is None for choice in self.choices):
                self.value = None
        if self.value is not current:
            self.changed.emit(self.value)


def image_choices(viewer: napari.Viewer) -> list[tuple[str, Layer]]:
    """Image layers to segment or train on: not the probability maps this plugin shows (deleting the segmented image
    made its probability map the picked image, and Segment then segmented a probability)."""
    return [(name, layer) for name, layer in layers_of(viewer, Image) if role_of(layer) != "probability"]


def labels_choices(viewer: napari.Viewer) -> list[tuple[str, Layer]]:
    return layers_of(viewer, Labels)


def check_one_scale(layer: Layer) -> None:
    """Refuse a multiscale layer (a pyramid of levels, as OME-Zarr readers open one): its data as an array is one
    level of it, the coarsest, so labels were refused for a shape they do not have (their full level's is the
    image's), or would have been read at another resolution than their image. The refusal names the full level's
    shape, the one the user knows: the Segment widget's ground truth was refused for its coarsest level's."""
    if layer.multiscale:
        kind = "labels layer" if isinstance(layer, Labels) else "image"
        full = " x ".join(str(int(size)) for size in layer.level_shapes[0])
        raise InputError(f"'{layer.name}' is a multiscale {kind} ({full} at full resolution), and multiscale layers "
                         "are refused, at any level: open its full-resolution level as one layer")


def tumour_mask(layer: Labels) -> np.ndarray:
    """The layer as a bool tumour mask (every value > 0), in its stored axis order."""
    return np.asarray(layer.data) > 0


def binary_mask(layer: Labels) -> tuple[np.ndarray, bool]:
    """`tumour_mask` of labels given as the tumour (training labels, a ground truth), and whether several label
    values were merged into it. Values below 0 are refused (InputError), as in a label file: they counted as no
    tumour, and labels painted with -1 trained or scored as empty. A multiscale layer is refused (`check_one_scale`)."""
    check_one_scale(layer)
    return labels_as_tumour(layer.name, np.asarray(layer.data))


def labels_as_tumour(name: str, data: np.ndarray) -> tuple[np.ndarray, bool]:
    """`binary_mask` of the labels layer named `name` from its data read already: in a worker, where a lazy layer's
    data is read (see `shown_later`) and the layer itself is not touched."""
    refuse_negative_labels(f"'{name}'", data, "paint those voxels with 0 or a label above 0, or pick other labels")
    mask = data > 0
    merged = bool(mask.any()) and np.unique(data[mask]).size > 1
    return mask, merged


def owned_layer(viewer: napari.Viewer, source: Layer, role: str) -> Layer | None:
    """The layer this plugin made for `source` in `role` ('tumour', 'probability'), if it still exists.

    The mark names the layer itself: napari's *Duplicate Layer* copies metadata, and the user's copy must not be
    taken for ours."""
    for layer in viewer.layers:
        if role_of(layer) == role and layer.metadata[OWNER_KEY].get("source") == str(source.unique_id):
            return layer
    return None


def segmentation_shown(viewer: napari.Viewer, source: Layer | None) -> bool:
    """Whether `source` and the tumour layer this plugin made for it are both in the viewer. Deleting either ends
    that segmentation: a click or a new clean-up still computed for it is dropped (it brought a deleted tumour layer
    back), and nothing more is shown for it until it is segmented again."""
    return source is not None and source in viewer.layers and owned_layer(viewer, source, "tumour") is not None


def role_of(layer: Layer) -> str | None:
    """The role of a layer this plugin made ('tumour', 'probability'); None for the user's layers, copies of ours
    made with *Duplicate Layer* included (the mark names the layer it was put on)."""
    mark = layer.metadata.get(OWNER_KEY)
    if isinstance(mark, dict) and mark.get("layer") == str(layer.unique_id):
        return mark.get("role")
    return None


def put_owned_layer(viewer: napari.Viewer, source: Layer, role: str, data: np.ndarray, **kwargs: Any) -> Layer:
    """Update this plugin's layer for (`source`, `role`) in place, or add it with `source`'s geometry and the scan it
    was read from."""
    layer = owned_layer(viewer, source, role)
    if layer is not None:
        set_owned_data(layer, data)
        return layer
    kind = {"tumour": Labels, "clicks": Points}.get(role, Image)
    metadata = {OWNER_KEY: {"role": role, "source": str(source.unique_id)}}
    metadata.update((key, source.metadata[key]) for key in (GEOMETRY_KEY, SOURCE_KEY) if key in source.metadata)
    layer = kind(data, name=f"{source.name} {role}", metadata=metadata, **spatial_geometry(source), **kwargs)
    layer.metadata[OWNER_KEY]["layer"] = str(layer.unique_id)
    _remember_data(layer)
    viewer.add_layer(layer)
    layer.metadata[OWNER_KEY]["name"] = layer.name  # as napari made it unique: a new name is the user's doing
    _follow_source_name(source, layer, role)
    return layer


def _follow_source_name(source: Layer, layer: Layer, role: str) -> None:
    """Rename `layer`, made for `source` in `role`, '<source> <role>' whenever `source` is renamed, while it is ours
    and has the name we gave it: it kept the image's old name, so after the user renamed a case's FLAIR its tumour
    layer was named after the old one. A layer the user renamed, or one handed over, is theirs and keeps its name.
    The layer is held weakly: the image may outlive it."""
    held = weakref.ref(layer)

    def follow(*_: object) -> None:
        owned = held()
        if owned is None or role_of(owned) != role or owned.name != owned.metadata[OWNER_KEY].get("name"):
            return
        owned.name = f"{source.name} {role}"
        owned.metadata[OWNER_KEY]["name"] = owned.name  # as the viewer made it unique (`put_owned_layer`)

    source.events.name.connect(follow)


def set_owned_data(layer: Layer, data: np.ndarray) -> None:
    """Set the data of a layer of ours, remembering (for a Labels layer) what it was set to, so that painting on it
    afterwards is seen by `edited`, and starting its napari undo history afresh (`_forget_strokes`)."""
    layer.data = data
    _forget_strokes(layer)
    _remember_data(layer)


def _forget_strokes(layer: Layer) -> None:
    """Empty napari's undo and redo history of a Labels layer whose data the plugin just set. napari keeps it when
    the data is replaced, and its strokes hold the voxels' values from before the stroke: Ctrl-Z after a click wrote
    them back into the click's mask (a hole of the old mask where the click had grown the tumour), and the widget,
    seeing voxels it had not set, kept them as the user's painting through every later click and threshold. Strokes
    made since the plugin's last change stay napari's to undo; earlier ones are part of the mask the user sees (the
    widget keeps them as painted) and are changed with the brush or eraser. `_reset_history` is napari's own (it
    empties the history when a layer stops being editable); a napari without it keeps its history as before."""
    reset = getattr(layer, "_reset_history", None) if isinstance(layer, Labels) else None
    if reset is not None:
        reset()


def _remember_data(layer: Layer) -> None:
    if isinstance(layer, Labels):  # the layers a user paints on; a fingerprint of the others would only cost time
        layer.metadata[OWNER_KEY]["fingerprint"] = _fingerprint(layer.data)


def _fingerprint(data: Any) -> str:
    """A digest of the voxels (a few ms for a 1 mm scan's mask), far cheaper to keep than a copy."""
    array = np.ascontiguousarray(data)
    digest = hashlib.blake2b(f"{array.dtype.str}{array.shape}".encode(), digest_size=16)
    digest.update(array.reshape(-1).view(np.uint8))
    return digest.hexdigest()


def mark_edited(layer: Layer, edited: bool) -> None:
    """Record whether this layer of ours holds the user's work done through the plugin (clicks, pieces removed in the
    review list) or painting the plugin has seen."""
    layer.metadata[OWNER_KEY]["edited"] = edited


def edited(layer: Layer) -> bool:
    """Whether the user changed or claimed this tumour layer of ours: through the plugin (`mark_edited`), by
    painting on it since the plugin last set it (napari's brush writes into the array without telling the plugin),
    or by renaming it."""
    mark = layer.metadata[OWNER_KEY]
    return (bool(mark.get("edited")) or layer.name != mark.get("name")
            or mark.get("fingerprint") != _fingerprint(layer.data))


def hand_over(layer: Layer, why: str = "edited") -> str:
    """Make a layer of ours the user's: no longer written by the plugin, and renamed '... (`why`)' unless the user
    already named it. Returns its name."""
    named_by_us = layer.name == layer.metadata[OWNER_KEY].get("name")
    layer.metadata = {key: value for key, value in layer.metadata.items() if key != OWNER_KEY}
    if named_by_us:
        layer.name = f"{layer.name} ({why})"
    return layer.name


def spatial_geometry(layer: Layer) -> dict[str, Any]:
    """Everything that places the layer in the world (scale, translate, rotate, shear, affine: readers use either),
    plus units and axis labels where this napari version has them."""
    geometry = {"scale": layer.scale, "translate": layer.translate, "rotate": layer.rotate, "shear": layer.shear,
                "affine": layer.affine}
    for name in ("units", "axis_labels"):
        if hasattr(layer, name):
            geometry[name] = getattr(layer, name)
    return geometry


def place_on(layer: Layer, source: Layer) -> None:
    """Give `layer`, which holds `source`'s voxels, `source`'s placement as it is now (`spatial_geometry`)."""
    for name, value in spatial_geometry(source).items():
        setattr(layer, name, value)


def view_orientation(layer: Layer) -> np.ndarray:
    """For each data axis of `layer`, the world axis napari shows it along and whether it runs backwards there
    (nibabel's orientation array, nearest axes for rotated layers).

    Readers of medical volumes (ours, napari-nifti, napari-itk-io, napari-nibabel's older releases) put the world
    axes in the order (inferior-superior, anterior-posterior, right-left), anterior at the top and the patient's right
    on the left, some by storing the voxels reversed with negative scales: the slices as shown are the model's input.
    Slices keep their stored order: the model reads them one at a time, and intensity percentiles sampled on every
    k-th slice would shift a little in reverse order (a reversed copy would no longer segment like the file).
    """
    orientation = io_orientation(_data_to_world(layer))
    if layer.ndim == 3:
        orientation[orientation[:, 0] == 0, 1] = 1
    return orientation


def _data_to_world(layer: Layer) -> np.ndarray:
    """The (ndim + 1)-square affine from the layer's data index to napari's world coordinates, whichever of scale,
    translate, rotate, shear or affine its reader set."""
    origin = np.asarray(layer.data_to_world(np.zeros(layer.ndim)), dtype=float)
    affine = np.eye(layer.ndim + 1)
    for axis in range(layer.ndim):
        affine[:-1, axis] = np.asarray(layer.data_to_world(np.eye(layer.ndim)[axis]), dtype=float) - origin
    affine[:-1, -1] = origin
    return affine


def voxel_volume(layer: Layer) -> tuple[float, str] | None:
    """The world volume of one of `layer`'s voxels in mm^n and that unit ('mm^3'; 'mm^2' for a 2D layer), or None
    when an axis has no known length unit (napari's default 'pixel'): the layer has no physical geometry, and sizes
    are given in voxels. Axes in nm, µm, cm or m (napari's `units`, pint units, set by a reader or a script) are
    converted to mm, each its own, so a layer in µm or with mixed units measures as the CLI's summary does. The volume
    is `units.voxel_volume` of the linear part of data -> world, whichever of scale or affine carries the voxel size (a
    reader or a script may put it in the affine, with scale 1: the size from the scale alone was that of a 1 mm voxel).

    A layer our reader placed (scale = the scan's voxel sizes, `GEOMETRY_KEY` in its metadata) measures by its scan's
    geometry instead: napari shows a sheared scan unsheared, on voxels as large as the product of their sizes, and
    the CLI measured the same file's tumour smaller. Placed otherwise since (a script's new scale), the layer's own
    placement is what the user asked for."""
    factors = mm_per_axis(getattr(layer, "units", ()))
    if factors is None or len(factors) != layer.ndim:
        return None
    linear, scan = _data_to_world(layer)[:-1, :-1], _scan_geometry(layer)
    if scan is not None and np.allclose(np.diag(factors) @ linear, np.diag(scan.spacing)):
        return scan.voxel_volume, "mm^3"
    return affine_voxel_volume(linear, factors), f"mm^{layer.ndim}"


def _scan_geometry(layer: Layer) -> Geometry | None:
    """The geometry of the scan a 3D `layer` was read from (its metadata, as the writer reads it), or None: none, or
    one the writer would refuse (sizes then come from the layer's own placement, and saving says what is wrong)."""
    stored = layer.metadata.get(GEOMETRY_KEY) if isinstance(layer.metadata, dict) else None
    if not stored or layer.ndim != 3:
        return None
    try:
        geometry = Geometry.from_dict(stored)
    except InputError:
        return None
    return geometry if geometry.engine_shape == tuple(layer.data.shape[:3]) else None


def shown_to_world(layer: Layer) -> np.ndarray:
    """The affine from an index of `as_shown(layer)` (the model's voxel order) to world coordinates: two layers whose
    shown voxels are to be stacked as one scan's channels must give the same one."""
    return _data_to_world(layer) @ inv_ornt_aff(view_orientation(layer), layer.data.shape[: layer.ndim])


def unplaced(layer: Layer) -> bool:
    """Whether napari places `layer` by its defaults alone (scale 1; no translate, rotate, shear or affine), as it
    places a layer read without geometry or added from an array."""
    return bool(np.allclose(_data_to_world(layer), np.eye(layer.ndim + 1)))


def shown_elsewhere(layer: Layer, reference: Layer) -> float | None:
    """How far (world units: mm for scans) napari shows `layer`'s voxels from `reference`'s of the same index in
    `as_shown` order, at most; None when every one is closer than half the reference's voxel size. Such voxels are
    each other's nearest neighbours, so pairing them voxel by voxel (stacking sequences, scoring or training on
    labels) is what resampling would give; farther apart (another origin, voxel size or orientation), the pairing
    would put one layer's anatomy beside the other's. Both layers must have the same shape as shown.

    An `unplaced` layer beside a reference shown in its stored order lies on the reference's voxels, index for index:
    it says nothing of its own about where it lies (a mask TIFF opened beside a NIfTI scan, an array added from the
    console), napari only draws it at scale 1 by default, and index for index is then also as shown. Beside a
    reference shown reversed, the index and the view disagree, and such a layer is measured as napari shows it."""
    stored_order = np.column_stack([np.arange(reference.ndim), np.ones(reference.ndim)])
    if unplaced(layer) and (view_orientation(reference) == stored_order).all():
        return None
    grid, theirs = shown_to_world(reference), shown_to_world(layer)
    shown_shape = [0] * reference.ndim
    for axis, (target, _) in enumerate(view_orientation(reference)):
        shown_shape[int(target)] = reference.data.shape[axis]
    corners = np.array(list(itertools.product(*[(0, n - 1) for n in shown_shape])), dtype=float)
    corners = np.column_stack([corners, np.ones(len(corners))]).T  # the largest distance is at a corner (affine maps)
    apart = float(np.linalg.norm((grid @ corners - theirs @ corners)[:-1], axis=0).max())
    voxel = float(np.sqrt((grid[:-1, :-1] ** 2).sum(axis=0)).min())
    return apart if apart > voxel / 2 else None


def placement_fix(labels: Layer, reference: Layer) -> str:
    """How to put `labels`, which `shown_elsewhere` found away from `reference`, where `reference` is, when they do
    belong together: the refusals tell to pick other labels, which is wrong advice for the right ones placed wrong
    (e.g. moved or given another scale by a script, or read by another plugin). napari's layer list menu copies one
    layer's scale and transforms onto another (the titles are napari's, tested against them). A mask volume named
    after its scan (`<scan>_mask`, `<scan>_seg`) is read onto the scan's grid when their folder is opened as a case
    (a TIFF mask beside a scan shown in its stored order needs none: without a placement of its own it lies on the
    scan's voxels, see `shown_elsewhere`)."""
    return (f"if it belongs to this image voxel for voxel, give it the image's placement: right-click "
            f"'{reference.name}' in the layer list > Copy scale and transforms > Copy all to clipboard, then "
            f"right-click '{labels.name}' > Apply scale/transforms from Clipboard (a NIfTI, NRRD or MHA mask named "
            "<scan>_mask or <scan>_seg beside its scan opens on the scan's grid when their folder is opened with "
            "File > Open Folder)")


def as_shown(layer: Layer, data: np.ndarray | None = None) -> np.ndarray:
    """The layer's data (or `data` on its grid, channels last allowed) with its axes as napari shows them."""
    return apply_orientation(np.asarray(layer.data if data is None else data), view_orientation(layer))


def shown_later(layer: Layer) -> Callable[[], np.ndarray]:
    """`as_shown(layer)` as it is now, read when the function returned is called: in a worker, for a layer whose data
    is read only when asked (a dask or zarr array), without reading the layer there (its data and orientation are
    taken now). Data in memory is copied now: read in the worker, a script changing it in place during the run
    (`layer.data[...] = ...`) sent the network a scan half old, half new, and the mask shown was of neither. For a
    BraTS case's FLAIR, T1 and T1c (3 x 155 x 240 x 240 int16, 54 MB) the Segment click takes 35-50 ms with the
    copies and 2-6 ms without (2 EPYC cores shared with other work), against 13-17 s of network for such a scan
    (docs/benchmarks.md). A lazy array stays lazy, as does a memory-mapped file (copying it reads the file)."""
    data, orientation = layer.data, view_orientation(layer)
    if in_memory(layer):
        data = data.copy()
    return lambda: apply_orientation(np.asarray(data), orientation)


def in_memory(layer: Layer) -> bool:
    """Whether the layer's data is a plain array in memory, quick to copy or read on the viewer's thread. A dask or
    zarr array is read only when asked (seconds or minutes for a large or remote scan), and a memory-mapped file is
    read from disk as it is copied."""
    return type(layer.data) is np.ndarray


def scan_name(layer: Layer) -> str | None:
    """The name of the file or folder the layer's scan was opened from (napari's `source.path`, else the path our
    reader stored, `SOURCE_KEY`, which napari's Duplicate Layer keeps); None for a layer made in the session. The
    name, not the path: it is what the CLI records of a patient's folder (so `evaluate --split` finds the patient
    again), and a model's config shared with colleagues then holds no user's folders. A file is named as the engine
    names its scan (`ScanFormat.scan_name`): `P1` for `P1/P1_flair.nii.gz`, as the CLI and a folder's listing name
    it; the file's own name was no patient's, and the same case in a Kaggle-style folder was not known as one. A
    folder's scan has the folder's name in every format, so no folder is read here (a DICOM folder's every header
    would be, on the viewer's thread)."""
    path = layer.source.path or layer.metadata.get(SOURCE_KEY)
    if not path:
        return None
    path = Path(path)
    found = None if path.is_dir() else formats.file_format(path)
    with contextlib.suppress(LggUnetError, OSError):  # moved or unreadable since it was opened: its own name
        return (found.scan_name(path) if found is not None else path.name) or None
    return path.name or None


def stand_in(layer: Layer) -> np.ndarray:
    """An array of the layer's shape and type that holds one value (broadcast, no memory), for the checks that need
    nothing else: they read no voxel of a lazy layer."""
    return np.broadcast_to(np.zeros((), dtype=np.dtype(layer.data.dtype)), layer.data.shape)


def to_layer_order(layer: Layer, orientation: np.ndarray | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """The inverse of `as_shown` for `layer` as its orientation is now (or as `orientation`, its `view_orientation`
    kept from earlier): the function it returns puts an array in shown order back on the layer's data grid, and a
    worker thread can call it without reading the layer."""
    orientation = view_orientation(layer) if orientation is None else orientation
    identity = np.column_stack([np.arange(len(orientation)), np.ones(len(orientation))])
    transform = ornt_transform(identity, orientation)
    return lambda shown: np.ascontiguousarray(apply_orientation(shown, transform))


def shown_index(layer: Layer, point: np.ndarray, orientation: np.ndarray | None = None) -> tuple[float, ...]:
    """`point` in `layer`'s data coordinates as an index into `as_shown(layer)`, the order the model reads (or the
    order of an earlier `orientation`, see `to_layer_order`)."""
    orientation = view_orientation(layer) if orientation is None else orientation
    shown = [0.0] * len(orientation)
    for axis, (target, flip) in enumerate(orientation):
        value = float(point[axis])
        shown[int(target)] = value if flip > 0 else layer.data.shape[axis] - 1 - value
    return tuple(shown)


def data_index(layer: Layer, shown: np.ndarray, orientation: np.ndarray | None = None) -> np.ndarray:
    """The inverse of `shown_index` for points (n, layer.ndim): indices into `as_shown(layer)` (or into the order of
    an earlier `orientation`) as `layer`'s data coordinates."""
    orientation = view_orientation(layer) if orientation is None else orientation
    shown = np.asarray(shown, dtype=float).reshape(-1, len(orientation))
    point = np.empty_like(shown)
    for axis, (target, flip) in enumerate(orientation):
        value = shown[:, int(target)]
        point[:, axis] = value if flip > 0 else layer.data.shape[axis] - 1 - value
    return point


def current_slice(viewer: napari.Viewer, layer: Layer) -> tuple[int, int] | None:
    """(data axis, index) of the slice of a 3D layer on screen: the plane across the slider's axis in the 2D view,
    whichever axis the user rolled or transposed onto the slider (it was always the index along the first axis, a
    slice that was not on screen). None for a 2D layer or in the 3D view, which shows no slice."""
    if layer.ndim != 3 or viewer.dims.ndisplay != 2:
        return None
    offset = viewer.dims.ndim - layer.ndim
    sliders = [axis - offset for axis in viewer.dims.not_displayed if axis >= offset]
    if len(sliders) != 1:  # an axis of more dimensions than the layer's is on screen: the layer shows no plane
        return None
    axis = int(np.flatnonzero(view_orientation(layer)[:, 0] == sliders[0])[0])  # the data axis napari shows along it
    index = int(np.round(layer.world_to_data(viewer.dims.point[-layer.ndim :])[axis]))
    return axis, int(np.clip(index, 0, layer.data.shape[axis] - 1))
