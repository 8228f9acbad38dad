"""variants: a scan as a FLAIR-only or skull-stripped user would give it, both as read and as normalised for
training."""

import numpy as np
import pytest
import tifffile

from napari_lgg_unet.engine.errors import InputError
from napari_lgg_unet.engine.model import load_model
from napari_lgg_unet.engine.predict import segment_volume
from napari_lgg_unet.engine.sequences import FLAIR_CHANNEL
from napari_lgg_unet.engine.variants import input_variant, normalised_variant
from napari_lgg_unet.sample_data import SAMPLE_PATIENT, sample_folder


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray]:
    folder = sample_folder()
    return (tifffile.imread(folder / f"{SAMPLE_PATIENT}_image.tif"),
            tifffile.imread(folder / f"{SAMPLE_PATIENT}_mask.tif") > 0)


def test_flair_only_segments_like_a_scan_whose_three_channels_are_flair(sample, tiny_model_dir):
    image = sample[0][:6]
    model = load_model(tiny_model_dir)
    flair, rgb = input_variant(image, True, "flair-only")
    assert flair.shape == image.shape[:3] and not rgb
    repeated = np.repeat(image[..., 1:2], 3, axis=-1)
    np.testing.assert_allclose(segment_volume(model, flair, rgb=rgb).probability,
                               segment_volume(model, repeated, rgb=True).probability, atol=1e-5)


def test_skull_stripped_variant_zeroes_outside_the_brain_keeps_inside_and_the_tumour(sample):
    image, mask = sample
    stripped, rgb = input_variant(image, True, "skull-stripped")
    assert rgb and stripped.shape == image.shape and stripped.dtype == image.dtype
    inside = (stripped > 0).any(axis=-1)
    np.testing.assert_array_equal(stripped[inside], image[inside])
    assert (inside & mask).sum() >= 0.95 * mask.sum()
    assert inside.sum() < 0.8 * (image[..., 1] > 10).sum()  # scalp and skull are gone


def test_as_is_leaves_the_scan_alone_and_unknown_variants_are_refused(sample):
    image = sample[0][:2]
    same, rgb = input_variant(image, True, "as-is")
    np.testing.assert_array_equal(same, image)
    with pytest.raises(InputError, match="flair-only"):
        input_variant(image, True, "t2-only")


def test_normalised_flair_only_repeats_flair_and_as_is_is_the_same_volume():
    volume = np.random.default_rng(0).random((2, 3, 16, 16)).astype(np.float32)
    flair_only = normalised_variant(volume, "flair-only")
    assert flair_only.shape == volume.shape
    for channel in range(3):
        np.testing.assert_array_equal(flair_only[:, channel], volume[:, FLAIR_CHANNEL])
    assert normalised_variant(volume, "as-is") is volume
    with pytest.raises(InputError):
        normalised_variant(volume, "t2-only")
