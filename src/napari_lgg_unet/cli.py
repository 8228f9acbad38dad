"""`lgg-unet train | predict | evaluate`: the engine without a GUI.

Errors a user can cause print one line on stderr and exit with code 2; Ctrl-C, SIGTERM or SIGUSR1 during
training stops it between steps and keeps the best model (exit code 0). Under torchrun only rank 0 prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from . import __version__
from .engine.atomic import write_text_atomic
from .engine.dataset import AugmentConfig
from .engine.backends import BACKEND_CHOICES
from .engine.batch_predict import segment_cohort, write_summary
from .engine.device import DEVICE_CHOICES, pick_device, set_threads
from .engine.distributed import Group, interrupt_on_signals, launched_ranks, process_group, stop_on_signals
from .engine.errors import InputError, LggUnetError
from .engine.calibrate import calibrate
from .engine.cohort import segment_scans
from .engine.events import EpochEnd, Finished, Prepared, Step
from .engine.evaluate import evaluate_patients, report
from .engine.io import ScanSource, existing_path, find_scans, load_patients, load_scan, write_mask
from .engine.losses import LOSS_CHOICES
from .engine.model import DEFAULT_MODEL_NAME, LoadedModel, load_model, read_config, resolve_model_path
from .engine.outputs import check_output, outside
from .engine.postprocess import PostprocessConfig
from .engine.precision import PRECISION_CHOICES
from .engine.predict import SegmentOptions, runs_on
from .engine.train import TrainConfig, train_model
from .engine.variants import INPUT_VARIANTS


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + error
        self.exit(2, f"{self.prog}: error: {message}\n")


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction in [0, 1)")
    return value


def _channels(text: str) -> tuple[int, ...]:
    return tuple(int(c) for c in text.split(","))


def _variants(text: str) -> tuple[str, ...]:
    variants = tuple(v for v in text.split(",") if v)
    if not variants or any(v not in INPUT_VARIANTS for v in variants):
        raise argparse.ArgumentTypeError(f"{text!r}: give one or more of {', '.join(INPUT_VARIANTS)}, comma-separated")
    return variants


def _augment_settings(text: str) -> dict:
    """'flair_only=0.3,skull_strip=0.4' -> {'flair_only': 0.3, 'skull_strip': 0.4} (AugmentConfig checks the values)."""
    known = {f.name: f.type for f in fields(AugmentConfig)}
    settings = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key not in known or not value:
            raise argparse.ArgumentTypeError(f"{item!r} is not KEY=VALUE with KEY one of {', '.join(known)}")
        if known[key] in (bool, "bool"):
            if value.lower() not in ("true", "false", "1", "0"):
                raise argparse.ArgumentTypeError(f"{key} takes true or false, not {value!r}")
            settings[key] = value.lower() in ("true", "1")
        else:
            settings[key] = float(value)
    return settings


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lgg-unet", description="Brain tumour (LGG) segmentation with a U-Net.")
    parser.add_argument("--version", action="version", version=f"lgg-unet {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    d = TrainConfig()

    train = commands.add_parser("train", help="train or fine-tune a model on Kaggle-style patient folders")
    train.add_argument("--data", required=True, type=Path, help="a Kaggle root folder or one patient folder")
    train.add_argument("--out", required=True, type=Path, help="model folder to write (best checkpoint)")
    train.add_argument("--epochs", type=int, default=d.epochs)
    train.add_argument("--batch-size", type=int, default=d.batch_size,
                       help="slices per step and per process (under torchrun the global batch is N times this)")
    train.add_argument("--lr", type=float, default=d.lr)
    train.add_argument("--lr-schedule", choices=("constant", "cosine"), default=d.lr_schedule)
    train.add_argument("--val-fraction", type=_fraction, default=d.val_fraction, help="patients held out for validation")
    train.add_argument("--test-fraction", type=_fraction, default=d.test_fraction,
                       help="patients set aside, never trained on (0.05 with --val-fraction 0.05 gives the reference 90/5/5)")
    train.add_argument("--image-size", type=int, default=d.image_size)
    train.add_argument("--encoder", default=d.encoder)
    train.add_argument("--decoder-channels", type=_channels, default=d.decoder_channels, help="e.g. 128,64,32,16,8")
    train.add_argument("--loss", choices=LOSS_CHOICES, default=d.loss)
    train.add_argument("--tumour-fraction", type=float, default=d.tumour_fraction,
                       help="share of sampled slices that show tumour (negative: natural mix)")
    train.add_argument("--no-augment", action="store_true", help="switch augmentation off")
    train.add_argument("--augment", type=_augment_settings, default={}, metavar="KEY=VALUE,...",
                       help="change augmentation settings, e.g. flair_only=0.3,skull_strip=0.4 (docs/training-runs.md)")
    train.add_argument("--validate-on", type=_variants, default=d.validation_variants, metavar="VARIANT,...",
                       help=f"score validation patients as these inputs ({', '.join(INPUT_VARIANTS)}); "
                            "the best model has the lowest mean validation loss over them")
    train.add_argument("--steps-per-epoch", type=int, default=None)
    train.add_argument("--workers", type=int, default=None, help="data loading workers (default: number of cores)")
    train.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICE_CHOICES)}")
    _add_speed_options(train)
    train.add_argument("--hard-negatives", type=float, default=d.hard_negatives,
                       help="share of empty-slice draws weighted by how wrong the model is on them (0: uniform)")
    train.add_argument("--hard-negatives-every", type=int, default=d.hard_negatives_every,
                       help="epochs between refreshes of the hard-negative weights")
    train.add_argument("--context-slices", type=int, default=d.context_slices,
                       help="FLAIR of this many neighbouring slices on each side as extra inputs (2.5D)")
    train.add_argument("--clicks", action="store_true",
                       help="the network also takes positive / negative click maps, trained with simulated clicks")
    train.add_argument("--click-fraction", type=float, default=d.click_fraction,
                       help="share of training samples that get simulated clicks (with --clicks)")
    train.add_argument("--single-slice-fraction", type=float, default=d.single_slice_fraction,
                       help="share of samples whose neighbours are the slice itself, as a 2D image gives them")
    train.add_argument("--init", default=None, help="model folder (or 'default') to fine-tune from")
    train.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    train.add_argument("--seed", type=int, default=d.seed)
    train.add_argument("--sync-batchnorm", action="store_true",
                       help="under torchrun on GPUs: batch-norm statistics over all processes' batches")

    calibrate = commands.add_parser("calibrate", help="choose the threshold and clean-up on validation patients")
    calibrate.add_argument("--model", required=True, help="model folder to update (its config.json)")
    calibrate.add_argument("--data", required=True, type=Path, help="Kaggle root or patient folder")
    calibrate.add_argument("--split", choices=("train", "validation", "test"), default="validation",
                           help="patients of this split recorded in the model's config (default: validation)")
    calibrate.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICE_CHOICES)}")
    calibrate.add_argument("--input-variants", type=_variants, default=("as-is",), metavar="VARIANT,...",
                           help=f"choose the setting best on average over these inputs ({', '.join(INPUT_VARIANTS)})")

    view = commands.add_parser("view", help="open napari with the plugin on a scan (default: the sample patient)")
    view.add_argument("path", nargs="?", type=Path, default=None, help="patient folder or TIFF")
    view.add_argument("--segment", action="store_true", help="segment it with the default model right away")

    for name, text in (("predict", "segment scans and write masks as TIFF (uint8 0/255)"),
                       ("evaluate", "score a model on patient folders that have masks")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--model", default="default", help="model folder or 'default'")
        sub.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICE_CHOICES)}")
        sub.add_argument("--batch-size", type=int, default=8)
        _add_speed_options(sub)
        sub.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                         help="'auto' uses OpenVINO on the CPU when the fast-cpu extra is installed, else PyTorch")
        sub.add_argument("--tta", action="store_true", help="average with the horizontally flipped scan")
        sub.add_argument("--threshold", type=float, default=None, help="default: the model's own")
        sub.add_argument("--min-size", type=int, default=None, help="drop tumour pieces smaller than this (voxels)")
        sub.add_argument("--keep-largest", action=argparse.BooleanOptionalAction, default=None,
                         help="keep only the largest 3D tumour piece (default: the model's own)")
        sub.add_argument("--min-confidence", type=float, default=None,
                         help="drop tumour pieces whose highest probability is below this (default: the model's own)")
        if name == "predict":
            sub.add_argument("--input", required=True, type=Path, help="scan (patient / case / DICOM folder, TIFF, NIfTI) or a folder of scans")
            sub.add_argument("--output", required=True, type=Path, help="mask file: .nii.gz/.nii/.nrrd/.mha keep the scan's geometry, else TIFF (a folder for a folder of scans)")
            sub.add_argument("--skip-existing", action="store_true",
                             help="folder of scans: keep and skip scans that already have a mask (continue a killed job)")
            sub.add_argument("--read-ahead", type=int, default=2, help="folder of scans: scans loaded ahead while the model runs")
        else:
            sub.add_argument("--data", required=True, type=Path, help="Kaggle root or patient folder")
            sub.add_argument("--split", choices=("train", "validation", "test"), default=None,
                             help="only the patients of this split recorded in the model's config")
            sub.add_argument("--input-variant", choices=INPUT_VARIANTS, default="as-is",
                             help="score a shift proxy: the FLAIR channel alone, or skull-stripped scans")
            sub.add_argument("--json", type=Path, default=None, help="write the results here")
    return parser


def _add_speed_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                        help="'auto' measures on this machine: bf16 where the CPU or GPU runs it faster, else fp32")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (default: OMP_NUM_THREADS if set, else the physical cores)")


def _segment_options(args: argparse.Namespace, default: PostprocessConfig) -> SegmentOptions:
    """The typed inference options from the command line; unset clean-up options take the model's own."""
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
    return TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_schedule=args.lr_schedule,
        val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.seed,
        image_size=args.image_size, encoder=args.encoder, decoder_channels=args.decoder_channels, loss=args.loss,
        augment=AugmentConfig(**{**args.augment, **({"enabled": False} if args.no_augment else {})}),
        validation_variants=args.validate_on,
        tumour_fraction=None if args.tumour_fraction < 0 else args.tumour_fraction,
        workers=args.workers, device=args.device, init=args.init, steps_per_epoch=args.steps_per_epoch,
        resume=args.resume, precision=args.precision, threads=args.threads, hard_negatives=args.hard_negatives,
        hard_negatives_every=args.hard_negatives_every, sync_batchnorm=args.sync_batchnorm,
        context_slices=args.context_slices, clicks=args.clicks, click_fraction=args.click_fraction,
        single_slice_fraction=args.single_slice_fraction,
    )


def _run_train(args: argparse.Namespace) -> int:
    config = train_config(args)
    pick_device(config.device)
    main_process = launched_ranks().is_main
    if main_process:
        print(f"loading patients from {args.data} ...", flush=True)
    scans = load_patients(args.data, require_masks=True)
    progress = _TrainingProgress()
    with stop_on_signals() as stop:
        try:
            for event in train_model(scans, config, args.out, stop):
                if main_process:
                    progress.show(event)
        finally:
            progress.close()
    return 0


class _TrainingProgress:
    """A progress bar per epoch on a terminal; plain lines every 10% of an epoch in a log file."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def show(self, event: Prepared | Step | EpochEnd | Finished) -> None:
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
            case EpochEnd(epoch=epoch, record=m, best_epoch=best):
                self.close()
                val = f"val loss {m['val_loss']:.4f}, val Dice {m['val_dice']:.3f}, " if "val_loss" in m else ""
                print(f"epoch {epoch}: train loss {m['train_loss']:.4f}, {val}best epoch {best}", file=sys.stderr)
            case Finished(stopped=stopped, message=message):
                print(f"{'stopped: ' if stopped else ''}{message}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _load_for_inference(args: argparse.Namespace, device: torch.device, main_process: bool = True
                        ) -> tuple[LoadedModel, SegmentOptions]:
    """Threads, model and options for predict and evaluate; the main process says what will run."""
    set_threads(args.threads)
    model = load_model(args.model, device)
    options = _segment_options(args, model.config.postprocess)
    if main_process:
        print(f"segmenting on {runs_on(model, options)}", flush=True)
    return model, options


def _run_predict(args: argparse.Namespace) -> int:
    existing_path(args.input)  # a missing input or a link loop is refused before its path is resolved
    if args.output.resolve() == args.input.resolve():
        raise InputError("--output is the same path as --input; the scan would be replaced by its mask")
    device = pick_device(args.device)
    sources = outside(find_scans(args.input), args.output)  # an earlier run's masks kept inside the input are no scans
    if not sources:
        raise InputError(f"{args.input} holds no scans outside --output {args.output}")
    if len(sources) > 1 or args.output.is_dir():  # a folder of scans -> one <scan>_mask file each, in --output
        if args.output.is_file():
            raise InputError(f"--input {args.input} holds {len(sources)} scans; give a folder as --output")
        with interrupt_on_signals(), process_group(args.device) as group:
            return _predict_cohort(args, sources, group)
    check_output(args.output, sources)
    model, options = _load_for_inference(args, device)
    (done,) = segment_scans(model, sources, options)
    if done.scan.geometry is not None:  # which file or DICOM series fed each channel (a study has several series)
        print("; ".join(f"{sequence}: {source}" for sequence, source in done.scan.geometry.sources))
    write_mask(args.output, done.result.mask, done.scan)
    print(f"wrote {args.output}")
    return 0


def _predict_cohort(args: argparse.Namespace, cases: list[ScanSource], group: Group) -> int:
    """A folder of scans: this process's share, a progress bar in cases/s (a line per case in a log file) on rank 0,
    then `summary.csv` beside the masks."""
    if args.read_ahead < 0:
        raise InputError("--read-ahead must be 0 or more")
    model, options = _load_for_inference(args, group.device, group.is_main)
    share = len(group.share(cases))
    bar = tqdm(total=share, unit="case", disable=None if group.is_main else True,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}]")
    with bar:
        for summary in segment_cohort(model, cases, args.output, options, group, args.skip_existing, args.read_ahead):
            bar.update(1)
            if bar.disable and group.is_main and summary is not None:
                print(f"{summary.case}: {summary.slices} slices, {summary.tumour_voxels} tumour voxels, "
                      f"{summary.seconds:.2f} s", file=sys.stderr, flush=True)
    summary_path = write_summary(args.output, cases, group)
    if summary_path is not None:
        print(f"masks of {len(cases)} cases in {args.output}, summary in {summary_path}")
    return 0


def _evaluation_folders(args: argparse.Namespace, model) -> list[Path]:
    folders = find_scans(args.data)
    if args.split:
        names = set(model.config.training.get("split", {}).get(args.split, []))
        if not names:
            raise InputError(f"the model's config records no {args.split} patients")
        folders = [f for f in folders if f.name in names]
        if not folders:
            raise InputError(f"none of the model's {args.split} patients are in {args.data}")
    return folders


def _run_evaluate(args: argparse.Namespace) -> int:
    model, options = _load_for_inference(args, pick_device(args.device))
    folders = _evaluation_folders(args, model)
    results = []
    print(f"{'patient':<28} {'slices':>6} {'dice':>6} {'iou':>6} {'acc':>7}")
    results_iter = evaluate_patients(model, folders, options, args.input_variant)
    for result in tqdm(results_iter, total=len(folders), unit="patient", leave=False, disable=None):
        results.append(result)
        s = result.scores
        tqdm.write(f"{result.name:<28} {result.slices:>6} {s.dice:6.3f} {s.iou:6.3f} {s.accuracy:7.4f}")
    summary = report(results)
    print(f"{len(results)} patients: mean Dice {summary['mean_dice']:.3f}, median Dice {summary['median_dice']:.3f}, "
          f"mean IoU {summary['mean_iou']:.3f}, mean accuracy {summary['mean_accuracy']:.4f}, "
          f"{summary['slices_per_second']:.1f} slices/s")
    if args.json:
        write_text_atomic(args.json, json.dumps(summary, indent=2) + "\n")
    return 0


def _run_calibrate(args: argparse.Namespace) -> int:
    if args.model == DEFAULT_MODEL_NAME:
        raise InputError("the default model is part of the installed package and is not changed; copy its folder "
                         f"({resolve_model_path(DEFAULT_MODEL_NAME)}) and calibrate the copy")
    model = load_model(args.model, pick_device(args.device))
    best, dice = calibrate(model, _evaluation_folders(args, model), resolve_model_path(args.model),
                           variants=args.input_variants)
    largest = read_config(resolve_model_path(args.model)).training["calibration"]["best_keep_largest"]
    print(f"threshold {best.threshold}, min size {best.min_size}, min confidence {best.min_confidence}, "
          f"keep largest {best.keep_largest}: mean Dice {dice:.3f} on the {args.split} patients "
          f"({', '.join(args.input_variants)}); saved in {args.model}. Best with keep largest: threshold "
          f"{largest['threshold']}, mean Dice {largest['mean_dice']:.3f}")
    return 0


def _run_view(args: argparse.Namespace) -> int:
    if args.path is not None:
        load_scan(args.path)  # refuse what the reader would refuse, before a window opens
    from .launch import run

    return run(args.path, args.segment)


COMMANDS = {"view": _run_view, "train": _run_train, "predict": _run_predict, "evaluate": _run_evaluate, "calibrate": _run_calibrate}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure becomes one line on stderr (set LGG_UNET_DEBUG=1 for tracebacks)."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (LggUnetError, OSError, MemoryError) as error:
        print(f"lgg-unet: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lgg-unet: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug of ours: still one line, with a way to see the details
        if os.environ.get("LGG_UNET_DEBUG"):
            raise
        print(f"lgg-unet: internal error: {error.__class__.__name__}: {_one_line(error)} (LGG_UNET_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 1


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or error.__class__.__name__


if __name__ == "__main__":
    sys.exit(main())
