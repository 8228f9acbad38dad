import warnings

import numpy as np
import pytest
import torch

from napari_lgg_unet.engine.errors import InputError
from napari_lgg_unet.engine.preprocess import (
    PreprocessConfig,
    channel_view,
    intensity_ranges,
    prepare_volume,
    restore_size,
    spatial_shape,
    to_model_size,
)


def _smooth(shape):
    z, y, x = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    return (np.sin(3 * y) * np.cos(2 * x) + z).astype(np.float32)


@pytest.mark.parametrize("shape", [(3, 250, 301), (2, 301, 250), (1, 256, 256), (2, 97, 33)])
def test_resize_round_trip_keeps_shape_and_lines_up(shape):
    volume = torch.from_numpy(_smooth(shape))[:, None]
    back = restore_size(to_model_size(volume, 128), *shape[1:])
    assert tuple(back.shape) == (shape[0], 1, *shape[1:])
    # Smooth images survive down- and up-sampling closely only if the geometry lines up pixel for pixel.
    inner = (slice(None), 0, slice(8, -8), slice(8, -8))
    assert float((back[inner] - volume[inner]).abs().mean()) < 0.02


def test_normalisation_is_the_same_for_uint8_uint16_int16_and_float_copies():
    base = (np.random.default_rng(1).random((4, 32, 32, 3)) * 255).astype(np.uint8)
    reference = prepare_volume(base)
    for copy in (base.astype(np.uint16) * 257, base.astype(np.int16) * 100, base.astype(np.float32) / 255.0):
        np.testing.assert_allclose(prepare_volume(copy), reference, atol=1e-5)
    assert reference.min() == 0.0 and reference.max() == 1.0


def test_single_channel_is_repeated_as_flair_into_three_channels():
    gray = np.random.default_rng(2).random((2, 16, 16)).astype(np.float32)
    out = prepare_volume(gray, rgb=False)
    assert out.shape == (2, 16, 16, 3)
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_spatial_shape_follows_the_layout():
    assert spatial_shape(np.zeros((5, 6))) == (5, 6)
    assert spatial_shape(np.zeros((5, 6, 3))) == (5, 6)
    assert spatial_shape(np.zeros((4, 5, 6))) == (4, 5, 6)
    assert spatial_shape(np.zeros((4, 5, 6, 3))) == (4, 5, 6)


@pytest.mark.parametrize(
    "image, rgb, message",
    [
        (np.zeros((2, 3, 16, 16, 3)), True, "2D or 3D"),
        (np.zeros((2, 16, 16, 4)), True, "3 channels"),
        (np.zeros((16,)), False, "2D or 3D"),
        (np.array([["a"]]), False, "numbers"),
    ],
)
def test_unusable_scans_get_a_clear_error(image, rgb, message):
    with pytest.raises(InputError, match=message):
        channel_view(image, rgb)


def test_a_skull_stripped_scan_with_a_nan_background_is_told_what_to_do_about_it():
    """Caught where its percentiles are taken (before any batch), the message lacked the advice it has for a NaN
    found in a batch."""
    scan = np.full((4, 32, 32), np.nan, dtype=np.float32)
    scan[:, 8:24, 8:24] = 100.0
    with pytest.raises(InputError, match=r"NaN or infinite values; replace them \(e.g. with 0\) before segmenting"):
        intensity_ranges(channel_view(scan, False))


def test_image_size_must_be_a_multiple_of_32():
    with pytest.raises(InputError, match="multiple of 32"):
        PreprocessConfig(image_size=100)


@pytest.mark.parametrize("scale", [1e305, -1e305, 1e306])
def test_a_float64_scan_beyond_float32s_range_is_refused_not_turned_into_nan(scale):
    """Cast to the network's float32 such a scan became infinity: one of 1e305 came out blank, one spanning -1e308 to
    1e308 gave NaN probabilities, both without a word."""
    scan = np.random.default_rng(3).random((2, 32, 32)) * 255 - (127 if scale == 1e306 else 0)
    with pytest.raises(InputError, match="beyond the float32 range"):
        prepare_volume(scan * scale, rgb=False)


def test_a_hot_pixel_beyond_float32s_range_is_clipped_like_any_other():
    """Only the percentiles decide: a lone pixel of 1e300 lies above the high one and is scaled to 1, not refused, and
    numpy's overflow warning for its cast, which is expected, is not passed on."""
    scan = np.random.default_rng(4).random((2, 32, 32))
    scan[0, 0, 0] = 1e300
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = prepare_volume(scan, rgb=False)
    assert np.isfinite(out).all() and out[0, 0, 0, 0] == 1.0
