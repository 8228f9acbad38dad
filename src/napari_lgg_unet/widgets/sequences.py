"""The model's input from the layers a user picked: one image (grey FLAIR or multi-channel), or one grey layer per MRI
sequence (FLAIR plus optional pre- and post-contrast T1), as another reader (napari-nifti, napari-itk-io...) opens
them.

The model's channels are (pre-contrast T1, FLAIR, post-contrast T1); a missing sequence is filled with FLAIR, as the
LGG dataset itself did.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import napari
import numpy as np
from napari.layers import Image, Labels, Layer

from ..engine.errors import InputError
from ..engine.preprocess import channel_view, spatial_shape
from ..engine.sequences import FLAIR, POST, PRE, sequence_of
from . import notify
from .layers import (
    GEOMETRY_KEY, OWNER_KEY, SOURCE_KEY, LayerPicker, as_shown, check_one_scale, image_choices, shown_elsewhere,
    shown_later, stand_in,
)


def sequence_pickers(viewer: napari.Viewer) -> tuple[LayerPicker, LayerPicker]:
    """Optional pre-contrast (T1) and post-contrast (T1c) pickers, '(none)' by default."""
    return tuple(
        LayerPicker(name=name, label=label, nullable=True, choices=lambda _: image_choices(viewer), value=None)
        for name, label in (("pre_contrast", "Pre-contrast (T1)"), ("post_contrast", "Post-contrast (T1c)"))
    )


def says_sequence(layer: object, sequence: str) -> bool:
    """Whether `layer` is a user's grey image whose name says `sequence` ("FLAIR", "T1c [1]", "AX T2 FLAIR")."""
    return (isinstance(layer, Image) and not layer.rgb and OWNER_KEY not in layer.metadata
            and sequence_of(layer.name) == sequence)


def named_sequences(viewer: napari.Viewer, flair: Image | None) -> tuple[Image | None, Image | None] | None:
    """The (pre-contrast, post-contrast) layers that go with a layer named FLAIR: those named T1 and T1c (or any
    name sequences.py knows) on its grid, the ones our reader opened from the same case first, the topmost
    otherwise. None when `flair` is not named as FLAIR, so a user's own choice is left alone."""
    if not says_sequence(flair, FLAIR):
        return None

    def partner(sequence: str) -> Image | None:
        found = [layer for layer in viewer.layers if says_sequence(layer, sequence)
                 and layer.data.shape == flair.data.shape]
        same_case = [layer for layer in found if GEOMETRY_KEY in flair.metadata
                     and layer.metadata.get(GEOMETRY_KEY) == flair.metadata[GEOMETRY_KEY]]
        return (same_case or found or [None])[-1]

    return partner(PRE), partner(POST)


def flair_layer(viewer: napari.Viewer, case_of: Layer | None = None) -> Image | None:
    """The topmost layer named FLAIR; with `case_of`, the one opened with that layer as one case (our reader marks
    each layer of a case with the path it opened, `SOURCE_KEY`): None when there is none."""
    source = None if case_of is None else case_of.metadata.get(SOURCE_KEY)
    if case_of is not None and source is None:
        return None
    return next((layer for layer in reversed(viewer.layers) if says_sequence(layer, FLAIR)
                 and (source is None or layer.metadata.get(SOURCE_KEY) == source)), None)


def pick_named_sequences(viewer: napari.Viewer, flair: LayerPicker, pre: LayerPicker, post: LayerPicker) -> None:
    """With a FLAIR-named image picked in `flair`, pick its T1 and T1c layers in `pre` and `post` (see
    `named_sequences`); other images leave them as they are."""
    found = named_sequences(viewer, flair.value)
    if found is not None:
        pre.value, post.value = found


def case_of(layer: object) -> str | None:
    """The case folder or file our reader opened `layer` from (`SOURCE_KEY`, which the layers made for it copy);
    None for a layer of another reader or made in the session."""
    metadata = getattr(layer, "metadata", None)
    return metadata.get(SOURCE_KEY) if isinstance(metadata, dict) else None


class TruthFollowsCase:
    """The ground truth picked follows the image picked from one case to another: when the image becomes one of
    another case (a second case opened, whose FLAIR the widget takes, or one picked by hand) and the ground truth is
    the manual mask opened with the case before, it gives way to the new case's own mask, picked as soon as our reader
    adds it (after the case's FLAIR), or to no ground truth. BraTS cases share one grid, so the first case's mask
    stayed picked and scored the second case's tumour without a word. A ground truth from anywhere else (a file opened
    by itself, a layer painted in the session) is the user's choice and stays."""

    def __init__(self, viewer: napari.Viewer, image: LayerPicker, truth: LayerPicker) -> None:
        self._viewer, self._image, self._truth = viewer, image, truth
        self._case = case_of(image.value)
        self._waiting = False  # a mask of the previous case gave way: the new case's is picked when it comes

    def image_changed(self) -> None:
        """The image picked changed: see the class. An image of no case (made in the session, or another reader's)
        leaves the case as it was, so picking case 1's FLAIR, such an image, then case 2's FLAIR still follows."""
        before, case, self._waiting = self._case, case_of(self._image.value), False
        if case is None:
            return
        self._case, truth = case, self._truth.value
        if truth is None or before in (None, case) or case_of(truth) != before:
            return
        mask = next((layer for layer in reversed(self._viewer.layers) if self._case_mask(layer)), None)
        self._truth.value, self._waiting = mask, mask is None
        shown = "none until a mask of its own opens" if mask is None else f"'{mask.name}', its own"
        notify.show_info(f"'{truth.name}' is the manual mask of {Path(before).name}, not of "
                         f"{Path(self._case).name} ('{self._image.value.name}'): the ground truth is {shown}")

    def inserted(self, layer: object) -> None:
        """A layer was added: the new case's mask, when its case's image took the place of the one before."""
        if self._waiting and self._truth.value is None and self._case_mask(layer):
            self._truth.value, self._waiting = layer, False

    def _case_mask(self, layer: object) -> bool:
        """Whether `layer` is a labels layer our reader opened with the image's case (not one this plugin made)."""
        return isinstance(layer, Labels) and OWNER_KEY not in layer.metadata and case_of(layer) == self._case


class LayerInput:
    """The model's input from the layers picked, read once, when first called (`deferred_input`), then kept: the
    worker reads it, and the correction session built after the segmentation takes the same array."""

    def __init__(self, read: Callable[[], np.ndarray]) -> None:
        self._read: Callable[[], np.ndarray] | None = read
        self._array: np.ndarray | None = None
        self._lock = threading.Lock()

    def __call__(self) -> np.ndarray:
        with self._lock:
            if self._read is not None:
                self._array, self._read = self._read(), None
            return self._array


def deferred_input(image: Image | None, pre: Image | None = None,
                   post: Image | None = None) -> tuple[LayerInput, bool]:
    """(data, rgb) for the engine, checked from the layers' shapes and types alone, the data to be read by calling it
    (in a worker): the image's own data when no sequence is added, else the (..., 3) stack (pre, FLAIR, post) of
    one-channel layers of one shape; each layer's axes as napari shows them (`layers.as_shown`, mapped back with
    `layers.to_layer_order` of the FLAIR layer), as they are now (`layers.shown_later` copies data in memory). Raises
    InputError a user can act on.

    Checked and read here, a lazy layer (a dask or zarr array) was read whole on the viewer's thread, twice, and held
    the viewer for as long as a large or remote scan takes to load. Values (NaN, infinity) are checked by the engine
    as it reads them.
    """
    if image is None:
        raise InputError("no image layer: open a scan (File > Open, or File > Open Sample > LGG U-Net) first")
    for layer in (image, pre, post):
        if layer is not None:
            check_one_scale(layer)
    if pre is None and post is None:
        channel_view(stand_in(image), image.rgb)
        return LayerInput(shown_later(image)), image.rgb
    return _stacked_input(image, pre, post), True


def input_shape(image: Image) -> tuple[int, ...]:
    """The spatial shape, as napari shows it, of the model's input from `image` (alone, or as the FLAIR of sequences
    on its grid): the shape of a mask of that input. Read from the layer's shape and type alone, as `deferred_input`
    checks them."""
    return spatial_shape(as_shown(image, stand_in(image)), image.rgb)


def _stacked_input(image: Image, pre: Image | None, post: Image | None) -> LayerInput:
    """`deferred_input` of a FLAIR with a pre- or post-contrast layer, or both: the (..., 3) stack, checked first."""
    for layer in (image, pre, post):
        if layer is not None and layer.rgb:
            raise InputError(
                f"'{layer.name}' has colour channels: with separate sequences, pick one grey layer per sequence "
                "(or pick this image alone, without pre- or post-contrast)"
            )
    flair_shape = as_shown(image, stand_in(image)).shape
    channel_view(stand_in(image), False)
    for layer in (pre, post):
        shape = None if layer is None else as_shown(layer, stand_in(layer)).shape
        if layer is not None and shape != flair_shape:
            raise InputError(
                f"'{layer.name}' has shape {shape} but the FLAIR '{image.name}' has {flair_shape}: "
                "the sequences of one scan must share one grid (resample them onto the FLAIR first)"
            )
        if layer is not None:
            _check_same_place(layer, image)
    read_pre, read_flair, read_post = (None if layer is None else shown_later(layer) for layer in (pre, image, post))

    def stacked() -> np.ndarray:
        flair = read_flair()
        return np.stack([flair if read is None else read() for read in (read_pre, None, read_post)], axis=-1)

    return LayerInput(stacked)


def _check_same_place(layer: Image, flair: Image) -> None:
    """Refuse a sequence layer of the FLAIR's shape whose voxels napari shows elsewhere (e.g. a T1 file of another
    field of view opened beside the FLAIR file): stacked voxel by voxel, its anatomy would lie beside the FLAIR's in
    the model's input."""
    apart = shown_elsewhere(layer, flair)
    if apart is not None:
        raise InputError(
            f"'{layer.name}' has the shape of the FLAIR '{flair.name}' but lies elsewhere in the viewer (its voxels up "
            f"to {apart:.3g} world units, mm for scans, from the FLAIR's): the sequences of one scan must share one "
            "grid; open the case folder (File > Open), which resamples its sequences onto the FLAIR's grid, or "
            "resample them onto the FLAIR first"
        )
