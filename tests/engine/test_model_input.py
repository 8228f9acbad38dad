import numpy as np
import pytest
import tifffile
import torch

from napari_lgg_unet.engine.augment import AugmentConfig
from napari_lgg_unet.engine.dataset import SliceDataset, TrainingVolume
from napari_lgg_unet.engine.errors import InputError
from napari_lgg_unet.engine.model import LoadedModel, load_model, with_inputs
from napari_lgg_unet.engine.model_input import Click, InputConfig, assemble, click_maps, neighbour_indices
from napari_lgg_unet.engine.predict import SegmentOptions, segment_volume


def test_neighbours_are_clamped_at_the_ends_so_a_single_slice_repeats_itself():
    config = InputConfig(context_slices=2)
    assert neighbour_indices(np.array([0, 5, 9]), 10, config).tolist() == [[0, 0, 1, 2], [3, 4, 6, 7], [7, 8, 9, 9]]
    assert neighbour_indices(np.array([0]), 1, config).tolist() == [[0, 0, 0, 0]]


def test_assembled_input_has_sequences_then_neighbours_then_click_maps():
    config = InputConfig(context_slices=1, clicks=True)
    image, flair = torch.rand(2, 3, 8, 8), torch.rand(2, 2, 8, 8)
    x = assemble(image, flair, None, config)
    assert x.shape == (2, config.channels, 8, 8) == (2, 7, 8, 8)
    torch.testing.assert_close(x[:, :3], image)
    torch.testing.assert_close(x[:, 3:5], flair)
    assert not x[:, 5:].any()  # no clicks: zero maps


def test_click_maps_peak_at_the_click_and_fade_with_slice_distance():
    maps = click_maps([Click(2, 4, 6, True), Click(2, 1, 1, False)], np.arange(5), (8, 8), sigma=1.5, reach=1)
    assert maps.shape == (5, 2, 8, 8)
    assert maps[2, 0, 4, 6] == pytest.approx(1.0)
    assert maps[1, 0, 4, 6] == pytest.approx(np.exp(-0.5))
    assert not maps[0].any() and not maps[4].any()  # beyond the reach
    assert maps[2, 1, 1, 1] == pytest.approx(1.0) and maps[2, 1, 4, 6] < 0.01


def test_a_plain_model_grown_to_take_context_and_clicks_segments_exactly_as_before(sample_patient_dir, tiny_model_dir):
    image = tifffile.imread(next(sample_patient_dir.glob("*_1.tif")))
    model = load_model(tiny_model_dir)  # plain 3-channel inputs (the default already takes context and clicks)
    assert model.config.inputs == InputConfig()
    grown_network, grown_config = with_inputs(model.network, model.config, InputConfig(context_slices=2, clicks=True))
    grown = LoadedModel(grown_network.eval(), grown_config, "grown")
    stack = np.stack([image] * 3)
    # in fp32 both: 'auto' times its choice per network and may give the two different precisions; on a CPU with
    # bf16 units this failed about one run in three, off by up to 7e-4 (bf16 rounding, not the zero weights)
    fp32 = SegmentOptions(precision="fp32")
    np.testing.assert_array_equal(segment_volume(grown, stack, fp32).probability,
                                  segment_volume(model, stack, fp32).probability)
    with pytest.raises(InputError):
        with_inputs(grown_network, grown_config, InputConfig(context_slices=1))


def test_training_samples_carry_their_neighbours_moved_by_the_same_transform():
    image = np.zeros((4, 3, 32, 32), np.float16)
    image[:, 1, 10:20, 10:20] = 1.0  # the same FLAIR square on every slice
    masks = np.zeros((4, 32, 32), bool)
    inputs = InputConfig(context_slices=1, clicks=True)
    dataset = SliceDataset([TrainingVolume("v", image, masks)], AugmentConfig(intensity=0.0, bias_field=0.0,
                           outliers=0.0, low_resolution=0.0), seed=3, inputs=inputs)
    for item in range(4):
        x, _ = dataset[item]
        assert x.shape == (5, 32, 32)  # clicks are added in the training step
        torch.testing.assert_close(x[3], x[1])
        torch.testing.assert_close(x[4], x[1])
