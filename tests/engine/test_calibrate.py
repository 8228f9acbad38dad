"""calibrate: the clean-up candidates it tries, its fast piece-wise scoring, and what it records in a model folder."""

import shutil

import numpy as np
import pytest
from scipy import ndimage

from napari_lgg_unet.engine.calibrate import Pieces, calibrate, candidates
from napari_lgg_unet.engine.metrics import volume_scores
from napari_lgg_unet.engine.model import load_model, read_config
from napari_lgg_unet.engine.postprocess import PostprocessConfig, postprocess


def test_calibration_tries_keep_largest_only_when_asked_and_no_moot_confidence_levels():
    plain = list(candidates())
    assert not any(c.keep_largest for c in plain)
    assert all(c.min_confidence == 0 or c.min_confidence > c.threshold for c in plain)
    assert len(set(plain)) == len(plain)
    assert any(c.keep_largest for c in candidates(keep_largest=True))


def test_calibration_over_input_variants_records_them_and_never_picks_keep_largest(
    sample_patient_dir, tiny_model_dir, tmp_path
):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    folders = [sample_patient_dir]
    best, calibration = calibrate(load_model(model_dir), folders, model_dir, variants=("as-is", "flair-only"))
    recorded = read_config(model_dir)
    assert recorded.postprocess == best and not best.keep_largest
    assert recorded.training.calibration == calibration and calibration.input_variants == ["as-is", "flair-only"]
    assert 0.0 <= calibration.mean_dice <= 1.0


def test_calibration_scores_every_candidate_exactly_as_postprocess_would():
    rng = np.random.default_rng(3)
    blobs = ndimage.gaussian_filter(rng.random((12, 40, 40)), 2)
    prob = ((blobs - blobs.min()) / np.ptp(blobs)).astype(np.float32)
    truth = ndimage.gaussian_filter(rng.random((12, 40, 40)), 2) > 0.52
    cases = [
        (prob, truth), (prob, np.zeros_like(truth)), (np.zeros_like(prob), truth), (np.zeros_like(prob), 0 * truth),
    ]
    checked = 0
    for config in candidates(keep_largest=True):
        for probability, mask in cases:
            expected = volume_scores(postprocess(probability, config), mask).dice
            assert Pieces.of(probability, mask, config.threshold).dice(config) == expected, config
            checked += 1
    assert checked > 300 and 0 < volume_scores(postprocess(prob, PostprocessConfig(0.5)), truth).dice < 1


def test_calibration_refuses_to_write_into_a_folder_holding_other_weights_and_leaves_it(
    sample_patient_dir, tiny_model_dir, tmp_path
):
    from dataclasses import replace

    from napari_lgg_unet.engine.errors import InputError
    from napari_lgg_unet.engine.model import save_model

    loaded = load_model(tiny_model_dir)
    folder = save_model(loaded.network, replace(loaded.config, postprocess=PostprocessConfig(0.42)), tmp_path / "b")
    before = (folder / "config.json").read_bytes()  # saved since `loaded` was loaded: new weights_id
    with pytest.raises(InputError, match="no longer holds the model being calibrated"):
        calibrate(loaded, [sample_patient_dir], folder)
    assert (folder / "config.json").read_bytes() == before and load_model(folder).config.postprocess.threshold == 0.42


@pytest.mark.parametrize("variants", [("as-is", "flair-only", "as-is"), "as-is", ("blurred",), ()])
def test_calibration_refuses_input_variants_that_are_not_distinct_known_names_and_writes_nothing(
    sample_patient_dir, tiny_model_dir, tmp_path, variants
):
    """('as-is', 'flair-only', 'as-is') weighted as-is twice in the mean that chose the setting, and was recorded so;
    `train --validate-on` refuses the same list."""
    from napari_lgg_unet.engine.errors import InputError

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    before = {p.name: p.read_bytes() for p in model_dir.iterdir()}
    with pytest.raises(InputError, match="calibration input variants must be (a list|one or more distinct names)"):
        calibrate(load_model(model_dir), [sample_patient_dir], model_dir, variants=variants)
    assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == before
