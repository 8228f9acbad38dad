"""Training settings are declared once (engine/settings.py): the CLI flags, the mapping back, the resume rule and
the validation messages all come from those declarations."""

import json
from pathlib import Path

import numpy as np
import pytest

from napari_lgg_unet import cli
from napari_lgg_unet.engine.dataset import split_patients
from napari_lgg_unet.engine.errors import InputError
from napari_lgg_unet.engine.settings import (
    MAY_CHANGE, AugmentConfig, TrainConfig, field_and_flag, option_and_flag, settings_of,
)

BASE = ["train", "--data", "d", "--out", "o"]


def _parsed(*flags: str) -> TrainConfig:
    return cli.train_config(cli.build_parser().parse_args([*BASE, *flags]))


def test_a_bare_train_command_line_gives_the_declared_defaults():
    assert _parsed() == TrainConfig()


def test_a_message_names_a_setting_by_its_field_for_the_api_and_by_the_flag_the_cli_parses():
    """The engine's messages reach API callers and CLI users alike: `--stop-after` meant nothing to a script's
    TrainConfig(stop_after=...), `stop_after` nothing on a command line."""
    assert field_and_flag("stop_after") == "stop_after (--stop-after)"
    assert _parsed("--stop-after", "3").stop_after == 3
    assert field_and_flag("skip_unlabelled") == "skip_unlabelled"  # painted layers only: no flag to name


def test_an_option_is_named_with_its_values_as_the_api_takes_them_and_as_its_flag_takes_them():
    assert option_and_flag("device", "cpu", "auto") == "device='cpu' or 'auto' (--device cpu or auto)"
    assert option_and_flag("precision", "fp16", "fp32", "auto") == ("precision='fp16', 'fp32' or 'auto' "
                                                                      "(--precision fp16, fp32 or auto)")
    assert option_and_flag("resume", True) == "resume=True (--resume)"  # a switch: its flag alone
    assert option_and_flag("existing", "skip", flag="--skip-existing") == "existing='skip' (--skip-existing)"


def test_every_setting_except_painted_layer_ones_has_a_flag_named_after_it():
    train = cli.build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {option for action in train._actions for option in action.option_strings}
    for name, declared in settings_of(TrainConfig).items():
        assert (f"--{name.replace('_', '-')}" in flags) == declared.flag, name
    assert not settings_of(TrainConfig)["skip_unlabelled"].flag


@pytest.mark.parametrize("flags, name, value", [
    (["--bce-weight", "0.5"], "bce_weight", 0.5),
    (["--lr-schedule", "cosine"], "lr_schedule", "cosine"),
    (["--decoder-channels", "64,32,16,8,8"], "decoder_channels", (64, 32, 16, 8, 8)),
    (["--validate-on", "as-is,flair-only"], "validation_variants", ("as-is", "flair-only")),
    (["--tumour-fraction", "-1"], "tumour_fraction", None),
    (["--sync-batchnorm"], "sync_batchnorm", True),
    (["--threads", "3"], "threads", 3),
])
def test_each_flag_maps_back_to_its_setting(flags, name, value):
    assert getattr(_parsed(*flags), name) == value


def test_augment_flags_change_augment_config_fields():
    config = _parsed("--augment", "flair_only=0.5,horizontal_flip=false", "--no-augment")
    assert config.augment.flair_only == 0.5 and not config.augment.horizontal_flip and not config.augment.enabled


def test_only_settings_declared_may_change_are_left_out_of_the_resume_match():
    must_match = TrainConfig().must_match_on_resume()
    for name, declared in settings_of(TrainConfig).items():
        assert (name in must_match) == (declared.on_resume != MAY_CHANGE), name
    assert {"lr", "batch_size", "augment"} <= set(must_match) and not {"epochs", "device", "resume"} & set(must_match)


@pytest.mark.parametrize("val, test", [(1.5, 0.0), (0.1, -0.2), (0.6, 0.5)])
def test_a_bad_split_gets_the_same_message_from_the_config_and_the_splitter(val, test):
    with pytest.raises(InputError) as from_config:
        TrainConfig(val_fraction=val, test_fraction=test)
    with pytest.raises(InputError) as from_splitter:
        split_patients(["a", "b", "c"], val, test)
    assert str(from_config.value) == str(from_splitter.value)
    assert "must each be in [0, 1) and add up to less than 1" in str(from_config.value)


def test_numpy_scalars_are_taken_and_kept_as_python_numbers():
    """A config equals, hashes and writes to JSON as the one made of plain Python values."""
    config = TrainConfig(epochs=np.int64(3), lr=np.float32(1e-3), val_fraction=np.float64(0.2), seed=np.uint32(7),
                         image_size=np.int64(128), decoder_channels=tuple(np.array([64, 32, 16, 8, 8])),
                         workers=np.int64(0), sync_batchnorm=np.bool_(True),
                         augment=AugmentConfig(flair_only=np.float32(0.3), enabled=np.bool_(False)))
    plain = TrainConfig(epochs=3, lr=1e-3, val_fraction=0.2, seed=7, image_size=128,
                        decoder_channels=(64, 32, 16, 8, 8), workers=0, sync_batchnorm=True,
                        augment=AugmentConfig(flair_only=0.3, enabled=False))
    assert config == plain and hash(config) == hash(plain)
    assert json.dumps(config.to_dict()) == json.dumps(plain.to_dict())


def test_lists_arrays_and_generators_of_settings_are_kept_as_tuples():
    config = TrainConfig(decoder_channels=(c for c in np.array([64, 32, 16, 8, 8])),
                         validation_variants=["as-is", "flair-only"])
    plain = TrainConfig(decoder_channels=(64, 32, 16, 8, 8), validation_variants=("as-is", "flair-only"))
    assert config == plain and hash(config) == hash(plain)


@pytest.mark.parametrize("setting, value", [("decoder_channels", "128,64,32"), ("validation_variants", "as-is"),
                                            ("decoder_channels", {64, 32, 16})])
def test_text_or_a_set_where_a_list_is_wanted_is_refused_as_such_not_taken_apart(setting, value):
    with pytest.raises(InputError, match=f"must be a list, not {value!r}"):
        TrainConfig(**{setting: value})


def test_a_model_to_fine_tune_from_may_be_a_path_and_is_recorded_as_text():
    config = TrainConfig(init=Path("runs") / "first")
    assert config.init == str(Path("runs") / "first")
    assert json.loads(json.dumps(config.to_dict()))["init"] == config.init


@pytest.mark.parametrize("init", ["", 5, b"runs/first"])
def test_a_model_to_fine_tune_from_that_names_no_folder_is_refused(init):
    with pytest.raises(InputError, match="init must be a model folder or 'default'"):
        TrainConfig(init=init)


@pytest.mark.parametrize("written, meant", [("CPU", "cpu"), (" cpu", "cpu"), ("Cuda", "cuda"), ("CUDA:1 ", "cuda:1"),
                                            ("Auto", "auto")])
def test_a_device_named_in_capitals_or_with_spaces_is_taken_as_written_in_lower_case(written, meant):
    assert TrainConfig(device=written).device == meant
    assert _parsed("--device", written).device == meant


@pytest.mark.parametrize("written, meant", [("FP32", "fp32"), (" bf16", "bf16"), ("Fp16 ", "fp16"), ("AUTO", "auto")])
def test_a_precision_named_in_capitals_or_with_spaces_is_taken_as_written_in_lower_case(written, meant):
    from napari_lgg_unet.engine.precision import choose
    from napari_lgg_unet.engine.predict import SegmentOptions

    assert TrainConfig(precision=written).precision == meant
    assert _parsed("--precision", written).precision == meant
    predict = cli.build_parser().parse_args(["predict", "--input", "i", "--output", "o", "--precision", written])
    assert SegmentOptions(precision=predict.precision).precision == meant
    assert choose("cpu", written) == choose("cpu", meant)


@pytest.mark.parametrize("written, meant", [("Torch", "torch"), (" OPENVINO ", "openvino")])
def test_every_named_choice_is_taken_in_any_case_as_precision_and_device_are(written, meant):
    """One rule (validate.check_choice) for every named setting: the backend, the loss and the learning-rate
    schedule were refused as 'Torch' or 'Cosine' while 'FP32' and 'CPU' were taken."""
    from napari_lgg_unet.engine.predict import SegmentOptions

    assert SegmentOptions(backend=written).backend == meant
    predict = cli.build_parser().parse_args(["predict", "--input", "i", "--output", "o", "--backend", written])
    assert predict.backend == meant
    assert TrainConfig(loss=" Dice+BCE", lr_schedule="COSINE").lr_schedule == "cosine"
    assert _parsed("--lr-schedule", "Cosine").lr_schedule == "cosine"


def test_a_precision_that_names_none_gets_the_same_message_from_every_entry_point():
    from napari_lgg_unet.engine.precision import choose
    from napari_lgg_unet.engine.predict import SegmentOptions

    messages = []
    for check in (lambda: TrainConfig(precision=" fp8"), lambda: SegmentOptions(precision=" fp8"),
                  lambda: choose("cpu", " fp8")):
        with pytest.raises(InputError) as refused:
            check()
        messages.append(str(refused.value))
    assert set(messages) == {"precision must be one of auto, fp32, bf16, fp16, not ' fp8'"}


def test_a_device_that_names_none_gets_the_same_message_from_the_config_and_the_device_picker():
    from napari_lgg_unet.engine.device import pick_device

    messages = []
    for check in (lambda: TrainConfig(device=" gpu"), lambda: pick_device(" gpu")):
        with pytest.raises(InputError) as refused:
            check()
        messages.append(str(refused.value))
    assert messages[0] == messages[1] == "unknown device ' gpu'; choose one of auto, cpu, cuda, mps (or cuda:N)"
