import json
import os

import numpy as np
import pytest
import torch
from safetensors import safe_open

from napari_lgg_unet.engine.errors import DeviceError, InputError, ModelError
from napari_lgg_unet.engine.model import CONFIG_FILE, WEIGHTS_FILE, build_network, load_model, read_config, save_model
from napari_lgg_unet.engine.predict import SegmentOptions, segment_volume


def test_save_load_round_trip_gives_identical_outputs(tiny_model_dir, tmp_path):
    model = load_model(tiny_model_dir)
    image = np.random.default_rng(0).random((3, 70, 90)).astype(np.float32)
    first = segment_volume(model, image).probability
    copy = save_model(model.network, model.config, tmp_path / "copy")
    np.testing.assert_array_equal(segment_volume(load_model(copy), image).probability, first)


def test_half_precision_storage_keeps_outputs_within_a_tiny_tolerance(tiny_model_dir, tmp_path):
    model = load_model(tiny_model_dir)
    image = np.random.default_rng(1).random((2, 64, 64)).astype(np.float32)
    half = load_model(save_model(model.network, model.config, tmp_path / "half", half=True))
    fp32 = SegmentOptions(precision="fp32", backend="torch")  # compare storage, not arithmetic
    np.testing.assert_allclose(
        segment_volume(half, image, fp32).probability, segment_volume(model, image, fp32).probability, atol=2e-3
    )
    assert (tmp_path / "half" / WEIGHTS_FILE).stat().st_size < (tiny_model_dir / WEIGHTS_FILE).stat().st_size * 0.6


def test_model_folder_holds_only_json_and_safetensors(tiny_model_dir, tmp_path):
    saved = save_model(load_model(tiny_model_dir).network, load_model(tiny_model_dir).config, tmp_path / "saved")
    assert sorted(p.name for p in saved.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    assert json.loads((saved / CONFIG_FILE).read_text())["format"].startswith("napari-lgg-unet")


def _copy(src, dst):
    dst.mkdir()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_missing_corrupt_or_mismatched_folders_raise_model_errors(tiny_model_dir, tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        load_model(tmp_path / "empty")
    bad_json = _copy(tiny_model_dir, tmp_path / "bad_json")
    (bad_json / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="corrupt"):
        load_model(bad_json)
    bad_weights = _copy(tiny_model_dir, tmp_path / "bad_weights")
    (bad_weights / WEIGHTS_FILE).write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="corrupt"):
        load_model(bad_weights)
    mismatch = _copy(tiny_model_dir, tmp_path / "mismatch")
    config = json.loads((mismatch / CONFIG_FILE).read_text())
    config["decoder_channels"] = [32, 32, 32, 32, 32]
    (mismatch / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ModelError, match="does not match"):
        load_model(mismatch)


def test_a_network_built_from_a_saved_config_has_the_same_parameters(tiny_model_dir):
    config = read_config(tiny_model_dir)
    built = sum(p.numel() for p in build_network(config).parameters())
    loaded = sum(p.numel() for p in load_model(tiny_model_dir).network.parameters())
    assert built == loaded and isinstance(load_model(tiny_model_dir).network, torch.nn.Module)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"preprocess": {"image_size": "256"}}, "image_size must be a whole number"),
        ({"preprocess": {"image_size": 256.0}}, "image_size must be a whole number"),
        ({"preprocess": {"image_size": 8192}}, "image size must be between"),
        ({"postprocess": {"threshold": "0.5"}}, "threshold must be a number"),
        ({"postprocess": {"min_size": "abc"}}, "min_size must be a whole number"),
        ({"postprocess": {"threshold": 2}}, "threshold must be in"),
        ({"postprocess": {"treshold": 0.4}}, "does not know: postprocess.treshold. Misspelt in an edit, correct"),
        ({"decoder_channels": [20000, 64, 32, 16, 8]}, "decoder width must be between"),
        ({"decoder_channels": [0, 64, 32, 16, 8]}, "decoder width must be between"),
        ({"encoder": "resnet9000"}, "unknown encoder"),
    ],
)
def test_a_config_with_wrong_types_or_absurd_values_is_refused_before_building(
    tiny_model_dir, tmp_path, change, message
):
    import json
    import shutil

    from napari_lgg_unet.engine.errors import ModelError

    folder = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    for key, value in change.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=message) as error:
        load_model(folder)
    assert str(error.value).startswith(f"{folder / 'config.json'}")  # which of the user's models to fix


def test_deeply_nested_config_json_is_a_clear_error_not_a_recursion_crash(tiny_model_dir, tmp_path):
    import shutil

    from napari_lgg_unet.engine.errors import ModelError

    folder = tmp_path / "nested"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelError, match="nested too deeply"):
        load_model(folder)


def test_a_folder_caught_between_writing_weights_and_config_loads_as_the_new_model(
    tiny_model_dir, tmp_path, monkeypatch
):
    import shutil
    from dataclasses import replace

    from napari_lgg_unet.engine import model as model_module
    from napari_lgg_unet.engine.model import save_model
    from napari_lgg_unet.engine.postprocess import PostprocessConfig

    folder = tmp_path / "torn"
    shutil.copytree(tiny_model_dir, folder)
    old = load_model(folder)
    monkeypatch.setattr(model_module, "_write_config", lambda *_: None)  # killed before config.json is replaced
    new_config = replace(old.config, postprocess=PostprocessConfig(threshold=0.3))
    save_model(old.network, new_config, folder)
    assert read_config(folder).weights_id == old.config.weights_id  # torn indeed: config.json is the old model's
    loaded = load_model(folder)
    assert loaded.config.postprocess.threshold == 0.3 and loaded.config.weights_id != old.config.weights_id


@pytest.mark.parametrize("folder", [None, 5, ["default"]])
def test_a_model_that_is_no_name_or_path_is_a_model_error(folder):
    with pytest.raises(ModelError, match="a model is given as 'default' or a folder path, not"):
        load_model(folder)


@pytest.mark.parametrize("device", ["gpu", "CUDA:x", ["cpu"]])
def test_loading_onto_a_device_that_names_none_is_our_error(tiny_model_dir, device):
    with pytest.raises(InputError, match="unknown device"):
        load_model(tiny_model_dir, device)


def test_loading_onto_a_missing_gpu_is_a_device_error(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA GPU is available"):
        load_model(tiny_model_dir, "cuda")


@pytest.mark.parametrize("change, phrase", [
    (lambda model: {"half": "no"}, "half must be true or false"),
    (lambda model: {"config": model.config.to_dict()}, "takes a network and its ModelConfig .* not Unet and dict"),
    (lambda model: {"network": None}, "not NoneType and ModelConfig"),
    (lambda model: {"folder": None}, "save a model into a folder path, not None"),
    (lambda model: {"folder": "default"}, "'default' names the packaged model"),
])
def test_save_model_refuses_what_it_cannot_save_as_asked_and_writes_nothing(tiny_model_dir, tmp_path, monkeypatch,
                                                                             change, phrase):
    monkeypatch.chdir(tmp_path)  # where a folder named 'default' would have been written
    model = load_model(tiny_model_dir)
    arguments = {"network": model.network, "config": model.config, "folder": tmp_path / "saved", "half": False}
    with pytest.raises(InputError, match=phrase):
        save_model(**{**arguments, **change(model)})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("foreign", [
    {CONFIG_FILE: b'{"model_type": "bert", "hidden_size": 768}'},  # a Hugging Face model folder's
    {CONFIG_FILE: b"not json at all"},
    {WEIGHTS_FILE: b"someone else's weights"},
])
def test_save_model_refuses_a_folder_holding_files_of_the_same_names_that_are_not_ours(tiny_model_dir, tmp_path,
                                                                                       foreign):
    model = load_model(tiny_model_dir)
    folder = tmp_path / "users_folder"
    folder.mkdir()
    for name, content in foreign.items():
        (folder / name).write_bytes(content)
    before = {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in folder.iterdir()}
    with pytest.raises(
        InputError, match="is not a napari-lgg-unet/1 model file, and saving a model here would replace"
    ):
        save_model(model.network, model.config, folder)
    assert {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in folder.iterdir()} == before


@pytest.mark.parametrize("where, phrase", [
    (lambda user_file: user_file, "model.pt is a file, not a folder: a model is saved as a folder"),
    (lambda user_file: user_file / "model", "cannot create the model folder .*model.pt/model: Not a directory"),
])
def test_save_model_refuses_a_path_where_a_file_is_in_the_way_and_leaves_the_file(tiny_model_dir, tmp_path, where,
                                                                                  phrase):
    model = load_model(tiny_model_dir)
    user_file = tmp_path / "model.pt"
    user_file.write_bytes(b"the user's own checkpoint")
    with pytest.raises(InputError, match=phrase):
        save_model(model.network, model.config, where(user_file))
    assert user_file.read_bytes() == b"the user's own checkpoint" and list(tmp_path.iterdir()) == [user_file]


def test_save_model_replaces_a_model_of_ours(tiny_model_dir, tmp_path):
    model = load_model(tiny_model_dir)
    folder = save_model(model.network, model.config, tmp_path / "model")
    first = read_config(folder).weights_id
    save_model(model.network, model.config, folder)
    assert read_config(folder).weights_id not in ("", first)


def test_writing_a_config_refuses_a_config_json_that_is_not_ours(tiny_model_dir, tmp_path):
    from napari_lgg_unet.engine.model import write_config

    (tmp_path / CONFIG_FILE).write_text('{"name": "my project"}')
    with pytest.raises(InputError, match="is not a napari-lgg-unet/1 model file"):
        write_config(load_model(tiny_model_dir).config, tmp_path)
    assert (tmp_path / CONFIG_FILE).read_text() == '{"name": "my project"}'


@pytest.mark.parametrize("given", ["./default", "default/"])
def test_a_users_folder_named_default_loads_as_itself_when_given_as_a_path(tiny_model_dir, tmp_path, monkeypatch,
                                                                           given):
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path / "default")
    monkeypatch.chdir(tmp_path)
    assert load_model(given).config == read_config(tiny_model_dir)


def test_saving_refuses_a_config_json_with_a_number_too_long_to_read_and_leaves_it(tiny_model_dir, tmp_path):
    text = '{"format": "napari-lgg-unet/1", "weights_id": ' + "9" * 5000 + "}"  # json.loads refuses 4300+ digits
    (tmp_path / CONFIG_FILE).write_text(text)
    with pytest.raises(InputError, match="is not a napari-lgg-unet/1 model file"):
        save_model(load_model(tiny_model_dir).network, read_config(tiny_model_dir), tmp_path)
    assert (tmp_path / CONFIG_FILE).read_text() == text


def test_a_config_json_that_cannot_be_read_is_a_model_error_naming_it(tiny_model_dir, tmp_path, monkeypatch):
    import pathlib
    import shutil

    folder = tmp_path / "unreadable"
    shutil.copytree(tiny_model_dir, folder)
    read_text = pathlib.Path.read_text

    def failing_read(path, *args, **kwargs):
        if path.name == CONFIG_FILE:
            raise PermissionError(13, "Permission denied")
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", failing_read)
    with pytest.raises(ModelError, match=f"cannot read {folder / CONFIG_FILE}: Permission denied"):
        load_model(folder)


def test_weights_of_another_encoder_are_told_in_one_short_line_without_any_download(tiny_model_dir, tmp_path,
                                                                                    monkeypatch):
    import shutil
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("loading a model tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    folder = tmp_path / "other_encoder"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / CONFIG_FILE).read_text())
    (folder / CONFIG_FILE).write_text(json.dumps({**config, "encoder": "efficientnet-b0"}))
    with pytest.raises(ModelError, match=r"does not match its config.json: \d+ tensors missing \(encoder\.") as error:
        load_model(folder)
    assert len(str(error.value)) < 1000 and "\n" not in str(error.value)


@pytest.mark.parametrize("target", ["/nonexistent/config.json", "config.json"], ids=["dangling", "looping"])
def test_a_config_json_link_to_nothing_is_refused_instead_of_loading_the_weights_own_config(tiny_model_dir, tmp_path,
                                                                                           target):
    folder = _copy(tiny_model_dir, tmp_path / "linked")
    (folder / CONFIG_FILE).unlink()
    (folder / CONFIG_FILE).symlink_to(target)  # the user's config (say, a threshold they set) is not there
    with pytest.raises(ModelError, match=f"{folder / CONFIG_FILE}"):
        load_model(folder)


@pytest.mark.parametrize("name", [CONFIG_FILE, WEIGHTS_FILE])
def test_a_named_pipe_in_a_model_folder_is_refused_as_no_file_without_reading_it(tiny_model_dir, tmp_path, name):
    folder = _copy(tiny_model_dir, tmp_path / "piped")
    (folder / name).unlink()
    os.mkfifo(folder / name)  # opening it would wait for a writer for ever
    with pytest.raises(ModelError, match=f"{folder / name} is not a regular file"):
        load_model(folder)


def test_saving_into_a_folder_with_a_named_pipe_refuses_without_opening_the_pipe(tiny_model_dir, tmp_path,
                                                                                  monkeypatch):
    from napari_lgg_unet.engine import model as model_module

    model = load_model(tiny_model_dir)
    folder = tmp_path / "piped"
    folder.mkdir()
    os.mkfifo(folder / WEIGHTS_FILE)
    opened = []

    def no_real_open(path, *args, **kwargs):  # a real open of the pipe would hang this test, not fail it
        opened.append(path)
        raise OSError("opened")

    monkeypatch.setattr(model_module, "safe_open", no_real_open)
    with pytest.raises(InputError, match="is not a napari-lgg-unet/1 model file"):
        save_model(model.network, model.config, folder)
    assert opened == []


def test_only_default_in_lower_case_names_the_packaged_model_and_a_missing_default_folder_is_told_so(
        tiny_model_dir, tmp_path, monkeypatch):
    """'DEFAULT' or 'Default' is a folder's name: read as the packaged model, a user's folder of that name would be
    set aside without a word (on a disk that ignores case, a folder named `default` too, which `./default` loads).
    Where no such folder is, the refusal names the packaged model's name, which the user may have meant."""
    import shutil

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match=r"^model folder not found: DEFAULT \(the packaged model is named 'default', "
                                         r"in lower case\)$"):
        load_model("DEFAULT")
    shutil.copytree(tiny_model_dir, tmp_path / "Default")
    assert load_model("Default").config == read_config(tiny_model_dir)


def test_an_empty_model_name_is_told_as_empty_not_as_the_current_folder():
    with pytest.raises(ModelError, match="the model name is empty"):
        load_model("")


def test_a_config_naming_a_bigger_encoder_is_refused_before_its_network_is_built(tiny_model_dir, tmp_path,
                                                                                  monkeypatch):
    from napari_lgg_unet.engine import model as model_module

    folder = _copy(tiny_model_dir, tmp_path / "bigger")
    config = json.loads((folder / CONFIG_FILE).read_text())
    (folder / CONFIG_FILE).write_text(json.dumps({**config, "encoder": "resnet50"}))  # resnext101_32x48d: 830M
    built_on = []

    def recording_build(config):
        network = build_network(config)
        built_on.append(next(network.parameters()).device.type)
        return network

    monkeypatch.setattr(model_module, "build_network", recording_build)
    with pytest.raises(ModelError, match=r"does not match its config.json: .*of another shape"):
        load_model(folder)
    assert set(built_on) <= {"meta"}  # laid out without memory, never built for real


def test_weights_without_a_batch_count_still_load(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = _copy(tiny_model_dir, tmp_path / "no_count")
    state = load_file(str(folder / WEIGHTS_FILE))
    with safe_open(str(folder / WEIGHTS_FILE), "pt") as handle:
        metadata = handle.metadata()
    save_file({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, folder / WEIGHTS_FILE,
              metadata)
    load_model(folder)


@pytest.mark.parametrize("inside", ["lgg-unet-default", "lgg-unet-default/fine-tuned", "mine"])
def test_save_model_and_write_config_never_write_into_the_installed_packages_weights(tiny_model_dir, tmp_path,
                                                                                      monkeypatch, inside):
    """A researcher who saved a fine-tuned model back where load_model("default") read it replaced the shipped model
    (and `calibrate`'s write_config its threshold) for every later use; `train --out` and `calibrate` refused it."""
    from napari_lgg_unet.engine.model import save_packaged_default, write_config

    weights = tmp_path / "package" / "weights"  # stands in for the installed one, which must not be risked
    default = save_model(load_model(tiny_model_dir).network, read_config(tiny_model_dir), weights / "lgg-unet-default")
    monkeypatch.setattr("napari_lgg_unet.engine.model.default_model_path", lambda: default)
    before = {p.relative_to(weights): p.read_bytes() for p in weights.rglob("*") if p.is_file()}
    model = load_model("default")
    with pytest.raises(InputError, match="default model is part of the installed package.*outside the package"):
        save_model(model.network, model.config, weights / inside)
    with pytest.raises(InputError, match="default model is part of the installed package"):
        write_config(model.config, weights / inside)
    assert {p.relative_to(weights): p.read_bytes() for p in weights.rglob("*") if p.is_file()} == before
    assert save_packaged_default(model.network, model.config) == default  # the packaging script's way in
    assert load_model("default").config.weights_id != model.config.weights_id
