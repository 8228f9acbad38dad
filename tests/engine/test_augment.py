from dataclasses import replace

import numpy as np
import pytest
import tifffile
import torch

from napari_lgg_unet.engine.augment import AugmentConfig, augment_pair, skull_strip_view
from napari_lgg_unet.engine.dataset import SliceDataset, TrainingVolume, prepare_training_volume
from napari_lgg_unet.engine.errors import InputError
from napari_lgg_unet.engine.io import Scan
from napari_lgg_unet.engine.preprocess import PreprocessConfig
from napari_lgg_unet.engine.validate import from_json
from napari_lgg_unet.sample_data import SAMPLE_PATIENT, sample_folder

# Only the transform under test: no geometry, no intensity jitter, every probability 0.
STILL = AugmentConfig(
    rotation_degrees=0, shift_fraction=0, zoom_fraction=0, shear_degrees=0, horizontal_flip=False, intensity=0,
    skull_strip=0, missing_sequence=0, flair_only=0, low_resolution=0, bias_field=0, outliers=0,
)


@pytest.fixture(scope="module")
def sample_volume() -> TrainingVolume:
    """The packaged real patient at 128 px, as training stores it."""
    folder = sample_folder()
    image = tifffile.imread(folder / f"{SAMPLE_PATIENT}_image.tif")
    mask = tifffile.imread(folder / f"{SAMPLE_PATIENT}_mask.tif") > 0
    return prepare_training_volume(Scan(SAMPLE_PATIENT, image, mask, rgb=True), PreprocessConfig(image_size=128))


def _rand_slice(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    image = torch.from_numpy(rng.random((3, 64, 64)).astype(np.float32))
    mask = torch.zeros(1, 64, 64)
    mask[:, 20:40, 24:44] = 1
    return image, mask


def test_with_every_transform_forced_the_image_stays_in_range_and_the_mask_binary():
    forced = AugmentConfig(skull_strip=1, missing_sequence=1, flair_only=1, low_resolution=1, bias_field=1, outliers=1)
    image, mask = _rand_slice()
    keep = np.zeros((64, 64), bool)
    keep[8:56, 8:56] = True
    for seed in range(5):
        out, out_mask = augment_pair(image, mask, forced, np.random.default_rng(seed), (keep, np.array([[0, 0.9]] * 3)))
        assert out.shape == image.shape and out.dtype == torch.float32
        assert 0 <= float(out.min()) and float(out.max()) <= 1
        assert set(torch.unique(out_mask).tolist()) <= {0.0, 1.0}


def test_flair_only_makes_all_three_channels_the_flair_channel():
    image, mask = _rand_slice()
    out, _ = augment_pair(image, mask, replace(STILL, flair_only=1), np.random.default_rng(0))
    for channel in out:
        torch.testing.assert_close(channel, image[1], atol=1e-5, rtol=0)


def test_a_missing_sequence_is_replaced_by_flair_and_the_other_kept():
    image, mask = _rand_slice()
    seen = set()
    for seed in range(12):
        out, _ = augment_pair(image, mask, replace(STILL, missing_sequence=1), np.random.default_rng(seed))
        replaced = [c for c in (0, 2) if torch.allclose(out[c], image[1], atol=1e-5)]
        kept = [c for c in (0, 2) if torch.allclose(out[c], image[c], atol=1e-5)]
        assert len(replaced) == 1 and len(kept) == 1
        seen.add(replaced[0])
    assert seen == {0, 2}


def test_low_resolution_removes_fine_detail_but_keeps_the_mean():
    image, mask = _rand_slice()
    out, _ = augment_pair(image, mask, replace(STILL, low_resolution=1, max_downsample=3), np.random.default_rng(1))
    detail = lambda t: float((t[..., 1:] - t[..., :-1]).abs().mean())  # noqa: E731
    assert detail(out) < 0.6 * detail(image)
    assert abs(float(out.mean()) - float(image.mean())) < 0.02


def test_bias_field_is_smooth_and_multiplicative():
    image = torch.full((3, 64, 64), 0.5)
    out, _ = augment_pair(image, torch.zeros(1, 64, 64), replace(STILL, bias_field=1, bias_strength=0.3),
                          np.random.default_rng(2))
    ratio = out / image
    assert float(ratio.min()) >= np.exp(-0.3) - 1e-4 and float(ratio.max()) <= np.exp(0.3) + 1e-4
    assert float(ratio.max() - ratio.min()) > 0.05
    assert float((ratio[..., 1:] - ratio[..., :-1]).abs().max()) < 0.05  # no edges


def test_outliers_add_a_few_bright_spots_only():
    image = torch.full((3, 64, 64), 0.2)
    out, _ = augment_pair(image, torch.zeros(1, 64, 64), replace(STILL, outliers=1), np.random.default_rng(3))
    changed = ((out - image).abs() > 1e-4).any(dim=0)
    assert 1 <= int(changed.sum()) <= 5 * 25
    assert float(out[:, changed].max()) >= 0.8


def test_disabled_augmentation_returns_the_stored_slice_unchanged():
    image = np.random.default_rng(0).random((4, 3, 32, 32)).astype(np.float16)
    masks = np.zeros((4, 32, 32), bool)
    dataset = SliceDataset([TrainingVolume("p", image, masks)], AugmentConfig(enabled=False))
    x, _ = dataset[2]
    np.testing.assert_array_equal(x.numpy(), image[2].astype(np.float32))
    assert dataset.stripped == [None]


def test_skull_stripping_a_real_slice_zeroes_outside_the_brain_and_keeps_all_tumour(sample_volume):
    view = skull_strip_view(sample_volume.image, sample_volume.mask)
    assert (view.keep >= sample_volume.mask).all()
    z = int(np.argmax(sample_volume.mask.sum(axis=(1, 2))))
    image = torch.from_numpy(sample_volume.image[z].astype(np.float32))
    mask = torch.from_numpy(sample_volume.mask[z][None].astype(np.float32))
    out, _ = augment_pair(
        image, mask, replace(STILL, skull_strip=1), np.random.default_rng(0), (view.keep[z], view.ranges)
    )
    assert float(out[:, ~view.keep[z]].abs().max()) == 0
    head = (sample_volume.image[z, 1] > 0.08).sum()
    assert 0.3 * head < view.keep[z].sum() < 0.9 * head
    assert float(out[:, view.keep[z]].mean()) > float(image[:, view.keep[z]].mean())  # re-normalised: brighter


# What the default model shipped before the shift augmentations recorded (its config.json, verbatim).
OLDER_RECORD = {"enabled": True, "rotation_degrees": 15.0, "shift_fraction": 0.05, "zoom_fraction": 0.1,
                "shear_degrees": 5.0, "horizontal_flip": True, "intensity": 0.1}


def test_models_saved_before_the_new_transforms_still_load_their_augmentation_settings():
    recorded = OLDER_RECORD
    config = from_json(AugmentConfig, {**recorded, "a_field_from_the_future": 1})
    assert config.zoom_fraction == recorded["zoom_fraction"] and config.intensity == recorded["intensity"]
    assert config.skull_strip == AugmentConfig().skull_strip
    assert from_json(AugmentConfig, config.to_dict()) == config
    with pytest.raises(InputError, match="AugmentConfig must be an object"):
        from_json(AugmentConfig, None)
