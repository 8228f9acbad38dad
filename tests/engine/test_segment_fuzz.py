"""Property: whatever array `segment_volume` gets, it returns a 0/1 mask of the scan's spatial shape or raises our
own error; never another exception, and never a mask for a scan holding NaN or infinity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from napari_lgg_unet.engine.errors import InputError, LggUnetError
from napari_lgg_unet.engine.model import load_model
from napari_lgg_unet.engine.predict import SegmentOptions, segment_volume

DTYPES = [np.uint8, np.int16, np.uint16, np.float32, np.float64, np.bool_]
OPTIONS = SegmentOptions(batch_size=2, precision="fp32", backend="torch")  # no speed measurement per example


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir)


@st.composite
def scans(draw) -> tuple[np.ndarray, bool]:
    """(image, rgb): mostly a usable 2D or 3D scan, now and then 4D, with a side of 0 or 1, or 4 channels; any listed
    dtype; half of the float scans may hold NaN and infinity."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    ndim = draw(st.sampled_from([2, 3, 3, 3, 4]))
    spatial = draw(st.lists(st.sampled_from([0, 1] + list(range(2, 13)) * 3), min_size=ndim, max_size=ndim))
    rgb = draw(st.booleans())
    shape = tuple(spatial) + ((draw(st.sampled_from([1, 3, 3, 4])),) if rgb else ())
    elements = None
    if dtype.kind == "f":
        width = 32 if dtype == np.float32 else 64
        finite = draw(st.booleans())
        elements = st.floats(-1e6, 1e6, width=width) if finite else st.floats(width=width)
    image = draw(hnp.arrays(dtype, shape, elements=elements))
    return image, rgb


@settings(max_examples=40, deadline=None)
@given(scan=scans())
def test_segment_volume_returns_a_mask_of_the_scan_shape_or_raises_our_error(model, scan):
    image, rgb = scan
    try:
        result = segment_volume(model, image, OPTIONS, rgb=rgb)
    except LggUnetError as error:
        assert isinstance(error, InputError) and "\n" not in str(error)
        event("refused")
        return
    event("segmented")
    spatial = image.shape[:-1] if rgb else image.shape
    assert result.mask.shape == spatial and result.probability.shape == spatial
    assert result.mask.dtype == np.uint8 and set(np.unique(result.mask)) <= {0, 1}
    assert np.isfinite(result.probability).all()
    assert image.dtype.kind != "f" or np.isfinite(image).all(), "a scan with NaN or infinity got a mask"
