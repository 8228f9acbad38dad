"""brain_mask: an approximate brain from the FLAIR alone, on a phantom head with scalp, skull and ventricle."""

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from napari_lgg_unet.engine import brain_mask as brain_mask_module
from napari_lgg_unet.engine.brain_mask import brain_mask
from napari_lgg_unet.engine.sequences import FLAIR_CHANNEL
from napari_lgg_unet.engine.stopping import Stopped
from napari_lgg_unet.sample_data import SAMPLE_PATIENT, sample_folder


def _phantom(size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A head as the LGG FLAIR shows it: bright scalp ring, dark skull ring, mid-grey brain with a dark ventricle."""
    y, x = np.mgrid[:size, :size] - size / 2
    r = np.hypot(y, x) / size
    flair = np.select([r < 0.05, r < 0.33, r < 0.37, r < 0.42], [0.1, 0.45, 0.03, 0.9], 0.0).astype(np.float32)
    return flair, r < 0.33


def test_brain_mask_keeps_the_brain_and_drops_scalp_and_skull_of_a_phantom():
    flair, brain = _phantom()
    found = brain_mask(np.stack([flair] * 3))[1]
    iou = (found & brain).sum() / (found | brain).sum()
    assert iou > 0.9
    assert not found[np.hypot(*(np.mgrid[:128, :128] - 64)) / 128 > 0.36].any()  # nothing of skull or scalp


def test_brain_mask_works_on_a_single_slice_of_any_scale():
    flair, _ = _phantom()
    np.testing.assert_array_equal(brain_mask(flair * 4000), brain_mask(np.stack([flair] * 3))[0])


def test_a_blank_scan_has_no_brain():
    flair = np.zeros((2, 64, 64), np.float32)
    found = brain_mask(flair)
    assert found.shape == flair.shape and found.dtype == bool and not found.any()


@pytest.mark.parametrize("radius", [1, 2, 4, 5, 10])
def test_disk_erosion_and_dilation_from_distances_are_scipys_pixel_for_pixel(radius):
    """The brain mask's disk morphology is computed from distance transforms for speed; it must keep exactly what
    scipy's binary_erosion / binary_dilation with the same disk keep, image borders included."""
    rng = np.random.default_rng(radius)
    y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    disk = (x * x + y * y <= radius * radius)[None]
    for dense in (0.3, 0.97):
        mask = ndimage.binary_dilation(rng.random((3, 40, 57)) > dense, iterations=2)
        mask[2] = True  # a slice with no background
        np.testing.assert_array_equal(brain_mask_module._erode(mask, radius), ndimage.binary_erosion(mask, disk))
        np.testing.assert_array_equal(brain_mask_module._dilate(mask, radius), ndimage.binary_dilation(mask, disk))
        empty = np.zeros_like(mask)
        np.testing.assert_array_equal(brain_mask_module._dilate(empty, radius), empty)


def test_a_stop_asked_during_a_brain_mask_ends_it_at_the_next_pass_over_the_slices_and_none_asks_nothing():
    """A volume's brain mask takes 1-4 s (an 88-slice patient on 2 busy cores), and the training it is made for
    could only stop before or after it. Here the stop is asked after the first pass over the packaged real patient's
    slices: the second pass does not start."""
    flair = tifffile.imread(sample_folder() / f"{SAMPLE_PATIENT}_image.tif")[..., FLAIR_CHANNEL]
    asked = []
    with pytest.raises(Stopped):
        brain_mask(flair, stop=lambda: asked.append(1) or len(asked) > 1)
    assert len(asked) == 2
    np.testing.assert_array_equal(brain_mask(flair, stop=lambda: False), brain_mask(flair))
