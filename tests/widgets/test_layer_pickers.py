"""The layer pickers that offer '(none)' (widgets/layers.LayerPicker): one way to offer it, and `changed` for it."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lgg_unet.widgets.layers import LayerPicker

from widget_helpers import dock

PICKERS = {
    "Segment: Ground truth": ("Segment tumour", lambda widget: widget.truth),
    "Segment: Pre-contrast": ("Segment tumour", lambda widget: widget.pre_contrast),
    "Segment: Post-contrast": ("Segment tumour", lambda widget: widget.post_contrast),
    "Train: Image or FLAIR": ("Train U-Net", lambda widget: widget.pairs[0].image_layer),
    "Train: Pre-contrast": ("Train U-Net", lambda widget: widget.pairs[0].pre_contrast),
    "Train: Post-contrast": ("Train U-Net", lambda widget: widget.pairs[0].post_contrast),
    "Train: Labels": ("Train U-Net", lambda widget: widget.pairs[0].labels_layer),
}


@pytest.mark.parametrize("name", PICKERS)
def test_picking_none_after_a_layer_says_so(viewer, name):
    """'(none)' picked in the box (its Qt entry, as a user picks it) after a layer fires `changed` with None, as
    LayerPicker promises for every real change: a sentinel choice ('(none)', None) in a box that is not nullable
    changed the value and told no listener (magicgui emits nothing for None there)."""
    viewer.add_image(np.zeros((2, 16, 16), np.float32), name="scan")
    viewer.add_labels(np.zeros((2, 16, 16), np.uint8), name="labels")
    widget_name, picker_of = PICKERS[name]
    picker = picker_of(dock(viewer, widget_name))
    picker.value = next(choice for choice in picker.choices if choice is not None)
    heard = []
    picker.changed.connect(heard.append)
    picker.native.setCurrentIndex(picker.native.findText(LayerPicker.null_string))
    assert picker.value is None and heard == [None]
