"""Every training setting declared once: type, default, range or choices, help text, and whether a resumed run
may change it. The CLI flags, the mapping back to `TrainConfig`, the Train widget's limits and tooltips and the
validation messages are all derived from these declarations.

This module imports no torch (nor numpy), so `lgg-unet --help` and the napari manifest stay fast; the choices other
modules implement (devices, precisions, backends, losses, input variants) are named here for the same reason.

Adding a training setting is one `setting(...)` line in `TrainConfig` (see docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import types
import typing
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable

from .errors import InputError
from .validate import check_bool, check_choice, check_float, check_int, check_items, store

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
BACKEND_CHOICES = ("auto", "torch", "openvino")
LOSS_CHOICES = ("dice", "dice+bce", "bce")
LR_SCHEDULES = ("constant", "cosine")
AS_IS = "as-is"  # a scan as the user hands it over; the other input variants are shift proxies
INPUT_VARIANTS = (AS_IS, "flair-only", "skull-stripped")
SPLITS = ("train", "validation", "test")
MAX_WORKERS = 64
MAX_CONTEXT = 4  # neighbouring slices on each side the network may take (engine/model_input.py)
SEGMENT_BATCH_SIZE = 8  # slices per forward pass when segmenting (SegmentOptions, `lgg-unet predict`)
READ_AHEAD = 2  # scans of a cohort loaded while the model segments another (segment_cohort, `predict --read-ahead`)

MUST_MATCH, MAY_CHANGE = "must match", "may change"  # what a resumed run may do with a setting


@dataclass(frozen=True)
class Setting:
    """What a `TrainConfig` field means: its help text and the values it accepts (the field holds its default).

    `check` replaces the range/choice check for values those cannot describe; `parse` turns command-line text into
    the value; `flag=False` keeps a setting off the CLI (it only makes sense for painted layers).
    """

    help: str
    label: str = ""  # the setting's name in messages; default: the field name with spaces
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    check: Callable[[str, Any], Any] | None = None
    parse: Callable[[str], Any] | None = None
    on_resume: str = MUST_MATCH
    flag: bool = True
    aliases: tuple[str, ...] = ()
    metavar: str | None = None


def setting(default: Any, help: str, **meaning: Any) -> Any:
    """A dataclass field carrying its `Setting` (defaults must be immutable: tuples, frozen configs)."""
    return dataclasses.field(default=default, metadata={"setting": Setting(help, **meaning)})


def settings_of(cls: type) -> dict[str, Setting]:
    """Each declared setting of a config class, by field name, in declaration order."""
    return {f.name: f.metadata["setting"] for f in fields(cls) if "setting" in f.metadata}


def label_of(name: str, declared: Setting) -> str:
    return declared.label or name.replace("_", " ")


def flag_of(name: str) -> str:
    """The `lgg-unet` flag of the setting `name`: `bce_weight` -> `--bce-weight`."""
    return "--" + name.replace("_", "-")


def option_and_flag(name: str, *values: Any, flag: str = "") -> str:
    """An option as an engine message names it to API callers, widget users and CLI users alike, who read the same
    message: the API's parameter (with the values meant) and the CLI's flag, `device='cpu' or 'auto' (--device cpu or
    auto)`, `resume=True (--resume)`, `init (--init)`. `flag`, shown as given, is for a flag not named after the
    parameter: one that stands for the value itself, `option_and_flag("existing", "skip", flag="--skip-existing")`,
    or another word for it, `option_and_flag("folders", flag="--data")`."""
    api = f"{name}={_either(map(repr, values))}" if values else name
    if not flag:
        flag = flag_of(name) + ("" if values in ((), (True,)) else f" {_either(map(str, values))}")
    return f"{api} ({flag})"


def _either(values: typing.Iterable[str]) -> str:
    *others, last = values
    return f"{', '.join(others)} or {last}" if others else last


def field_and_flag(name: str) -> str:
    """The `TrainConfig` setting `name` as `option_and_flag` names it, `stop_after (--stop-after)`; the field alone
    for one with no flag."""
    return option_and_flag(name) if settings_of(TrainConfig)[name].flag else name


@functools.cache
def _types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _value_type(kind: Any) -> Any:
    """`int` for `int | None`: the type a present value must have."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if typing.get_origin(kind) in (typing.Union, types.UnionType) else kind


def check_setting(cls: type, name: str, value: Any) -> Any:
    """Check one value against its declaration and return it as the config keeps it (numpy scalars as Python
    numbers, lists as tuples); raises InputError naming the setting as users read it."""
    declared, kind = settings_of(cls)[name], _types(cls)[name]
    label = label_of(name, declared)
    if value is None and type(None) in typing.get_args(kind):
        return None
    if declared.check is not None:
        return declared.check(label, value)
    if declared.choices:
        return check_choice(label, value, declared.choices)
    if _value_type(kind) is bool:
        return check_bool(label, value)
    if declared.low is None:
        return value  # no range of its own: checked with others (encoder and image size by ModelConfig)
    if _value_type(kind) is int:
        return check_int(label, value, int(declared.low), int(declared.high))
    return check_float(label, value, declared.low, declared.high, low_open=declared.low_open,
                       high_open=declared.high_open)


def check_split(val_fraction: Any, test_fraction: Any) -> None:
    """The one check of the patient split, for the API, the CLI, the widget and `split_patients`."""
    try:
        fractions = [check_float("fraction", f, 0, 1, high_open=True) for f in (val_fraction, test_fraction)]
    except InputError:
        fractions = None
    if fractions is None or sum(fractions) >= 1:
        raise InputError(f"validation fraction {val_fraction!r} and test fraction {test_fraction!r} must each be in "
                         "[0, 1) and add up to less than 1")


def check_device(label: str, value: Any) -> str:
    """A device name as torch spells it: 'CPU', 'Cuda:1' or ' cpu' (a pasted value) name a device as plainly as
    'cpu' does, so every entry point (TrainConfig, `pick_device`, the CLI's --device) takes them, through this check."""
    name = value.strip().lower() if isinstance(value, str) else None
    if not (name in DEVICE_CHOICES or (name is not None and re.fullmatch(r"cuda:\d+", name))):
        raise InputError(f"unknown {label} {value!r}; choose one of {', '.join(DEVICE_CHOICES)} (or cuda:N)")
    return str(name)


def check_variants(label: str, variants: Any) -> tuple[str, ...]:
    variants = check_items(label, variants)
    unknown = [v for v in variants if v not in INPUT_VARIANTS]
    if unknown or not variants or len(set(variants)) != len(variants):
        raise InputError(f"{label} must be one or more distinct names from {', '.join(INPUT_VARIANTS)}; got "
                         f"{', '.join(map(str, variants)) or 'none'}")
    return tuple(str(v) for v in variants)


def check_model_source(label: str, value: Any) -> str:
    """'default' or a model folder, kept as text (a run's config.json records it), so a pathlib.Path is taken."""
    path = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not isinstance(path, str) or not path:
        raise InputError(f"{label} must be a model folder or 'default', not {value!r}")
    return path


def comma_ints(text: str) -> tuple[int, ...]:
    """'128,64,32' -> (128, 64, 32)."""
    try:
        return tuple(int(c) for c in text.split(","))
    except ValueError:
        raise ValueError(f"{text!r} is not whole numbers separated by commas") from None


def comma_names(text: str) -> tuple[str, ...]:
    """'as-is,flair-only' -> ('as-is', 'flair-only'); TrainConfig checks the names."""
    return tuple(v for v in text.split(",") if v)


def negative_is_none(text: str) -> float | None:
    """A number, where a negative one means 'not set' (e.g. the natural tumour / empty mix)."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    return None if value < 0 else value


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges and probabilities of each random transform; `enabled=False` switches every one off.

    Probabilities are per sample and independent. Settings recorded before a field existed load with its default
    (`validate.from_json`).
    """

    enabled: bool = True
    rotation_degrees: float = 15.0
    shift_fraction: float = 0.05
    zoom_fraction: float = 0.25
    shear_degrees: float = 5.0
    horizontal_flip: bool = True
    intensity: float = 0.2  # gamma exp(+-2x) and contrast 1 +- x per channel
    skull_strip: float = 0.25  # zero everything outside the brain and re-normalise
    missing_sequence: float = 0.2  # pre- or post-contrast replaced by FLAIR
    flair_only: float = 0.15  # all three channels = FLAIR
    low_resolution: float = 0.2  # downsample then upsample, per axis by up to `max_downsample`
    max_downsample: float = 3.0
    bias_field: float = 0.3  # smooth multiplicative field, exp(+-bias_strength) at its extremes
    bias_strength: float = 0.3
    outliers: float = 0.1  # a few small bright spots

    def __post_init__(self) -> None:
        shares = ("skull_strip", "missing_sequence", "flair_only", "low_resolution", "bias_field", "outliers",
                  "shift_fraction", "intensity")
        store(self, enabled=check_bool("augment enabled", self.enabled),
              horizontal_flip=check_bool("horizontal flip", self.horizontal_flip),
              **{name: check_float(f"augment {name}", getattr(self, name), 0, 1) for name in shares},
              zoom_fraction=check_float("augment zoom_fraction", self.zoom_fraction, 0, 1, high_open=True),
              rotation_degrees=check_float("augment rotation_degrees", self.rotation_degrees, 0, 180),
              shear_degrees=check_float("augment shear_degrees", self.shear_degrees, 0, 45),
              max_downsample=check_float("augment max_downsample", self.max_downsample, 1, 16),
              bias_strength=check_float("augment bias_strength", self.bias_strength, 0, 3))

    def to_dict(self) -> dict:
        return asdict(self)


def augment_settings(text: str) -> dict:
    """'flair_only=0.3,skull_strip=0.4' -> {'flair_only': 0.3, 'skull_strip': 0.4} (AugmentConfig checks the values)."""
    known = {f.name: _types(AugmentConfig)[f.name] for f in fields(AugmentConfig)}
    settings = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key not in known or not value:
            raise ValueError(f"{item!r} is not KEY=VALUE with KEY one of {', '.join(known)}")
        if known[key] is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"{key} takes true or false, not {value!r}")
            settings[key] = value.lower() in ("true", "1")
        else:
            try:
                settings[key] = float(value)
            except ValueError:
                raise ValueError(f"{key} takes a number, not {value!r}") from None
    return settings


def _check_augment(label: str, value: Any) -> AugmentConfig:
    if not isinstance(value, AugmentConfig):
        raise InputError(f"{label} must be an AugmentConfig, not {value!r}")
    return value


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; defaults follow the reference workflow (Adam 1e-4, batch 32, 10 epochs).

    Under torchrun `batch_size` is per process (the global batch is processes x batch_size, with the same
    learning rate), and an epoch of `steps_per_epoch` optimisation steps draws processes x batch_size x steps slices.

    Every value is checked here, from its declaration, so the CLI, the API and the widget refuse the same things
    with the same words.
    """

    epochs: int = setting(10, "passes over the training slices", low=1, high=100_000, on_resume=MAY_CHANGE)
    stop_after: int | None = setting(None, "end the run after this epoch, with the learning-rate schedule still "
                                           "spanning --epochs (the recipe of a model kept before its schedule "
                                           "ended); --resume goes on", low=1, high=100_000, on_resume=MAY_CHANGE)
    batch_size: int = setting(32, "slices per step and per process (under torchrun the global batch is N times this)",
                              low=1, high=4096)
    lr: float = setting(1e-4, "Adam learning rate", label="learning rate", low=0, high=1, low_open=True)
    lr_schedule: str = setting("constant", "constant, or cosine decay to 0 over all epochs",
                               label="learning-rate schedule", choices=LR_SCHEDULES)
    val_fraction: float = setting(0.1, "share of patients held out for validation (one painted scan: its slices)",
                                  label="validation fraction", low=0, high=1, high_open=True)
    test_fraction: float = setting(0.0, "share of patients set aside, never trained on (0.05 with --val-fraction "
                                        "0.05 gives the reference 90/5/5)", low=0, high=1, high_open=True)
    seed: int = setting(0, "random seed of the split, the sampling and the augmentation", low=0, high=2**32 - 1)
    image_size: int = setting(256, "slices are resized to this many pixels per side")
    encoder: str = setting("resnet18", "U-Net encoder, e.g. resnet18, resnet34, efficientnet-b0")
    decoder_channels: tuple[int, ...] = setting((128, 64, 32, 16, 8), "decoder widths, e.g. 128,64,32,16,8",
                                                parse=comma_ints, metavar="N,...")
    loss: str = setting("dice+bce", "training loss", choices=LOSS_CHOICES)
    bce_weight: float = setting(1.0, "weight of the BCE term in the dice+bce loss", label="BCE weight", low=0, high=100)
    augment: AugmentConfig = setting(AugmentConfig(), "change augmentation settings, e.g. flair_only=0.3,"
                                     "skull_strip=0.4 (docs/training-runs.md)", check=_check_augment,
                                     parse=augment_settings, metavar="KEY=VALUE,...")
    tumour_fraction: float | None = setting(0.5, "share of sampled slices that show tumour (negative: natural mix)",
                                            low=0, high=1, parse=negative_is_none)
    hard_negatives: float = setting(0.0, "share of empty-slice draws weighted by how wrong the model is on them "
                                         "(0: uniform)", label="hard-negative share", low=0, high=1)
    hard_negatives_every: int = setting(1, "epochs between refreshes of the hard-negative weights",
                                        label="hard-negative refresh interval", low=1, high=100_000)
    skip_unlabelled: bool = setting(False, "skip slices without labels in painted layers, else they count as "
                                           "background (masks read from files label every slice: all are kept)",
                                    flag=False)
    workers: int | None = setting(None, "data loading workers (default: the physical cores, shared among the "
                                        "processes of a torchrun job on one machine)", low=0, high=MAX_WORKERS,
                                  on_resume=MAY_CHANGE)
    device: str = setting("auto", f"one of {', '.join(DEVICE_CHOICES)} or cuda:N", check=check_device,
                          on_resume=MAY_CHANGE)
    init: str | None = setting(None, "model folder (or 'default') to fine-tune from", check=check_model_source,
                               on_resume=MAY_CHANGE)
    precision: str = setting("auto", "number format; auto: on a CPU, plain fp32 unless fp32 channels-last or bf16 "
                                     "channels-last (tried only where the CPU has bf16 units) runs over 1.1x as fast, "
                                     "timed once per machine and remembered (LGG_UNET_REMEASURE_PRECISION=1 times "
                                     "again); on CUDA, bf16 where supported, else fp16; on Apple MPS, fp32",
                             choices=PRECISION_CHOICES, on_resume=MAY_CHANGE)
    threads: int | None = setting(None, "CPU threads (default: OMP_NUM_THREADS if set, else the physical cores)",
                                  low=1, high=1024, on_resume=MAY_CHANGE)
    steps_per_epoch: int | None = setting(None, "optimisation steps per epoch (default: one pass over the slices)",
                                          low=1, high=1_000_000)
    resume: bool = setting(False, "continue the run saved in --out", on_resume=MAY_CHANGE)
    keep_last: bool = setting(False, "keep the last epoch's model, not the one with the lowest validation loss (a "
                              "fixed schedule, e.g. a final model trained on every patient)", on_resume=MAY_CHANGE)
    sync_batchnorm: bool = setting(False, "under torchrun on GPUs: batch-norm statistics over all processes' batches",
                                   label="sync batchnorm", on_resume=MAY_CHANGE)
    validation_variants: tuple[str, ...] = setting(
        ("as-is",), f"score validation patients as these inputs ({', '.join(INPUT_VARIANTS)}); the best model has "
        "the lowest mean validation loss over them", label="validation input variants", check=check_variants,
        parse=comma_names, aliases=("--validate-on",), metavar="VARIANT,...")
    # the network's extra inputs (engine/model_input.py, engine/click_training.py)
    context_slices: int = setting(0, "FLAIR of this many neighbouring slices on each side as extra inputs (2.5D)",
                                  low=0, high=MAX_CONTEXT)
    clicks: bool = setting(False, "the network also takes positive / negative click maps, trained with simulated "
                           "clicks on its own errors")
    click_fraction: float = setting(0.5, "share of training samples that get simulated clicks (with --clicks)",
                                    low=0, high=1)
    click_rounds: int = setting(2, "most simulated clicks in a row on a sample (with --clicks), each placed after "
                                   "seeing the previous correction; each batch draws 1 to this many",
                                low=1, high=10, on_resume=MAY_CHANGE)
    click_decoys: float = setting(0.0, "share of clicked samples that also get a click as if from a slice 1-2 away "
                                       "that is wrong on this one (near the tumour's edge), so a click does not "
                                       "override the neighbouring slices it reaches", low=0, high=1,
                                  on_resume=MAY_CHANGE)
    single_slice_fraction: float = setting(0.1, "share of training samples whose neighbours are the slice itself, "
                                           "as a 2D image gives them", low=0, high=1)

    def __post_init__(self) -> None:
        check_split(self.val_fraction, self.test_fraction)  # first, so a bad fraction gets the split's one message
        store(self, **{name: check_setting(type(self), name, getattr(self, name)) for name in settings_of(type(self))})
        if self.stop_after is not None and self.stop_after > self.epochs:
            raise InputError(f"stop after epoch {self.stop_after} is beyond the last epoch ({self.epochs})")
        from .model import ModelConfig  # the encoder names come from the model zoo (torch): import on use
        from .preprocess import PreprocessConfig

        model = ModelConfig(self.encoder, self.decoder_channels, PreprocessConfig(image_size=self.image_size))
        store(self, decoder_channels=model.decoder_channels, image_size=model.preprocess.image_size)

    @property
    def last_epoch(self) -> int:
        """The epoch this run ends after (`stop_after`, else the schedule's end)."""
        return self.stop_after or self.epochs

    def to_dict(self) -> dict:
        data = asdict(self)
        data["decoder_channels"] = list(self.decoder_channels)
        data["validation_variants"] = list(self.validation_variants)
        return data

    def must_match_on_resume(self) -> dict:
        """The settings a resumed run must share with the saved one (the others may change, e.g. epochs)."""
        data = self.to_dict()
        declared = settings_of(type(self))
        return {name: data[name] for name, setting in declared.items() if setting.on_resume == MUST_MATCH}
