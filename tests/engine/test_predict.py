import numpy as np
import pytest

from napari_lgg_unet.engine.errors import InputError
from napari_lgg_unet.engine.io import load_patient
from napari_lgg_unet.engine.model import load_model
from napari_lgg_unet.engine.postprocess import PostprocessConfig
from napari_lgg_unet.engine.predict import SegmentOptions, postprocess, segment_steps, segment_volume


def test_predict_on_a_real_patient_returns_masks_of_the_input_shape(sample_patient_dir, tiny_model_dir):
    scan = load_patient(sample_patient_dir)
    result = segment_volume(load_model(tiny_model_dir), scan.image, rgb=True)
    assert result.mask.shape == scan.mask.shape and result.mask.dtype == np.uint8
    assert result.probability.shape == scan.mask.shape
    assert set(np.unique(result.mask)) <= {0, 1}
    assert 0.0 <= result.probability.min() and result.probability.max() <= 1.0


@pytest.mark.parametrize(
    "shape, rgb", [((250, 301), False), ((3, 250, 301), False), ((250, 301, 3), True), ((5, 37, 41, 3), True)]
)
def test_predict_keeps_input_shape_for_odd_sizes_and_layouts(tiny_model_dir, shape, rgb):
    image = np.random.default_rng(0).integers(0, 4000, shape).astype(np.uint16)
    result = segment_volume(load_model(tiny_model_dir), image, rgb=rgb)
    assert result.mask.shape == (shape[:-1] if rgb else shape)


def test_a_long_stack_is_processed_in_batches_with_progress(tiny_model_dir):
    image = np.random.default_rng(0).random((21, 40, 40)).astype(np.float32)
    progress = list(segment_steps(load_model(tiny_model_dir), image, SegmentOptions(batch_size=4)))
    assert [p.done for p in progress] == [0, 4, 8, 12, 16, 20, 21, 21]
    assert progress[-1].result is not None and all(p.result is None for p in progress[:-1])


def test_stop_ends_segmentation_without_a_result(tiny_model_dir):
    image = np.zeros((10, 40, 40), np.float32)
    progress = list(segment_steps(load_model(tiny_model_dir), image, SegmentOptions(batch_size=2), stop=lambda: True))
    assert all(p.result is None for p in progress)


def test_a_stop_asked_while_auto_precision_is_first_timed_ends_segmentation_before_the_next_timed_pass(
        tiny_model_dir, tmp_path, monkeypatch):
    """The first 'auto' segmentation on a machine times the number formats (20 s on 2 busy cores), and Cancel waited
    for every pass; now it ends before the next one, with no result and no choice remembered."""
    from napari_lgg_unet.engine import precision

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(precision.REMEASURE_ENV, raising=False)
    monkeypatch.setattr(precision, "_CHOSEN", {})
    timed, timing = [], precision.autocast
    monkeypatch.setattr(precision, "autocast", lambda candidate: timed.append(candidate) or timing(candidate))
    image = np.zeros((10, 40, 40), np.float32)
    progress = list(segment_steps(load_model(tiny_model_dir), image, SegmentOptions(precision="auto"),
                                  stop=lambda: bool(timed)))
    assert len(timed) == 1 and progress == [] and precision._CHOSEN == {}
    assert not precision.choices_file().exists()


def test_flip_tta_gives_a_left_right_symmetric_answer_on_a_symmetric_scan(tiny_model_dir):
    half = np.random.default_rng(3).random((2, 64, 32)).astype(np.float32)
    symmetric = np.concatenate([half, half[..., ::-1]], axis=-1)
    # plain fp32: bf16 rounding differs between mirrored pixels by ~1e-3, which is not what this test is about
    prob = segment_volume(
        load_model(tiny_model_dir), symmetric, SegmentOptions(tta=True, precision="fp32", backend="torch")
    ).probability
    np.testing.assert_allclose(prob, prob[..., ::-1], atol=1e-5)


def test_postprocessing_drops_small_pieces_and_can_keep_the_largest():
    prob = np.zeros((3, 20, 20), np.float32)
    prob[0:3, 2:8, 2:8] = 0.9  # 108 voxels
    prob[1, 15:17, 15:17] = 0.8  # 4 voxels
    prob[2, 12:15, 2:5] = 0.4  # below threshold
    assert postprocess(prob, PostprocessConfig(0.5)).sum() == 112
    assert postprocess(prob, PostprocessConfig(0.5, min_size=5)).sum() == 108
    assert postprocess(prob, PostprocessConfig(0.3, keep_largest=True)).sum() == 108
    assert postprocess(prob, PostprocessConfig(0.3)).sum() == 121


@pytest.mark.parametrize("options, phrase", [
    ({"tta": True}, "SegmentOptions"),
    ("fast", "SegmentOptions"),
])
def test_options_that_are_not_segment_options_are_refused_by_name(tiny_model_dir, options, phrase):
    from napari_lgg_unet.engine.errors import InputError

    from napari_lgg_unet.engine.corrections import CorrectionSession

    model, image = load_model(tiny_model_dir), np.zeros((2, 40, 40), np.float32)
    with pytest.raises(InputError, match=phrase):
        segment_volume(model, image, options)
    with pytest.raises(InputError, match=phrase):
        CorrectionSession(model, image, options)


def test_no_options_mean_the_defaults_for_segment_volume_as_for_a_correction_session(tiny_model_dir):
    """The issue's API writes CorrectionSession(model, image, options=None); segment_volume refused the same None."""
    from napari_lgg_unet.engine.predict import SegmentOptions

    model = load_model(tiny_model_dir)
    image = np.random.default_rng(0).random((2, 40, 40)).astype(np.float32)
    default = segment_volume(model, image, SegmentOptions())
    none = segment_volume(model, image, None)
    np.testing.assert_array_equal(none.probability, default.probability)
    np.testing.assert_array_equal(none.mask, default.mask)


def test_a_clean_up_that_is_not_a_postprocess_config_is_refused_when_the_options_are_made():
    from napari_lgg_unet.engine.errors import InputError

    with pytest.raises(InputError, match="PostprocessConfig"):
        SegmentOptions(postprocess={"threshold": 0.3})


@pytest.mark.parametrize("model", ["default", None, 3])
def test_a_model_that_was_not_loaded_is_refused_with_advice_to_load_it(model):
    from napari_lgg_unet.engine.corrections import CorrectionSession
    from napari_lgg_unet.engine.errors import InputError

    image = np.zeros((2, 40, 40), np.float32)
    with pytest.raises(InputError, match="load_model"):
        segment_volume(model, image)
    with pytest.raises(InputError, match="load_model"):
        CorrectionSession(model, image)



@pytest.mark.parametrize("rgb", ["no", 1, "False"])
def test_rgb_must_be_true_false_or_none(tiny_model_dir, rgb):
    from napari_lgg_unet.engine.errors import InputError

    with pytest.raises(InputError, match="rgb"):
        segment_volume(load_model(tiny_model_dir), np.zeros((40, 40, 3), np.float32), rgb=rgb)


def test_segment_options_take_numpy_scalars_as_python_values():
    options = SegmentOptions(batch_size=np.int64(4), tta=np.bool_(True), precision=np.str_("fp32"))
    assert options == SegmentOptions(batch_size=4, tta=True, precision="fp32")
    assert (type(options.batch_size), type(options.tta), type(options.precision)) == (int, bool, str)


@pytest.mark.parametrize("image, given", [("scan.tif", "str"), (None, "NoneType"), ("scan", "Scan")])
def test_a_path_or_a_whole_scan_given_for_pixels_is_told_where_the_pixels_are(tiny_model_dir, sample_patient_dir,
                                                                               image, given):
    image = load_patient(sample_patient_dir) if image == "scan" else image
    with pytest.raises(InputError, match=rf"got a {given}, not an array \(a scan.s pixels are load_scan\(path\).image"):
        segment_volume(load_model(tiny_model_dir), image)
