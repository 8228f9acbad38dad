import numpy as np
import torch

from napari_lgg_unet.engine.dataset import (
    AugmentConfig,
    SliceDataset,
    TrainingVolume,
    augment_pair,
    institution,
    split_patients,
    tumour_aware_sampler,
)

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


def test_augmentation_moves_image_and_mask_together():
    mask = torch.zeros(1, 64, 64)
    mask[:, 10:30, 5:25] = 1
    image = mask.repeat(3, 1, 1)
    config = AugmentConfig(intensity=0.0)
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
