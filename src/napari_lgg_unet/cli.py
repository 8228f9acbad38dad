"""`lgg-unet train | predict | evaluate | calibrate | view`: the engine without a GUI (and `view`, which opens it).

Errors a user can cause print one line on stderr and exit with code 2; Ctrl-C, SIGTERM or SIGUSR1 during
training stops it between steps (or validation or hard-negative scoring batches) and keeps the best model (exit
code 0); during any other command (or while train lists and loads its patients) it ends it with one line,
`lgg-unet: interrupted`, and exit code 130, writing no partial output. Under torchrun only
rank 0 prints progress, and an error's line comes once, not from every process (engine/distributed.says_error).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import typing
import warnings
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from . import __version__
from .engine.errors import InputError, InputWarning, LggUnetError, few_names
from .engine.events import EpochEnd, Finished, Prepared, Step
from .engine.settings import (
    AS_IS, BACKEND_CHOICES, INPUT_VARIANTS, READ_AHEAD, SEGMENT_BATCH_SIZE, SPLITS, AugmentConfig, Setting, TrainConfig,
    check_variants, comma_names, flag_of, label_of, settings_of,
)
from .engine.validate import check_choice

ALL_PATIENTS = "all"  # calibrate --split: every patient of --data, for a model that records no split

if TYPE_CHECKING:  # the heavy parts (torch, the model zoo, napari) are imported by the commands that need them
    import torch
    from tqdm import tqdm

    from .engine.distributed import Group
    from .engine.evaluate import PatientResult
    from .engine.io import ScanSource
    from .engine.model import LoadedModel
    from .engine.postprocess import PostprocessConfig
    from .engine.predict import SegmentOptions

SPEED_SETTINGS = ("device", "precision", "threads")  # TrainConfig's declarations, shared by every command that runs
# what train, evaluate and calibrate read: every format find_scans knows, not only Kaggle folders
SCANS_WITH_MASKS = ("scans with masks: a Kaggle root, a folder of case folders, an nnU-Net dataset, or one "
                    "patient or case folder")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        """One line, not usage + error; under torchrun once, not from every process of the job, each of which was
        given the same command line (`_says_error`)."""
        line = f"{self.prog}: error: {message}\n"
        self.exit(2, line if _says_error(InputError(message)) else None)


def _variants(text: str) -> tuple[str, ...]:
    """The input variants a flag names, by the engine's rule (`check_variants`), refused in argparse's words."""
    try:
        return check_variants("input variants", comma_names(text))
    except InputError:
        raise argparse.ArgumentTypeError(f"{text!r}: give one or more of {', '.join(INPUT_VARIANTS)}, comma-separated, "
                                         "each once") from None


def _path_text(text: str) -> str:
    """A file or folder name as typed; an empty or blank one is refused (Path("") is the working folder, where
    `--output ""` wrote a cohort's masks and summary.csv)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty; give a file or folder name (. for the working folder)")
    return text


def _path(text: str) -> Path:
    return Path(_path_text(text))


def _file(text: str) -> Path:
    """A file's name: refused when empty or blank like any path, without the hint that "." names the working
    folder, which is no file; and when it ends in / (a folder), which Path drops: `--json reports/` wrote a file
    named `reports`."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty; give a file name")
    if text.endswith(("/", os.sep)):
        raise argparse.ArgumentTypeError(f"{text} ends in / (a folder); give a file name")
    return Path(text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lgg-unet", description="Brain tumour (LGG) segmentation with a U-Net.")
    parser.add_argument("--version", action="version", version=f"lgg-unet {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(commands.add_parser("train", help="train or fine-tune a model on scans with masks"))
    _add_calibrate(commands.add_parser("calibrate", help="choose the threshold and clean-up on validation patients"))
    view = commands.add_parser("view", help="open napari with the plugin on a scan (default: the sample patient)")
    view.add_argument("path", nargs="?", type=_path, default=None,
                      help="scan to open (patient / case / DICOM folder, TIFF, NIfTI)")
    view.add_argument("--segment", action="store_true", help="segment it with the default model right away")
    _add_predict(commands.add_parser("predict", help="segment scans and write masks (on the scan's grid for "
                                                     "medical volumes, TIFF 0/255 otherwise)"))
    _add_evaluate(commands.add_parser("evaluate", help="score a model on patient folders that have masks"))
    return parser


def _add_train(train: argparse.ArgumentParser) -> None:
    """`train`: where to read and write, then one flag per TrainConfig setting, from its declaration."""
    train.add_argument("--data", required=True, type=_path, help=SCANS_WITH_MASKS)
    train.add_argument("--out", required=True, type=_path, help="model folder to write (best checkpoint)")
    _add_setting_flags(train, settings_of(TrainConfig))
    train.add_argument("--no-augment", action="store_true", help="switch augmentation off")


def _add_setting_flags(parser: argparse.ArgumentParser, declared: dict[str, Setting]) -> None:
    """A flag named after each setting (`bce_weight` -> `--bce-weight`), except those marked flag=False."""
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    kinds = typing.get_type_hints(TrainConfig)
    for name, setting in declared.items():
        if setting.flag:
            parser.add_argument(flag_of(name), *setting.aliases,
                                **_flag_options(setting, label_of(name, setting), defaults[name], kinds[name]))


def _flag_options(setting: Setting, label: str, default: Any, kind: Any) -> dict[str, Any]:
    """argparse options for one setting: its parser (or type), choices, default and help with the default shown. A
    '%' in the help is escaped: argparse formats help with %, and '10% of' made every --help of the command crash."""
    text = setting.help.replace("%", "%%")
    if kind is bool:
        return {"action": argparse.BooleanOptionalAction, "default": default, "help": text}
    if isinstance(default, AugmentConfig):
        default = {}  # --augment holds changes to AugmentConfig's own defaults
    shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
    options = {
        "type": (
            _explained(setting.parse) if setting.parse
            else next(t for t in (int, float, str) if t is kind or t in typing.get_args(kind))
        ),
        "default": default, "metavar": setting.metavar,
        "help": text + ("" if shown in (None, {}) else f" (default: {shown})"),
    }
    if setting.choices:  # argparse's own `choices` compares exactly; the engine's check takes 'FP32' as fp32
        options["type"] = _choice_of(label, setting.choices)
        options["metavar"] = setting.metavar or "{" + ",".join(setting.choices) + "}"
    return options


def _choice_of(label: str, choices: tuple[str, ...]) -> Callable[[str], str]:
    return _explained(lambda text: check_choice(label, text, choices, error=ValueError))


def _explained(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """A setting's text parser whose ValueError message argparse shows as is (instead of 'invalid parse value')."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


def _add_calibrate(calibrate: argparse.ArgumentParser) -> None:
    calibrate.add_argument("--model", required=True, help="model folder to update (its config.json)")
    calibrate.add_argument("--data", type=_path, help=f"{SCANS_WITH_MASKS}; not with --like")
    calibrate.add_argument("--like", metavar="MODEL", help="adopt the threshold and clean-up already chosen for this "
                           "model of the same recipe (for a model trained on every patient: it has no validation "
                           "patients of its own); refused when the two differ in network, inputs, image size or "
                           "loss")
    calibrate.add_argument("--split", choices=(*SPLITS, ALL_PATIENTS), default="validation",
                           help="patients of this split recorded in the model's config (default: validation); "
                                f"{ALL_PATIENTS}: every patient in --data, for a model trained elsewhere (give "
                                "patients it was not trained on)")
    _add_setting_flags(calibrate, {"device": settings_of(TrainConfig)["device"]})
    calibrate.add_argument("--input-variants", type=_variants, default=(AS_IS,), metavar="VARIANT,...",
                           help=f"choose the setting best on average over these inputs ({', '.join(INPUT_VARIANTS)}; "
                           f"default: {AS_IS})")


def _add_inference_options(sub: argparse.ArgumentParser) -> None:
    """What predict and evaluate share: the model, how it runs, and the clean-up (default: the model's own)."""
    sub.add_argument("--model", default="default", help="model folder or 'default'")
    _add_setting_flags(sub, {name: settings_of(TrainConfig)[name] for name in SPEED_SETTINGS})
    sub.add_argument("--batch-size", type=int, default=SEGMENT_BATCH_SIZE,
                     help=f"slices per forward pass (default: {SEGMENT_BATCH_SIZE})")
    sub.add_argument("--backend", type=_choice_of("backend", BACKEND_CHOICES), default="auto",
                     metavar="{" + ",".join(BACKEND_CHOICES) + "}",
                     help="'auto' uses OpenVINO on the CPU when the fast-cpu extra is installed, else PyTorch "
                     "(default: auto)")
    sub.add_argument("--tta", action="store_true", help="average with the horizontally flipped scan")
    sub.add_argument("--threshold", type=float, default=None, help="default: the model's own")
    sub.add_argument("--min-size", type=int, default=None,
                     help="drop tumour pieces smaller than this (voxels; default: the model's own)")
    sub.add_argument("--keep-largest", action=argparse.BooleanOptionalAction, default=None,
                     help="keep only the largest 3D tumour piece (default: the model's own)")
    sub.add_argument("--min-confidence", type=float, default=None,
                     help="drop tumour pieces whose highest probability is below this (default: the model's own)")


def _add_predict(sub: argparse.ArgumentParser) -> None:
    _add_inference_options(sub)
    sub.add_argument("--input", required=True, type=_path,
                     help="scan (patient / case / DICOM folder, TIFF, NIfTI) or a folder of scans")
    sub.add_argument("--output", required=True, type=_path_text,
                     help="mask file: .nii.gz/.nii/.nrrd/.mha keep the scan's geometry, .tif/.tiff 0/255; a folder "
                     "(one ending in /, an existing one, or any name of no mask format when --input is a folder of "
                     "scans, even of one) gets <scan>_mask files and summary.csv; missing folders are made")
    existing = sub.add_mutually_exclusive_group()  # keep or replace: asking for both is a mistake, not a choice
    existing.add_argument("--skip-existing", action="store_true",
                          help="folder of scans: keep the finished masks already in --output and segment only the "
                          "other scans (continue a killed job); summary.csv is rewritten for all of them (refused when "
                          "lgg-unet did not write it), and a mask file that does not fit its scan is refused")
    existing.add_argument("--overwrite", action="store_true",
                          help="replace an --output file that exists, or (folder of scans) the masks of these scans "
                          "and summary.csv already in --output. Without it or --skip-existing, predict refuses to "
                          "replace any file; other files in --output are never touched")
    sub.add_argument("--read-ahead", type=int, default=READ_AHEAD,
                     help=f"folder of scans: scans loaded ahead while the model runs (default: {READ_AHEAD})")


def _add_evaluate(sub: argparse.ArgumentParser) -> None:
    _add_inference_options(sub)
    sub.add_argument("--data", required=True, type=_path, help=SCANS_WITH_MASKS)
    sub.add_argument("--split", choices=SPLITS, default=None,
                     help="only the patients of this split recorded in the model's config")
    sub.add_argument("--input-variant", choices=INPUT_VARIANTS, default=AS_IS,
                     help=f"score a shift proxy: the FLAIR channel alone, or skull-stripped scans (default: {AS_IS})")
    sub.add_argument("--json", type=_file, default=None, help="write the results here (a new file)")
    sub.add_argument("--overwrite", action="store_true", help="replace a --json file that exists")


def _segment_options(args: argparse.Namespace, default: PostprocessConfig) -> SegmentOptions:
    """The typed inference options from the command line; unset clean-up options take the model's own."""
    from .engine.postprocess import PostprocessConfig
    from .engine.predict import SegmentOptions

    post = PostprocessConfig(
        threshold=default.threshold if args.threshold is None else args.threshold,
        min_size=default.min_size if args.min_size is None else args.min_size,
        keep_largest=default.keep_largest if args.keep_largest is None else args.keep_largest,
        min_confidence=default.min_confidence if args.min_confidence is None else args.min_confidence,
    )
    return SegmentOptions(batch_size=args.batch_size, tta=args.tta, postprocess=post, precision=args.precision,
                          backend=args.backend)


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The training settings a `train` command line asks for (TrainConfig checks them)."""
    values = {name: getattr(args, name) for name, setting in settings_of(TrainConfig).items() if setting.flag}
    changes = {**values["augment"], **({"enabled": False} if args.no_augment else {})}
    return TrainConfig(**{**values, "augment": AugmentConfig(**changes)})


def _run_train(args: argparse.Namespace) -> int:
    from .engine.device import pick_device
    from .engine.distributed import launched_ranks, stop_on_signals
    from .engine.io import check_masks, existing_path, find_scans, load_scan
    from .engine.outputs import check_output
    from .engine.run_folder import RunFolder
    from .engine.train import train_model

    config = train_config(args)
    # the model, its lock and history written into the data would be read as part of it, or a patient's slices
    # replaced; the scans count one by one too, as a root of links to patient folders does not hold them
    sources = find_scans(args.data, require_masks=True)  # listed once (a DICOM folder's every header is read)
    check_masks(sources, "to learn from")  # every patient without one named at once, before any is loaded
    check_output(args.out, [existing_path(args.data), *sources])
    RunFolder(args.out).check_writable()  # the training checks again under the lock; this is before the scans load
    pick_device(config.device)
    main_process = launched_ranks().is_main
    if main_process:
        print(f"loading patients from {args.data} ...", flush=True)
    scans = [load_scan(source, require_mask=True) for source in sources]
    progress = _TrainingProgress()
    with stop_on_signals(_say_stopping if main_process else None, ended=args.stopped) as stop:
        try:
            for event in train_model(scans, config, args.out, stop):
                if main_process:
                    progress.show(event)
        finally:
            progress.close()
    return 0


def _say_stopping() -> None:
    print("stopping after the current step or batch (of validation or hard-negative scoring); a finished epoch's "
          "model is kept, and --resume continues from it", file=sys.stderr, flush=True)


class _TrainingProgress:
    """A progress bar per epoch on a terminal; plain lines every 10% of an epoch in a log file."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def show(self, event: Prepared | Step | EpochEnd | Finished) -> None:
        from tqdm import tqdm

        match event:
            case Prepared(message=message):
                print(message, file=sys.stderr)
            case Step(epoch=epoch, epochs=epochs, step=step, steps=steps, loss=loss, eta_seconds=eta):
                if self.bar is None:
                    self.bar = tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", unit="step", disable=None)
                self.bar.update(1)
                self.bar.set_postfix(loss=f"{loss:.4f}")
                if self.bar.disable and step % max(1, steps // 10) == 0:
                    print(f"epoch {epoch}/{epochs} step {step}/{steps}: loss {loss:.4f}, about {eta / 60:.0f} min left",
                          file=sys.stderr, flush=True)
            case EpochEnd(epoch=epoch, record=record, best_epoch=best):
                self.close()
                scores = record.main_validation
                val = "" if scores is None else f"val loss {scores.loss:.4f}, val Dice {scores.dice:.3f}, "
                print(f"epoch {epoch}: train loss {record.train_loss:.4f}, {val}best epoch {best}", file=sys.stderr)
            case Finished(stopped=stopped, message=message):
                print(f"{'stopped: ' if stopped else ''}{message}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _load_for_inference(args: argparse.Namespace, device: torch.device, main_process: bool = True
                        ) -> tuple[LoadedModel, SegmentOptions]:
    """Threads, model and options for predict and evaluate; the main process says what will run."""
    from .engine.device import set_threads
    from .engine.model import load_model
    from .engine.predict import runs_on

    set_threads(args.threads)
    model = load_model(args.model, device)
    options = _segment_options(args, model.config.postprocess)
    if main_process:
        print(f"segmenting on {runs_on(model, options)}", flush=True)
    return model, options


def _run_predict(args: argparse.Namespace) -> int:
    from .engine.device import pick_device
    from .engine.distributed import launched_ranks, process_group
    from .engine.io import existing_path, find_scans, is_one_scan
    from .engine.listing import listing
    from .engine.outputs import check_not_the_input, check_output, model_folders

    if args.read_ahead < 0:  # refused for one scan too, which reads none ahead: not taken without a word
        raise InputError("--read-ahead must be 0 or more")
    args.input = existing_path(args.input)  # a missing input or a link loop is refused before its path is resolved
    # `out/` names a folder even while none exists (Path drops the slash): a mask file named `out` would lose it
    as_folder = args.output.endswith(("/", os.sep))
    args.output = Path(args.output)
    check_not_the_input(args.output, args.input)
    check_output(args.output, model_folders(args.model), what="a model folder")  # a mask file, or a folder of them
    device = pick_device(args.device)
    if not launched_ranks().is_main and _names_a_mask_file(args.output, as_folder):
        return 0  # one scan's mask, or rank 0's refusal: before listing --input (every header of a DICOM folder)
    with listing():  # one listing: a DICOM folder's headers are read once for both questions
        sources = find_scans(args.input, output=args.output)  # an earlier run's masks inside the input are no scans
        if not sources:
            raise InputError(f"{args.input} holds no scans outside --output {args.output}")
        folder_of_scans = not is_one_scan(args.input)
    if _output_is_a_folder(args, sources, as_folder, folder_of_scans):  # one <scan>_mask file each, in --output
        with process_group(args.device) as group:
            return _predict_cohort(args, sources, group)
    if not launched_ranks().is_main:  # one scan is one process's work: the others wrote the same mask, and printed
        return 0  # the same lines, with it (docs/scale-out.md); rank 0 checks the output and says what went wrong
    return _predict_one_scan(args, sources, folder_of_scans, device)


def _predict_one_scan(args: argparse.Namespace, sources: list[ScanSource], folder_of_scans: bool,
                      device: torch.device) -> int:
    """One scan's mask written to the file --output, once its name and place are checked and the scan is read."""
    from .engine.cohort import segment_scan
    from .engine.formats import check_mask_name
    from .engine.io import check_mask_target, load_scan, write_mask
    from .engine.outputs import check_output, output_path

    check_output(args.output, sources)
    if folder_of_scans and output_path(args.output).is_relative_to(args.input.resolve()):
        raise InputError(f"--output {args.output} would lie in {args.input}, the folder of scans read, where the next "
                         "run on it would take the mask for a scan or for a scan's manual mask; write it elsewhere")
    check_mask_name(args.output, hint=", or end --output with / for a folder of masks")
    hint = " (--skip-existing keeps the masks in a folder given as --output)" if args.skip_existing else ""
    _check_new_file(args.output, "--output", args.overwrite, hint)
    (source,) = sources
    scan = load_scan(source)
    check_mask_target(args.output, scan)  # its header may forbid the format asked for (an NRRD of a NIfTI scan)
    model, options = _load_for_inference(args, device)
    done = segment_scan(model, scan, options)
    if done.scan.geometry is not None:  # which file or DICOM series fed each channel (a study has several series)
        print("; ".join(f"{sequence}: {source}" for sequence, source in done.scan.geometry.sources))
    write_mask(args.output, done.result.mask, done.scan)
    print(f"wrote {args.output}")
    return 0


def _output_is_a_folder(args: argparse.Namespace, sources: list[ScanSource], as_folder: bool,
                        folder_of_scans: bool) -> bool:
    """Whether predict writes a folder of masks (and summary.csv) rather than one mask file: for several scans, an
    existing folder, a name ending in / (`as_folder`), or a new name of no mask format when --input is a folder of
    scans (`folder_of_scans`), even of one (one scan's `--output mask` is a mask file named wrongly, refused by its
    name). A file where a folder is meant is refused here: it would be replaced, or a folder named `masks.tif` made."""
    from .engine.formats import file_format

    new_folder = folder_of_scans and not args.output.exists() and not file_format(args.output)
    if not (len(sources) > 1 or args.output.is_dir() or as_folder or new_folder):
        return False
    if as_folder and args.output.is_file():  # not "give a folder": the user did, by the slash
        raise InputError(f"--output {args.output}/ ends in / (a folder), but {args.output} is a file; give a folder")
    if _names_a_mask_file(args.output, as_folder):
        raise InputError(f"--input {args.input} holds {len(sources)} scans; give a folder as --output, not a file "
                         f"name ({args.output.name})")
    return True


def _names_a_mask_file(output: Path, as_folder: bool) -> bool:
    """Whether --output can only be one scan's mask file, whatever --input holds: an existing file, or a new name of
    a file format not ending in / (`as_folder`). Told from the output alone, so the ranks of a torchrun job other than
    0 end before listing an input that one process segments (`_output_is_a_folder` refuses it for several scans)."""
    from .engine.formats import file_format

    return output.is_file() or (not as_folder and not output.exists() and file_format(output) is not None)


def _check_new_file(path: Path, flag: str, overwrite: bool, hint: str = "") -> None:
    """Refuse a file output before any work: one that exists (it may be a user's own file) unless `overwrite`, a
    folder of that name, a path through a file, or one in a folder this user may not write (a shared data folder, a
    read-only disk). The last three would fail only when the file is written, after the whole run, with the operating
    system's word ('File exists', 'Permission denied')."""
    if path.is_dir():
        raise InputError(f"{flag} {path} is a folder; give a file name")
    if not overwrite and os.path.lexists(path):
        raise InputError(f"{flag} {path} already exists; give --overwrite to replace it{hint}")
    folder = next((parent for parent in path.parents if parent.exists()), None)
    if folder is not None and not folder.is_dir():
        raise InputError(f"{flag} {path} cannot be written: {folder} is a file, not a folder")
    if folder is not None and not os.access(folder, os.W_OK | os.X_OK):  # the file, or the folders it needs, go here
        raise InputError(f"{flag} {path} cannot be written: {folder} is not writable for you; choose another place")


def _predict_cohort(args: argparse.Namespace, cases: list[ScanSource], group: Group) -> int:
    """A folder of scans: this process's share, a progress bar in cases/s (a line per case in a log file) on rank 0,
    then `summary.csv` beside the masks."""
    from tqdm import tqdm

    from .engine.batch_predict import (SUMMARY_FILE, CleanUpStopped, SummaryFailed, SummaryStopped, claimed_output,
                                       missing_figures)

    existing = "skip" if args.skip_existing else "overwrite" if args.overwrite else "refuse"
    with claimed_output(args.output, cases, group, existing) as claimed:  # its refusals come before the model loads
        model, options = _load_for_inference(args, group.device, group.is_main)
        share = len(group.share(cases))
        bar = tqdm(total=share, unit="case", disable=None if group.is_main else True,
                   bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}]")
        done = 0
        try:  # closed here, not when collected: a failed run removes its masks before the folder is let go
            with bar, contextlib.closing(claimed.segment(model, options, args.read_ahead)) as summaries:
                for done, summary in enumerate(summaries, 1):
                    bar.update(1)
                    if bar.disable and group.is_main and summary is not None:
                        print(f"{summary.case}: {summary.slices} slices, {summary.tumour_voxels} tumour voxels, "
                              f"{summary.seconds:.2f} s", file=sys.stderr, flush=True)
        except (SummaryStopped, SummaryFailed, CleanUpStopped):  # they say what is on disk themselves
            raise
        except KeyboardInterrupt:  # say what became of the finished masks: an hour of work may hang on it
            raise KeyboardInterrupt(_stopped_cohort(args.output, existing)) from None
        except (LggUnetError, OSError) as error:  # a case that failed after others finished: the same, on its line
            if existing != "skip" and done:
                error.add_note(_stopped_cohort(args.output, existing, "failed"))
            raise
    if group.is_main:
        print(f"masks of {len(cases)} cases in {args.output}, summary in {args.output / SUMMARY_FILE}")
        if note := missing_figures(args.output):
            print(f"lgg-unet: {note}", file=sys.stderr)
    return 0


def _stopped_cohort(output: Path, existing: str, ended: str = "stopped") -> str:
    """What a cohort stopped between cases, or `ended` otherwise (failed at a case), left in `output`, and what running
    the same command again does. A failure said only its case's error, and 198 finished masks went without a word."""
    if existing == "skip":
        return f"the finished masks stay in {output}; the same command segments the rest"
    if existing == "overwrite":  # a replaced mask's old content is gone: removing the new one would lose both
        return (f"the masks this run added were removed, and those it replaced stay in {output} as it wrote them; the "
                "same command segments every case again (with --skip-existing instead, it keeps them and segments "
                "the rest)")
    return ("the masks this run made were removed, and the same command starts again from the first case (with "
            f"--skip-existing a {ended} run keeps its finished masks, and the same command segments the rest)")


def _evaluation_folders(args: argparse.Namespace, model: LoadedModel, main_process: bool = True) -> list[Path]:
    """The patients --data and --split name; the main process says which of the split's are missing."""
    from .engine.io import find_scans

    folders = find_scans(args.data, require_masks=True)
    if args.split and args.split != ALL_PATIENTS:
        names = set(model.config.training.patients(args.split))
        if not names:
            instead = "leave out --split" if args.command == "evaluate" else f"give --split {ALL_PATIENTS}"
            raise InputError(f"the model's config records no {args.split} patients (it was not trained with this "
                             f"project's split); to use every patient in {args.data}, {instead}")
        folders = [f for f in folders if f.name in names]
        if not folders:
            raise InputError(f"none of the model's {args.split} patients are in {args.data}")
        missing = sorted(names - {f.name for f in folders})
        if missing and main_process:  # a mean over fewer patients than the split's
            print(f"{len(folders)} of the model's {len(names)} {args.split} patients are in {args.data}; not there: "
                  f"{few_names(missing)}", file=sys.stderr)
    return folders


def _run_evaluate(args: argparse.Namespace) -> int:
    import json

    from .engine.atomic import write_text_atomic
    from .engine.device import cpu_model
    from .engine.distributed import process_group
    from .engine.evaluate import report
    from .engine.predict import runs_on
    from .engine.io import find_scans
    from .engine.listing import listing
    from .engine.outputs import check_output, model_folders

    with listing():  # --data listed for --json's check and for the run: a DICOM folder's headers are read once
        if args.json:  # not onto any scan under --data (the split's or not), nor into a model folder; before the run
            check_output(args.json, find_scans(args.data, require_masks=True))
            check_output(args.json, model_folders(args.model), what="a model folder")
            _check_new_file(args.json, "--json", args.overwrite)
        with process_group(args.device) as group:  # under torchrun each process scores its share of the patients
            model, options = _load_for_inference(args, group.device, group.is_main)
            results = _evaluated_patients(args, model, options, group)
            summary = report(results)
    if not group.is_main:
        return 0
    print(f"{_patients(len(results))}: mean Dice {summary['mean_dice']:.3f}, median Dice "
          f"{summary['median_dice']:.3f}, mean IoU {summary['mean_iou']:.3f}, mean accuracy "
          f"{summary['mean_accuracy']:.4f}, {summary['slices_per_second']:.1f} slices/s")
    if args.json:  # what was scored, so that result files can be told apart by their content
        run = {"model": str(args.model), "weights_id": model.config.weights_id, "split": args.split or ALL_PATIENTS,
               "input_variant": args.input_variant, "tta": options.tta, "runs_on": runs_on(model, options),
               "cpu": cpu_model(), "postprocess": asdict(options.postprocess or model.config.postprocess)}
        write_text_atomic(args.json, json.dumps({"run": run, **summary}, indent=2) + "\n")
    return 0


def _evaluated_patients(args: argparse.Namespace, model: LoadedModel, options: SegmentOptions, group: Group
                        ) -> list[PatientResult]:
    """Every patient's scores, a row each on the main process: its own as they come (a bar counts them on a
    terminal), then, under torchrun, those of the other processes' shares once every process has finished."""
    from tqdm import tqdm

    from .engine.evaluate import evaluate_patients, gather_results

    folders = _evaluation_folders(args, model, group.is_main)
    results = evaluate_patients(model, folders, options, args.input_variant, group)  # patients without masks refused
    if group.is_main:
        print(f"{'patient':<28} {'slices':>6} {'dice':>6} {'iou':>6} {'acc':>7}")
    mine = []
    for result in tqdm(results, total=len(group.share(folders)), unit="patient", leave=False,
                       disable=None if group.is_main else True):
        mine.append(result)
        if group.is_main:
            tqdm.write(_patient_row(result))
    gathered = gather_results(group, folders, mine)
    if group.is_main:
        shown = {result.name for result in mine}
        for result in gathered:
            if result.name not in shown:
                print(_patient_row(result))
    return gathered


def _patient_row(result: PatientResult) -> str:
    s = result.scores
    return f"{result.name:<28} {result.slices:>6} {s.dice:6.3f} {s.iou:6.3f} {s.accuracy:7.4f}"


def _patients(count: int) -> str:
    return f"{count} patient{'' if count == 1 else 's'}"


def _run_calibrate(args: argparse.Namespace) -> int:
    from .engine.calibrate import adopt_calibration, calibrate
    from .engine.distributed import launched_ranks, process_group
    from .engine.model import load_model, resolve_model_path
    from .engine.run_folder import CALIBRATION, RunFolder

    RunFolder(resolve_model_path(args.model)).check_writable(CALIBRATION)
    if (args.like is None) == (args.data is None):
        raise InputError("give either --data (patients to calibrate on) or --like (a model whose calibration to adopt)")
    if args.like is not None:
        if not launched_ranks().is_main:  # copying a calibration is one process's work (docs/scale-out.md)
            return 0
        best = adopt_calibration(args.like, resolve_model_path(args.model))
        print(f"threshold {best.threshold}, min size {best.min_size}, min confidence {best.min_confidence}, "
              f"keep largest {best.keep_largest}: adopted from {args.like}; saved in {args.model}")
        return 0
    with process_group(args.device) as group:  # under torchrun each process segments its share of the patients
        model = load_model(args.model, group.device)
        best, record = calibrate(model, _evaluation_folders(args, model, group.is_main),
                                 resolve_model_path(args.model), variants=args.input_variants, group=group)
    if not group.is_main:
        return 0
    largest = record.best_keep_largest
    print(f"threshold {best.threshold}, min size {best.min_size}, min confidence {best.min_confidence}, "
          f"keep largest {best.keep_largest}: mean Dice {record.mean_dice:.3f} on {_patients(len(record.patients))} "
          f"({', '.join(args.input_variants)}); saved in {args.model}. Best with keep largest: threshold "
          f"{largest.threshold}, mean Dice {largest.mean_dice:.3f}")
    return 0


def _run_view(args: argparse.Namespace) -> int:
    from .engine.io import load_scan

    if args.path is not None:
        # refuse what the reader would refuse, before a window opens; its warnings are the reader's to give, once (a
        # filter of "error" still makes them a refusal here)
        with warnings.catch_warnings(record=True):
            load_scan(args.path)
    from .launch import run

    return run(args.path, args.segment)


COMMANDS = {
    "view": _run_view, "train": _run_train, "predict": _run_predict, "evaluate": _run_evaluate,
    "calibrate": _run_calibrate,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure becomes one line on stderr (set LGG_UNET_DEBUG=1 for tracebacks). An
    InputWarning raised as an error (a caller's `warnings.simplefilter("error")`, `python -W error`) is bad input the
    caller chose to refuse: one 'error:' line and exit 2, not an internal error.

    Without `argv`, main is the program (`lgg-unet`, `python -m napari_lgg_unet`), run on the process's own command
    line and ended on its return: once stopped, it leaves the stop signals ignored (`_signals_as_ctrl_c`). Called with
    `argv` (a script, a test), it gives the caller's signal handlers back."""
    args = build_parser().parse_args(argv)
    try:
        with _warnings_as_lines(), _signals_as_ctrl_c(args.command, program=argv is None) as args.stopped:
            return COMMANDS[args.command](args)
    except (LggUnetError, InputWarning, OSError, MemoryError) as error:
        if _says_error(error):
            print(f"lgg-unet: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:  # Ctrl-C reaches every process of a torchrun job: one line, not one each
        if _says_error(stop):
            print(f"lgg-unet: interrupted{f'; {stop}' if str(stop) else ''}", file=sys.stderr)
        return 130
    except Exception as error:  # a bug of ours: still one line, with a way to see the details
        if os.environ.get("LGG_UNET_DEBUG"):
            raise
        print(f"lgg-unet: internal error: {error.__class__.__name__}: {_one_line(error)} "
              "(LGG_UNET_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


@contextlib.contextmanager
def _warnings_as_lines() -> typing.Iterator[None]:
    """Show the engine's InputWarnings (a guess the user should know of, the command goes on) as one line on stderr,
    printed by tqdm so a progress bar on the terminal stays whole; other warnings as Python shows them."""
    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message: Warning, category: type[Warning], *args: Any, **kwargs: Any) -> None:
            if issubclass(category, InputWarning):
                from tqdm import tqdm

                tqdm.write(f"lgg-unet: warning: {_one_line(message)}", file=sys.stderr)
            else:
                shown(message, category, *args, **kwargs)

        warnings.showwarning = show
        yield


@contextlib.contextmanager
def _signals_as_ctrl_c(command: str, program: bool) -> typing.Iterator[threading.Event]:
    """Make SIGTERM and SIGUSR1 end a command as Ctrl-C does (`distributed.interrupt_on_signals`): one line, exit code
    130, and the clean-up a KeyboardInterrupt runs (a lock let go, a temporary file removed; no --json or config.json
    is half-written, as each is written atomically). The system's default killed evaluate, calibrate, one scan's
    predict and train's loading of its patients without a word, leaving their lock files and temporary files behind.
    Training itself stops between steps instead (`stop_on_signals`, which holds the signals while it trains). Not
    `view`: napari answers the signals there; nor `main` called from another thread, where Python allows no handler.
    The signals are held while torch loads (`stopping.stop_signals_held`), and any error after one is the stop's: a
    Ctrl-C inside an import that swallows it (torch's of numpy, a second after the start) left a module half-made, and
    the command failed with an unrelated RecursionError, reported as an internal error with exit code 1.

    After the first stop, more are ignored (a second Ctrl-C cut the first one's clean-up short), and where `main` is
    the `program` they stay ignored until the process has ended: one raised in Python's exit hooks (torch's) printed
    a traceback under "lgg-unet: interrupted", or killed the process by SIGINT (exit code -2, not 130). The same holds
    after training has stopped between steps: it sets the `threading.Event` yielded here, which says a stop ended the
    command (`stop_on_signals`'s `ended`)."""
    stopped = threading.Event()
    if command == "view" or threading.current_thread() is not threading.main_thread():
        yield stopped
        return
    from .engine.stopping import stop_signals_held

    with stop_signals_held(stopped.is_set, ignore_once_stopped=program) as release:
        from .engine.distributed import interrupt_on_signals  # torch: a stop inside its import was lost or aborted

        with interrupt_on_signals(stopped):
            release()  # a stop sent while torch loaded ends the command here
            try:
                yield stopped
            except Exception as error:
                if stopped.is_set():
                    raise KeyboardInterrupt from error
                raise


def _says_error(error: BaseException) -> bool:
    """Whether this process prints `error`'s line: as `distributed.says_error` decides for a process of a torchrun
    job, also for a command-line error or a Ctrl-C met before the command imported that module. Outside a job
    (torchrun's WORLD_SIZE unset) every line is printed without importing torch, which would slow every error."""
    distributed = sys.modules.get(f"{__package__}.engine.distributed")
    if distributed is None:
        if "WORLD_SIZE" not in os.environ:
            return True
        from .engine import distributed
    return distributed.says_error(error)


def _one_line(error: BaseException) -> str:
    """`error`'s message and its notes (`add_note`: what a failed cohort left), as one line."""
    said = "; ".join(part for part in [str(error), *getattr(error, "__notes__", ())] if part.strip())
    return " ".join(said.split()) or error.__class__.__name__


if __name__ == "__main__":
    sys.exit(main())
