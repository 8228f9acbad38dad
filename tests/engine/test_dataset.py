import tracemalloc

import numpy as np
import pytest
import torch

from napari_lgg_unet.engine.augment import AugmentConfig, augment_pair
from napari_lgg_unet.engine.dataset import (
    SliceDataset,
    TrainingVolume,
    hard_negative_weights,
    institution,
    prepare_training_volume,
    sampling_weights,
    split_patients,
    split_single_volume,
    tumour_aware_sampler,
)
from napari_lgg_unet.engine.errors import InputError
from napari_lgg_unet.engine.io import Scan
from napari_lgg_unet.engine.precision import choose
from napari_lgg_unet.engine.preprocess import PreprocessConfig

NAMES = [f"TCGA_{site}_{i:04d}_2000" for site in ("CS", "DU", "HT", "FG") for i in range(10)]


def test_patient_split_is_disjoint_deterministic_and_stratified():
    train, val, test = split_patients(NAMES, 0.1, 0.2, seed=7)
    assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    assert sorted(train + val + test) == sorted(NAMES)
    assert (len(val), len(test)) == (4, 8)
    assert split_patients(NAMES, 0.1, 0.2, seed=7) == (train, val, test)
    assert split_patients(NAMES, 0.1, 0.2, seed=8) != (train, val, test)
    assert {institution(n) for n in test} == {"CS", "DU", "HT", "FG"}


def test_reference_90_5_5_split_is_available():
    train, val, test = split_patients(NAMES, 0.05, 0.05)
    assert (len(train), len(val), len(test)) == (36, 2, 2)


def test_a_training_scan_with_nan_is_told_to_replace_it_before_training_not_segmenting():
    """The NaN refusal is shared with segmentation; in training it named the wrong step ("before segmenting")."""
    image = np.full((2, 32, 32), np.nan, dtype=np.float32)
    image[:, 8:24, 8:24] = 100.0
    scan = Scan(name="painted", image=image, mask=np.ones((2, 32, 32), bool), rgb=False)
    with pytest.raises(InputError) as refused:
        prepare_training_volume(scan, PreprocessConfig(image_size=32))
    assert str(refused.value) == ("painted: the scan contains NaN or infinite values; replace them (e.g. with 0) "
                                  "before training")


def test_a_scan_with_few_labelled_slices_is_prepared_without_normalising_it_whole():
    """Painted labels often cover a few slices of a large scan (20 of a 512 x 512 x 200 one), and the whole scan was
    normalised in float32 before the slices without labels were dropped: 0.8 GB more for that one, here four float32
    copies of the scan. The slices kept are prepared 16 at a time, as prediction reads a scan, and as before."""
    image = (np.random.default_rng(0).random((40, 256, 256)) * 1000).astype(np.int16)
    mask = np.zeros(image.shape, bool)
    mask[20:22, 100:140, 100:140] = True
    scan, config = Scan(name="painted", image=image, mask=mask, rgb=False), PreprocessConfig(image_size=64)
    tracemalloc.start()
    try:
        kept = prepare_training_volume(scan, config, skip_unlabelled=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < image.size * 4, f"{peak / 2**20:.0f} MB: as much as a float32 copy of the scan"
    every = prepare_training_volume(scan, config)
    assert len(every.mask) == 40
    np.testing.assert_array_equal(kept.image, every.image[20:22])
    np.testing.assert_array_equal(kept.mask, every.mask[20:22])


def test_augmentation_moves_image_and_mask_together():
    mask = torch.zeros(1, 64, 64)
    mask[:, 10:30, 5:25] = 1
    image = mask.repeat(3, 1, 1)
    config = AugmentConfig(intensity=0.0, low_resolution=0, bias_field=0, outliers=0, flair_only=0, missing_sequence=0)
    for seed in range(5):
        warped_image, warped_mask = augment_pair(image, mask, config, np.random.default_rng(seed))
        assert set(torch.unique(warped_mask).tolist()) <= {0.0, 1.0}
        agreement = ((warped_image[0] > 0.5) == (warped_mask[0] > 0.5)).float().mean()
        assert agreement > 0.99


def test_tumour_aware_sampling_draws_about_the_requested_share_of_tumour_slices():
    masks = np.zeros((30, 8, 8), bool)
    masks[:5, 2, 2] = True  # 1 in 6 slices shows tumour
    dataset = SliceDataset([TrainingVolume("p", np.zeros((30, 3, 8, 8), np.float16), masks)])
    drawn = list(tumour_aware_sampler(dataset, 3000, 0.5, seed=0))
    share = np.mean([item < 5 for item in drawn])
    assert 0.45 < share < 0.55
    natural = list(tumour_aware_sampler(dataset, 3000, None, seed=0))
    assert 0.12 < np.mean([item < 5 for item in natural]) < 0.22


class _BrightIsTumour(torch.nn.Module):
    """A stand-in network that calls every pixel with FLAIR above 0.5 tumour."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(40.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * (x[:, 1:2] - 0.5)


def test_hard_negative_weights_measure_false_positives_outside_the_true_mask():
    image = np.zeros((6, 3, 16, 16), np.float16)
    masks = np.zeros((6, 16, 16), bool)
    image[1, 1, :4, :4] = 1.0  # empty slice with a bright 16-pixel false tumour
    image[3, 1, :2, :2] = 1.0  # empty slice with a 4-pixel one
    image[4, 1, 8:12, 8:12] = 1.0  # true tumour, found: not a false positive
    masks[4, 8:12, 8:12] = True
    network = _BrightIsTumour().train()
    weights = hard_negative_weights(network, [TrainingVolume("a", image[:3], masks[:3]),
                                              TrainingVolume("b", image[3:], masks[3:])], choose("cpu", "fp32"),
                                    batch_size=2)
    assert weights.shape == (6,)
    assert weights[1] > 3 * weights[3] > 0
    assert weights[[0, 2, 4, 5]].tolist() == [0, 0, 0, 0]
    assert network.training  # mode restored


def test_hard_negative_sampling_draws_empty_slices_by_difficulty():
    has = np.array([True] * 4 + [False] * 16)
    difficulty = np.zeros(20)
    difficulty[4], difficulty[5] = 30.0, 10.0
    weights = sampling_weights(has, 0.5, difficulty, hard_negatives=0.5)
    assert weights.sum() == pytest.approx(1.0)
    assert weights[has].sum() == pytest.approx(0.5)
    assert weights[4] == pytest.approx(0.5 * (0.5 / 16 + 0.5 * 0.75))
    assert weights[6] == pytest.approx(0.5 * 0.5 / 16)
    np.testing.assert_allclose(sampling_weights(has, 0.5, np.zeros(20), 0.5), sampling_weights(has, 0.5))
    with pytest.raises(InputError):
        sampling_weights(has, 0.5, difficulty[:5], 0.5)
    for share in (2, float("nan")):  # refused with the words TrainConfig(hard_negatives=...) uses
        with pytest.raises(InputError, match=r"hard-negative share must (be in \[0, 1\]|be a finite number)"):
            sampling_weights(has, 0.5, difficulty, share)


def test_sampler_with_only_hard_negatives_never_draws_an_easy_empty_slice():
    masks = np.zeros((10, 8, 8), bool)
    masks[:2, 2, 2] = True
    dataset = SliceDataset([TrainingVolume("p", np.zeros((10, 3, 8, 8), np.float16), masks)])
    difficulty = np.zeros(10)
    difficulty[7] = 1.0
    drawn = set(tumour_aware_sampler(dataset, 500, 0.5, seed=0, negative_weights=difficulty, hard_negatives=1.0))
    assert drawn == {0, 1, 7}


@pytest.mark.parametrize("slices, fraction, held_out", [(2, 0.75, 1), (3, 0.9, 2), (10, 0.2, 2), (4, 0.01, 1)])
def test_a_single_scan_holds_out_at_least_one_slice_and_keeps_at_least_one(slices, fraction, held_out):
    """A large validation fraction of a few slices rounded to all of them: a scan of 2 labelled slices was refused as
    needing 2."""
    volume = TrainingVolume("p", np.zeros((slices, 3, 8, 8), np.float16), np.zeros((slices, 8, 8), np.uint8))
    train, validation = split_single_volume(volume, fraction)
    assert (len(train.mask), len(validation.mask)) == (slices - held_out, held_out)


def test_a_single_scan_of_one_slice_cannot_be_split():
    volume = TrainingVolume("p", np.zeros((1, 3, 8, 8), np.float16), np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(InputError, match="at least 2 labelled slices"):
        split_single_volume(volume, 0.5)
