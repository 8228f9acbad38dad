"""Build, save and load the U-Net. A model is a folder: `config.json` + `model.safetensors`.

Loading reads tensors and JSON only, never pickled code, so a model folder from anyone is safe to open.
"""

from __future__ import annotations

import json
import os
import stat
import uuid
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from .atomic import write_tensors_atomic, write_text_atomic
from .device import pick_device
from .errors import InputError, ModelError, describe, few_names
from .model_input import InputConfig
from .postprocess import PostprocessConfig
from .preprocess import PreprocessConfig
from .records import TrainingRecord
from .validate import check_bool, check_int, check_items, from_json, store, unknown_keys

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "napari-lgg-unet/1"
ARCHITECTURE = "smp.Unet"  # the only network this version builds
DEFAULT_MODEL_NAME = "default"
DEFAULT_MODEL_FOLDER = "lgg-unet-default"
MAX_CONFIG_BYTES = 10_000_000
# what reading a safetensors file raises when it is not one (truncated, garbage, a folder, unreadable)
UNREADABLE_TENSORS = (SafetensorError, OSError, ValueError, RuntimeError)
MAX_DECODER_WIDTH = 1024  # wider decoders only cost memory; refusing early avoids building a huge network


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model and reproduce its inputs and outputs.

    Bad values are an InputError (a setting, e.g. of training); `from_dict` reports a config.json's as a ModelError.
    """

    encoder: str = "resnet18"
    decoder_channels: tuple[int, ...] = (128, 64, 32, 16, 8)
    preprocess: PreprocessConfig = PreprocessConfig()
    postprocess: PostprocessConfig = PostprocessConfig()
    inputs: InputConfig = InputConfig()  # neighbouring slices and click maps besides the slice (model_input.py)
    training: TrainingRecord = field(default_factory=TrainingRecord)
    weights_id: str = ""

    def __post_init__(self) -> None:
        if self.encoder not in smp.encoders.get_encoder_names():
            raise InputError(f"unknown encoder {self.encoder!r}; e.g. resnet18, resnet34, efficientnet-b0")
        widths = check_items("decoder channels", self.decoder_channels)
        check_int("number of decoder stages", len(widths), 3, 5)
        store(self, decoder_channels=tuple(check_int("decoder width", width, 1, MAX_DECODER_WIDTH) for width in widths))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["decoder_channels"] = list(self.decoder_channels)
        return {"format": FORMAT, "architecture": ARCHITECTURE, **data}

    @classmethod
    def from_dict(cls, data: dict, where: str) -> "ModelConfig":
        """Check every value's type and range before anything is built from it; `where` (the file, with its folder)
        begins every message, so the user knows which of their models to fix."""
        if data.get("format") != FORMAT:
            raise ModelError(f"{where} is not a {FORMAT} model (format={data.get('format')!r:.60})")
        if data.get("architecture", ARCHITECTURE) != ARCHITECTURE:  # else its weights read as a U-Net's, mismatched
            raise ModelError(f"{where} describes a {data['architecture']!r:.60} network; this version builds "
                             f"{ARCHITECTURE} models only")
        missing = [key for key in ("encoder", "decoder_channels", "preprocess") if key not in data]
        if missing:
            raise ModelError(f"{where} is incomplete: it has no {', '.join(missing)}")
        # a setting this version would drop may change how the model reads a scan (the training record may not)
        unknown = unknown_keys(cls, {key: value for key, value in data.items()
                                     if key not in ("format", "architecture", "training")})
        if unknown:
            raise ModelError(f"{where} holds settings this version of napari-lgg-unet does not know: "
                             f"{few_names(unknown)}. Misspelt in an edit, correct them; set by a newer version, "
                             "which would segment with them, update napari-lgg-unet to use this model")
        try:
            return from_json(cls, data, ModelError)
        except ModelError as error:
            raise ModelError(f"{where}: {error}") from None


@dataclass
class LoadedModel:
    """A ready network (eval mode) with its config and where it came from."""

    network: torch.nn.Module
    config: ModelConfig
    source: str


def build_network(config: ModelConfig) -> torch.nn.Module:
    """A fresh smp U-Net with no downloaded weights (nothing may be fetched at run time)."""
    try:
        return smp.Unet(
            encoder_name=config.encoder,
            encoder_weights=None,
            encoder_depth=len(config.decoder_channels),
            decoder_channels=list(config.decoder_channels),
            in_channels=config.inputs.channels,
            classes=1,
        )
    except (KeyError, ValueError) as error:
        raise ModelError(f"cannot build a U-Net with encoder {config.encoder!r}: {error}") from None


def with_inputs(
    network: torch.nn.Module, config: ModelConfig, inputs: InputConfig
) -> tuple[torch.nn.Module, ModelConfig]:
    """`network` rebuilt to take `inputs`, behaving exactly as before: the new input channels start with zero weights.

    This is how a plain 3-channel model becomes the start of a 2.5D, click-conditioned one (fine-tuned from there).
    Only growing from the plain inputs (or keeping them) is supported.
    """
    if inputs == config.inputs:
        return network, config
    if config.inputs != InputConfig():
        raise InputError("only a model with plain 3-channel inputs can be given neighbouring slices or clicks")
    new_config = replace(config, inputs=inputs)
    widened = build_network(new_config)
    state = widened.state_dict()
    for key, value in network.state_dict().items():
        if state[key].shape == value.shape:
            state[key] = value
        else:  # the first convolution: old channels first, the new ones zero
            state[key] = torch.zeros_like(state[key])
            state[key][:, : value.shape[1]] = value
    widened.load_state_dict(state)
    return widened.train(network.training), new_config


def save_model(network: torch.nn.Module, config: ModelConfig, folder: str | Path, half: bool = False) -> Path:
    """Write weights then config, each atomically; `half` stores float16 to halve the size.

    Weights and config carry the same fresh `weights_id`, and the weights also carry the config itself: a folder
    caught (or killed) between the two renames still loads, as the new model, instead of pairing new weights with an
    old config (or, on a first save, failing for want of config.json). The installed package's weights folder is
    refused, as `train --out` and `calibrate --model` refuse it: a model saved back where `load_model("default")` read
    it replaced the shipped model for every later use (`save_packaged_default` is the one writer there).
    """
    if not isinstance(network, torch.nn.Module) or not isinstance(config, ModelConfig):
        raise InputError(f"save_model takes a network and its ModelConfig (a LoadedModel's .network and .config), not "
                         f"{type(network).__name__} and {type(config).__name__}")
    half = check_bool("half", half)  # bool("no") is True: a wrong flag would halve the weights silently
    if not isinstance(folder, (str, os.PathLike)) or str(folder) == DEFAULT_MODEL_NAME:
        raise InputError(f"save a model into a folder path, not {folder!r:.60} ('default' names the packaged model, "
                         "and load_model('default') would load that one)")
    check_outside_package(Path(folder), ", or save into a folder outside the package")
    return _save(network, config, Path(folder), half)


def save_packaged_default(network: torch.nn.Module, config: ModelConfig) -> Path:
    """Make `network` the default model the package ships, in half precision (scripts/package_default_model.py): the
    one write into the package's weights folder, which `save_model` and every command refuse."""
    return _save(network, config, default_model_path(), half=True)


def _save(network: torch.nn.Module, config: ModelConfig, folder: Path, half: bool) -> Path:
    _make_model_folder(folder)
    state = {
        k: (v.detach().to("cpu").half() if half and v.is_floating_point() else v.detach().to("cpu")).contiguous()
        for k, v in network.state_dict().items()
    }
    config = replace(config, weights_id=uuid.uuid4().hex)
    metadata = {"format": FORMAT, "weights_id": config.weights_id, "config": json.dumps(config.to_dict())}
    write_tensors_atomic(folder / WEIGHTS_FILE, state, metadata)
    _write_config(config, folder)
    return folder


def write_config(config: ModelConfig, folder: str | Path) -> None:
    """Replace a model folder's config.json atomically (e.g. after calibrating its threshold); never the shipped
    model's (see `save_model`)."""
    check_outside_package(Path(folder))
    _write_config(config, Path(folder))


def _write_config(config: ModelConfig, folder: Path) -> None:
    check_replaceable(folder)
    write_text_atomic(folder / CONFIG_FILE, json.dumps(config.to_dict(), indent=2) + "\n")


def check_outside_package(folder: Path, instead: str = "") -> None:
    """Refuse `folder` when it is the installed package's weights folder or lies inside it (`in_packaged_weights`);
    `instead` adds to the advice what else the user may do, e.g. choose another output folder."""
    if in_packaged_weights(folder):
        raise InputError(f"the default model is part of the installed package, and nothing is written into its "
                         f"weights folder ({folder}); copy the model folder and use the copy{instead}")


def _make_model_folder(folder: Path) -> None:
    """Create `folder` for a save, or refuse it as an InputError: a path of a file (a user pointing at their
    `model.pt`), a file where a folder above it should be, or a place that cannot be written."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is a file, not a folder: a model is saved as a folder ({CONFIG_FILE} and "
                         f"{WEIGHTS_FILE}); choose a folder (the file was left as it is)")
    check_replaceable(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create the model folder {folder}: {error.strerror or describe(error)}; "
                         "choose another folder") from None


def check_replaceable(folder: Path) -> None:
    """Refuse, before anything is written, a folder whose config.json or model.safetensors is not a model of ours.

    Both names are common (a Hugging Face model folder holds exactly these two files, and many tools write a
    config.json), so a model saved into a user's own folder would replace their files. A file of ours is recognised
    by the format its save wrote into it; ours are written whole (atomic.py), so a file without it is someone else's.
    """
    for name, ours in ((CONFIG_FILE, _is_our_config), (WEIGHTS_FILE, _is_our_weights)):
        path = folder / name
        if os.path.lexists(path) and not ours(path):
            raise InputError(f"{path} is not a {FORMAT} model file, and saving a model here would replace it; "
                             "choose another folder (the file was left as it is)")


def _is_our_config(path: Path) -> bool:
    try:
        if not path.is_file() or path.stat().st_size > MAX_CONFIG_BYTES:
            return False
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # ValueError: not UTF-8, not JSON, or a number too long to read
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT


def _is_our_weights(path: Path) -> bool:
    try:
        if not path.is_file():  # a FIFO's open() waits for a writer: the save would hang for ever
            return False
        with safe_open(str(path), "pt") as handle:
            return (handle.metadata() or {}).get("format") == FORMAT
    except UNREADABLE_TENSORS:
        return False


def default_model_path() -> Path:
    return Path(str(resources.files("napari_lgg_unet") / "weights" / DEFAULT_MODEL_FOLDER))


def in_packaged_weights(path: str | Path) -> bool:
    """Whether `path` (links resolved) is the installed package's weights folder or lies anywhere inside it.

    Nothing may be written there, not only the default model's own files: a run folder grown inside the default
    model's folder, or a model beside it, is written into the installed package (which an upgrade replaces) and
    changes what the package ships.
    """
    weights = default_model_path().resolve().parent
    return Path(path).resolve().is_relative_to(weights)


def resolve_model_path(model: str | Path) -> Path:
    """The text 'default' names the model shipped in the package; anything else, and any Path, is a folder path.

    A Path never names the packaged model, so resolving twice gives the same folder: `--model ./default` (a user's
    folder named default) becomes Path('default'), which the loader resolves again and, read as text, took for the
    packaged model (its config paired with the user's weights).
    """
    if not isinstance(model, (str, os.PathLike)):
        raise ModelError(f"a model is given as 'default' or a folder path, not {type(model).__name__} {model!r:.60}")
    if model == "":  # Path('') is the current folder: "--model ''" was told as ". is not a model folder"
        raise ModelError("the model name is empty: give 'default' or a model folder")
    if isinstance(model, str) and model == DEFAULT_MODEL_NAME:
        path = default_model_path()
        if not (path / CONFIG_FILE).is_file():
            raise ModelError("the default model is not installed with this package; pass a model folder instead")
        return path
    return Path(model)


def not_a_model_folder(path: Path) -> str:
    """Why `path`, which is no folder, is no model: a file given where the folder holding it was meant is told as
    such ("model folder not found" named a file the user could see). 'DEFAULT' stays a folder's name (see
    `resolve_model_path`; a user's folder of that name must not be set aside for the packaged model), but where no
    such folder is, the packaged model's name is said."""
    if path.exists():
        return (f"{path} is a file, not a model folder: give the folder that holds the model's {CONFIG_FILE} and "
                f"{WEIGHTS_FILE}")
    other_case = str(path) != DEFAULT_MODEL_NAME and str(path).lower() == DEFAULT_MODEL_NAME  # not `./default`
    hint = f" (the packaged model is named '{DEFAULT_MODEL_NAME}', in lower case)" if other_case else ""
    return f"model folder not found: {path}{hint}"


def _model_file(folder: Path, name: str) -> Path | None:
    """`folder / name` when it is a regular file (links followed), None when nothing has that name; anything else is
    a ModelError naming it.

    A link to nothing (or a loop of links) was taken for a missing config.json, and the config saved in the weights
    was loaded instead: the user's own config, a threshold they set, ignored without a word. A FIFO was told as
    missing too, and opening one waits for a writer for ever.
    """
    path = folder / name
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # NotADirectoryError: `folder` is a file, refused by the caller
        if path.is_symlink():
            raise ModelError(f"{path} is a link to {os.readlink(path)}, which does not exist") from None
        return None
    except OSError as error:  # a loop of links, a folder the user may not enter
        raise ModelError(f"cannot read {path}: {error.strerror or describe(error)}") from None
    if stat.S_ISDIR(mode):
        raise ModelError(f"{path} is a folder; a model's {name} must be a file")
    if not stat.S_ISREG(mode):
        raise ModelError(f"{path} is not a regular file (a named pipe, socket or device); a model's {name} must be "
                         "a file")
    return path


def read_config(folder: str | Path) -> ModelConfig:
    folder = resolve_model_path(folder)
    if not folder.is_dir():
        raise ModelError(not_a_model_folder(folder))
    config_path = _model_file(folder, CONFIG_FILE)
    if config_path is None:
        raise ModelError(f"{folder} is not a model folder: it has no {CONFIG_FILE}")
    if config_path.stat().st_size > MAX_CONFIG_BYTES:
        raise ModelError(f"{config_path} is too large to be a model config")
    try:
        text = config_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ModelError(f"{config_path} is corrupt ({error})") from None
    except OSError as error:  # a disk or network share failing, a file the user may not read
        raise ModelError(f"cannot read {config_path}: {error.strerror or describe(error)}") from None
    return _parse_config(text, str(config_path))


def _parse_config(text: str, where: str) -> ModelConfig:
    """A config from JSON text, fully checked before anything is built from it; `where` names it in errors."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ModelError(f"{where} is corrupt ({error})") from None
    except ValueError:  # json.loads refuses a whole number of 4300+ digits, in words meant for a programmer
        raise ModelError(f"{where} is corrupt (it holds a number too long to read)") from None
    except RecursionError:
        raise ModelError(f"{where} is corrupt (nested too deeply)") from None
    if not isinstance(data, dict):
        raise ModelError(f"{where} is corrupt (not a JSON object)")
    return ModelConfig.from_dict(data, where)


def saved_config(folder: str | Path) -> ModelConfig:
    """The config a model folder (or 'default') is loaded with, read without its tensors: config.json, or the config
    saved in the weights when config.json is missing or belongs to another save (a save killed between its renames)."""
    path = resolve_model_path(folder)
    weights = _model_file(path, WEIGHTS_FILE)
    # A first save killed between its two renames leaves weights without config.json: they carry their config.
    first_save_cut = weights is not None and _model_file(path, CONFIG_FILE) is None
    config = None if first_save_cut else read_config(path)
    if weights is None:
        raise ModelError(f"{path} has a config but no {WEIGHTS_FILE}")
    try:
        with safe_open(str(weights), "pt") as handle:
            metadata = handle.metadata() or {}
    except UNREADABLE_TENSORS as error:
        raise ModelError(f"{weights} is corrupt ({error})") from None
    if config is None or (config.weights_id and metadata.get("weights_id", "") != config.weights_id):
        # caught between writing the weights and config.json: the weights carry the config they were saved with
        if "config" not in metadata:
            raise ModelError(f"{path} is not a model folder: it has no {CONFIG_FILE}" if config is None else
                             f"{path}: its weights and config.json come from different saves; save the model again")
        config = _parse_config(metadata["config"], f"the config saved in {weights}")
    return config


def load_model(folder: str | Path, device: torch.device | str = "cpu") -> LoadedModel:
    """Load a model folder (or 'default') onto `device` ('auto', 'cpu', 'cuda[:N]', 'mps' or a torch.device, checked
    as `pick_device` checks it), in eval mode, as float32."""
    device = pick_device(device)
    path = resolve_model_path(folder)
    config = saved_config(path)
    weights = path / WEIGHTS_FILE
    _check_fits(config, weights)
    try:
        state = load_file(str(weights))
    except UNREADABLE_TENSORS as error:
        raise ModelError(f"{weights} is corrupt ({error})") from None
    network = build_network(config)
    _fill(network, state, weights)
    network.to(device).eval()
    return LoadedModel(network=network, config=config, source=str(folder))


def _check_fits(config: ModelConfig, weights: Path) -> None:
    """Refuse weights that are not `config`'s network, from the tensor names, shapes and number types in the
    safetensors header, before the network is built or the tensors read.

    A config.json naming another encoder built that network whole before its weights were refused: for
    resnext101_32x48d, 830 million parameters (GBs of memory, seconds) next to resnet18 weights. The network is laid
    out on the meta device, which allocates nothing (0.07 s for that one). torch copies whole numbers into a float
    parameter without complaint (a mask of every voxel), so the number type is checked too. Tensors missing, extra or
    of another shape are counted, with a few names: torch's own message lists every name, thousands of characters.
    """
    with torch.device("meta"):
        expected = build_network(config).state_dict()
    try:
        with safe_open(str(weights), "pt") as handle:
            parts = {name: handle.get_slice(name) for name in handle.keys()}
            found = {name: (torch.Size(part.get_shape()), part.get_dtype()) for name, part in parts.items()}
    except UNREADABLE_TENSORS as error:
        raise ModelError(f"{weights} is corrupt ({error})") from None
    unfit = [name for name, (shape, dtype) in found.items() if name in expected and (
        shape != expected[name].shape or dtype.startswith(("F", "BF")) != expected[name].is_floating_point())]
    problems = [f"{len(names)} tensor{'s' * (len(names) > 1)} {what} ({few_names(names)})" for what, names in (
        # torch fills in a missing num_batches_tracked (a BatchNorm count that inference does not use)
        ("missing", [name for name in expected if name not in found and not name.endswith(".num_batches_tracked")]),
        ("not of this network", [name for name in found if name not in expected]),
        ("of another shape or number type", unfit),
    ) if names]
    if problems:
        raise ModelError(f"{weights} does not match its config.json: {'; '.join(problems)}")


def _fill(network: torch.nn.Module, state: dict[str, torch.Tensor], weights: Path) -> None:
    """Load `state`, which `_check_fits` found to be `network`'s, into it as float32, or refuse NaN or infinite
    weights (float64 ones too large for float32 included): they make every probability NaN (an empty mask), refused
    here rather than found in a mask."""
    state = {name: tensor.float() if tensor.is_floating_point() else tensor for name, tensor in state.items()}
    # strict, and it never refuses: `_check_fits` refused every difference, and torch fills in a missing
    # num_batches_tracked itself (strict or not)
    network.load_state_dict(state)
    broken = [name for name, tensor in state.items() if tensor.is_floating_point() and not tensor.isfinite().all()]
    if broken:
        raise ModelError(f"{weights} is corrupt: NaN or infinite weights in {few_names(broken)}")
