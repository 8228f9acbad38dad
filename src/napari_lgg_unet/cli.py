"""`lgg-unet train | predict | evaluate`: the engine without a GUI.

Errors a user can cause print one line on stderr and exit with code 2; Ctrl-C during training stops it
between steps and keeps the best model.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from . import __version__
from .engine.atomic import write_text_atomic
from .engine.dataset import AugmentConfig
from .engine.device import DEVICE_CHOICES, pick_device
from .engine.errors import InputError, LggUnetError
from .engine.evaluate import evaluate_patients, report
from .engine.io import find_scans, load_patients, load_scan, mask_file_name, write_mask
from .engine.losses import LOSS_CHOICES
from .engine.calibrate import calibrate
from .engine.model import PostprocessConfig, load_model, resolve_model_path
from .engine.predict import segment_volume
from .engine.train import TrainConfig, train_model


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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lgg-unet", description="Brain tumour (LGG) segmentation with a U-Net.")
    parser.add_argument("--version", action="version", version=f"lgg-unet {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    d = TrainConfig()

    train = commands.add_parser("train", help="train or fine-tune a model on Kaggle-style patient folders")
    train.add_argument("--data", required=True, type=Path, help="a Kaggle root folder or one patient folder")
    train.add_argument("--out", required=True, type=Path, help="model folder to write (best checkpoint)")
    train.add_argument("--epochs", type=int, default=d.epochs)
    train.add_argument("--batch-size", type=int, default=d.batch_size)
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
    train.add_argument("--steps-per-epoch", type=int, default=None)
    train.add_argument("--workers", type=int, default=None, help="data loading workers (default: number of cores)")
    train.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICE_CHOICES)}")
    train.add_argument("--init", default=None, help="model folder (or 'default') to fine-tune from")
    train.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    train.add_argument("--seed", type=int, default=d.seed)

    calibrate = commands.add_parser("calibrate", help="choose the threshold and clean-up on validation patients")
    calibrate.add_argument("--model", required=True, help="model folder to update (its config.json)")
    calibrate.add_argument("--data", required=True, type=Path, help="Kaggle root or patient folder")
    calibrate.add_argument("--split", choices=("train", "validation", "test"), default="validation",
                           help="patients of this split recorded in the model's config (default: validation)")
    calibrate.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICE_CHOICES)}")

    view = commands.add_parser("view", help="open napari with the plugin on a scan (default: the sample patient)")
    view.add_argument("path", nargs="?", type=Path, default=None, help="patient folder or TIFF")
    view.add_argument("--segment", action="store_true", help="segment it with the default model right away")

    for name, text in (("predict", "segment scans and write masks as TIFF (uint8 0/255)"),
                       ("evaluate", "score a model on patient folders that have masks")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--model", default="default", help="model folder or 'default'")
        sub.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICE_CHOICES)}")
        sub.add_argument("--batch-size", type=int, default=8)
        sub.add_argument("--tta", action="store_true", help="average with the horizontally flipped scan")
        sub.add_argument("--threshold", type=float, default=None, help="default: the model's own")
        sub.add_argument("--min-size", type=int, default=None, help="drop tumour pieces smaller than this (voxels)")
        sub.add_argument("--keep-largest", action=argparse.BooleanOptionalAction, default=None,
                         help="keep only the largest 3D tumour piece (default: the model's own)")
        if name == "predict":
            sub.add_argument("--input", required=True, type=Path, help="scan (patient / case / DICOM folder, TIFF, NIfTI) or a folder of scans")
            sub.add_argument("--output", required=True, type=Path, help="mask file: .nii.gz/.nii/.nrrd/.mha keep the scan's geometry, else TIFF (a folder for a folder of scans)")
        else:
            sub.add_argument("--data", required=True, type=Path, help="Kaggle root or patient folder")
            sub.add_argument("--split", choices=("train", "validation", "test"), default=None,
                             help="only the patients of this split recorded in the model's config")
            sub.add_argument("--json", type=Path, default=None, help="write the results here")
    return parser


def _postprocessing(args: argparse.Namespace, default: PostprocessConfig) -> PostprocessConfig:
    return PostprocessConfig(
        threshold=default.threshold if args.threshold is None else args.threshold,
        min_size=default.min_size if args.min_size is None else args.min_size,
        keep_largest=default.keep_largest if args.keep_largest is None else args.keep_largest,
    )


def _run_train(args: argparse.Namespace) -> int:
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_schedule=args.lr_schedule,
        val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.seed,
        image_size=args.image_size, encoder=args.encoder, decoder_channels=args.decoder_channels, loss=args.loss,
        augment=AugmentConfig(enabled=not args.no_augment),
        tumour_fraction=None if args.tumour_fraction < 0 else args.tumour_fraction,
        workers=args.workers, device=args.device, init=args.init, steps_per_epoch=args.steps_per_epoch,
        resume=args.resume,
    )
    pick_device(config.device)
    print(f"loading patients from {args.data} ...", file=sys.stderr)
    scans = load_patients(args.data, require_masks=True)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    bar = None
    try:
        for event in train_model(scans, config, args.out, stop.is_set):
            if event.kind == "prepared":
                print(event.message, file=sys.stderr)
            elif event.kind == "step":
                if bar is None:
                    bar = tqdm(total=event.steps, desc=f"epoch {event.epoch}/{event.epochs}", unit="step", disable=None)
                bar.update(1)
                bar.set_postfix(loss=f"{event.loss:.4f}")
                if bar.disable and event.step % max(1, event.steps // 10) == 0:  # a log file gets plain lines
                    print(f"epoch {event.epoch}/{event.epochs} step {event.step}/{event.steps}: loss {event.loss:.4f}, "
                          f"about {event.eta_seconds / 60:.0f} min left", file=sys.stderr, flush=True)
            elif event.kind == "epoch":
                if bar is not None:
                    bar.close()
                    bar = None
                m = event.metrics
                val = f"val loss {m['val_loss']:.4f}, val Dice {m['val_dice']:.3f}, " if "val_loss" in m else ""
                print(f"epoch {event.epoch}: train loss {m['train_loss']:.4f}, {val}best epoch {event.best_epoch}",
                      file=sys.stderr)
            elif event.kind == "finished":
                state = "stopped: " if event.stopped else ""
                print(f"{state}{event.message}")
    finally:
        if bar is not None:
            bar.close()
        signal.signal(signal.SIGINT, previous)
    return 0


def _run_predict(args: argparse.Namespace) -> int:
    model = load_model(args.model, pick_device(args.device))
    post = _postprocessing(args, model.config.postprocess)
    options = {"batch_size": args.batch_size, "tta": args.tta, "postprocessing": post}
    sources = find_scans(args.input)
    if len(sources) > 1 or args.output.is_dir():  # a folder of scans -> one <scan>_mask file each, in --output
        if args.output.is_file():
            raise InputError(f"--input {args.input} holds {len(sources)} scans; give a folder as --output")
        for source in tqdm(sources, unit="scan", disable=None):
            scan = load_scan(source)
            write_mask(args.output / mask_file_name(scan), segment_volume(model, scan.image, rgb=scan.rgb, **options).mask, scan)
        print(f"wrote {len(sources)} masks to {args.output}")
        return 0
    scan = load_scan(sources[0])
    write_mask(args.output, segment_volume(model, scan.image, rgb=scan.rgb, **options).mask, scan)
    print(f"wrote {args.output}")
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
    model = load_model(args.model, pick_device(args.device))
    options = {"batch_size": args.batch_size, "tta": args.tta,
               "postprocessing": _postprocessing(args, model.config.postprocess)}
    folders = _evaluation_folders(args, model)
    results = []
    print(f"{'patient':<28} {'slices':>6} {'dice':>6} {'iou':>6} {'acc':>7}")
    for result in tqdm(evaluate_patients(model, folders, **options), total=len(folders), unit="patient", leave=False, disable=None):
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
    model = load_model(args.model, pick_device(args.device))
    best, dice = calibrate(model, _evaluation_folders(args, model), resolve_model_path(args.model))
    print(f"threshold {best.threshold}, min size {best.min_size}, keep largest {best.keep_largest}: "
          f"mean Dice {dice:.3f} on the {args.split} patients; saved in {args.model}")
    return 0


def _run_view(args: argparse.Namespace) -> int:
    if args.path is not None and not args.path.exists():
        raise InputError(f"path not found: {args.path}")
    from .launch import run

    return run(args.path, args.segment)


COMMANDS = {"view": _run_view, "train": _run_train, "predict": _run_predict, "evaluate": _run_evaluate, "calibrate": _run_calibrate}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except LggUnetError as error:
        print(f"lgg-unet: error: {error}", file=sys.stderr)
        return 2
    except (OSError, MemoryError) as error:
        print(f"lgg-unet: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
