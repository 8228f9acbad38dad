"""The training loop as a generator of progress events (see `events`): a short driver over named phases.

The CLI drives it with a progress bar, the napari widget from a thread worker, tests by iterating it.
Asking it to stop (the `stop` callable returns True) ends it between steps, or between the batches of an epoch-end
validation (a minute on a CPU): that epoch then counts as unfinished. The best model so far is kept.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import time
import warnings
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, WeightedRandomSampler

from .dataset import (
    SliceDataset,
    TrainingVolume,
    check_patient_names,
    hard_negative_weights,
    prepare_training_volume,
    volume_logits,
    sampling_weights,
    split_patients,
    split_single_volume,
    tumour_aware_sampler,
)
from .device import out_of_memory_as_advice, physical_cores, release_memory, set_threads
from .distributed import Group, agreed_precision, leave_stopping_to_the_parent, process_group
from .errors import DeviceError, InputError, InputWarning, ModelError, TrainingError, few_names
from .events import EpochEnd, EpochRecord, Finished, Prepared, Step, TrainingEvent, ValidationScores
from .io import Scan, as_path
from .losses import SegmentationLoss
from .metrics import Counts, count, scores
from .click_training import with_simulated_clicks
from .model import ModelConfig, build_network, load_model, read_config, save_model, saved_config, with_inputs
from .model_input import InputConfig
from .postprocess import PostprocessConfig
from .precision import Precision, autocast, grad_scaler, prepare_batch, prepare_network
from .preprocess import PreprocessConfig, binarise_mask
from .records import TrainingRecord
from .run_folder import PATIENTS, RunFolder, RunProgress
from .settings import AS_IS, TrainConfig, field_and_flag, option_and_flag
from .stopping import Stopped, unless_stopped
from .variants import normalised_variant

NO_EPOCH_FINISHED = "no epoch finished"  # the message of a run that ended before it saved a model


@dataclass
class _Run:
    """Everything one training run carries from step to step."""

    config: TrainConfig
    folder: RunFolder
    group: Group
    device: torch.device
    precision: Precision
    network: torch.nn.Module  # what trains: DistributedDataParallel around `bare_network` with several processes
    model_config: ModelConfig
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loss_fn: SegmentationLoss
    split: _Split
    sampler: WeightedRandomSampler  # all processes' draws; the loader takes this process's share of them
    loader: DataLoader
    steps: int
    provenance: TrainingRecord
    progress: RunProgress
    epoch: int = 0
    step: int = 0
    epoch_loss: float = 0.0
    seen: int = 0
    stopped: bool = False
    started: float = field(default_factory=time.perf_counter)
    step_times: list[float] = field(default_factory=list)
    click_rng: np.random.Generator = field(default_factory=np.random.default_rng)

    @property
    def bare_network(self) -> torch.nn.Module:
        """The U-Net itself, for validation and saving (its weights are the same on every process)."""
        return self.network.module if isinstance(self.network, DistributedDataParallel) else self.network


def train_model(
    scans: Iterable[Scan], config: TrainConfig, out_dir: str | Path, stop: Callable[[], bool] | None = None
) -> Iterator[TrainingEvent]:
    """Train on `scans` (each with a mask), keeping the best model by validation loss in `out_dir`.

    Yields `Prepared`, a `Step` per optimisation step, an `EpochEnd` after each validation and one `Finished`
    (stopped=True if `stop` asked for it). The folder is locked for the whole run; a run stopped before its first
    epoch ended removes what it made there (the lock file, the folder while empty), as a failed run does. A stop
    asked while the scans are prepared (seconds each: a folder of patients takes minutes) ends it before the next
    one, with `Finished` alone (a resumed run's names the best model its folder still holds).

    Launched by torchrun, every process runs this with the same arguments: it trains with DDP on its share of each
    epoch, rank 0 alone writes, and a stop asked on any process stops all of them at the same step.
    """
    scans, folder, stop = _checked_request(scans, config, out_dir, stop)
    try:
        with process_group(config.device) as group, _claimed(folder, config, group, scans) as claim:

            def stopped() -> bool:  # every process asks, so all of them stop at the same point
                return group.any(stop())

            run = _setup(scans, config, folder, group, stopped, stop)
            try:
                yield _prepared(run)
                # a GPU out of memory is this process's own; a diverged loss every process's (they average it)
                with group.own_failures((DeviceError,)):
                    yield from _epochs(run, stopped, stop)
            finally:
                _let_go(run)
            claim.made_nothing = run.progress.best_epoch is None
    except Stopped:  # seen by the lock as a failure: it removed what the run made, as for made_nothing
        yield stopped_before_training(folder.path, config)
        return
    yield _finished(run)


def stopped_before_training(out_dir: str | Path, config: TrainConfig) -> Finished:
    """The end of a run into `out_dir` stopped before it trained (while its scans were listed, read or prepared): a
    new run made nothing; a resumed one leaves its folder as it found it, and reports the best model and epochs the
    folder holds."""
    folder = RunFolder(as_path(out_dir, "the output folder"))
    if not config.resume:
        return Finished(str(folder.path), None, None, True, [], NO_EPOCH_FINISHED)
    progress = folder.resume_progress()
    history = [EpochRecord.from_row(row, config.validation_variants) for row in progress.history]
    validated = any(record.main_validation is not None for record in history)
    return _finished_as(folder, config, progress, True, history, validated)


def _epochs(run: _Run, stopped: Callable[[], bool], asked: Callable[[], bool]) -> Iterator[Step | EpochEnd]:
    """Train epoch after epoch until the last, or until `stopped()` (checked before every step and between the batches
    of the hard-negative scoring, agreed by every process) or `asked()` (this process's stop, checked between
    validation batches: see `_end_epoch`).

    A run stopped during its first epoch, after some steps or during its validation, validates that epoch whole
    whatever is asked meanwhile: its model is the only one the run leaves. So does a run whose best model was
    deleted (`_best_kept`): its stopped epoch's model is saved in its place."""
    with out_of_memory_as_advice():
        for run.epoch in range(run.progress.epochs_done, run.config.last_epoch):
            if not _start_epoch(run, stopped):  # stopped while it scored the hard negatives: no step of it was taken
                run.stopped = True
                return
            for x, y in run.loader:
                if stopped():
                    run.stopped = True
                    break
                yield _train_step(run, x, y)
            kept = _best_kept(run)
            if run.stopped and (kept or run.seen == 0):
                return  # stop promptly: the best model is on disk, or no step was taken to make one
            # the first validation runs whole: a stop there would leave no model of the epoch trained
            ended = _end_epoch(run, asked if kept and not run.stopped else _never)
            if ended is None:  # stopped during the validation: the epoch is not recorded, the best model stays
                run.stopped = True
                return
            yield ended
            if run.stopped:
                return


def _never() -> bool:
    return False


def _checked_request(scans: Iterable[Scan], config: TrainConfig, out_dir: str | Path,
                     stop: Callable[[], bool] | None) -> tuple[list[Scan], RunFolder, Callable[[], bool]]:
    """The scans as a list (a generator would be used up by the first look at them), the run folder and the stop
    test; what is not a list of Scans, a TrainConfig, a path and a function is refused before the run starts."""
    if isinstance(scans, Scan) or not isinstance(scans, Iterable):
        raise InputError(f"scans must be a list of Scans ([scan] for one), not {type(scans).__name__}")
    scans = list(scans)
    for scan in scans:
        if not isinstance(scan, Scan):
            raise InputError(f"scans must be loaded first, e.g. load_patients(folder) or [load_scan(path, "
                             f"require_mask=True)]; got {type(scan).__name__} {scan!r:.60}")
    if not isinstance(config, TrainConfig):
        raise InputError(f"config must be a TrainConfig, not {type(config).__name__} {config!r:.60}")
    if stop is not None and not callable(stop):
        raise InputError(f"stop must be a function that returns True to stop, or None; not {stop!r:.60}")
    return scans, RunFolder(as_path(out_dir, "the output folder")), stop or (lambda: False)


@dataclass
class _Claim:
    """Set by the run before it lets go of its folder: `made_nothing` when it saved no model (stopped before its first
    epoch ended)."""

    made_nothing: bool = False


class _NothingMade(Exception):
    """Raised inside the folder's lock by a run that made nothing, so that the lock removes what the run made."""


@contextlib.contextmanager
def _claimed(folder: RunFolder, config: TrainConfig, group: Group, scans: list[Scan]) -> Iterator[_Claim]:
    """Every process must have been started as rank 0 was (settings, scans); then rank 0 locks the folder and
    checks the run may start there while the others wait for its verdict. A resumed run must train on the same
    scans: other scans make another split, test patients included.

    A run that made nothing (`_Claim.made_nothing`) leaves the folder as a failed run does: the lock file and the
    folders this run created go, while empty. Kept, a Stop pressed before the first epoch ended left a folder holding
    only `.lock` (in napari a `run-*` folder in the output folder for every such Stop or closed dock), which no model
    loads from and `--resume` refuses ("no run to resume"). A folder that was there before keeps its files."""
    patients = sorted(s.name for s in scans)
    group.check_same(_started_as(config, scans), "every process of a job needs the same settings and the same "
                     f"{option_and_flag('scans', flag='--data')} (a shared file system on a cluster)")
    outcome = _Claim()
    try:
        with contextlib.ExitStack() as held:

            def claim() -> None:
                held.enter_context(folder.locked())
                folder.check_start({**config.must_match_on_resume(), PATIENTS: patients}, config.resume)
                if config.resume:
                    _warn_if_all_trained(folder, config)

            group.on_main(claim)
            yield outcome
            if outcome.made_nothing:
                raise _NothingMade  # seen by the lock (folder_lock.held_folder) as a failure: it removes what it made
    except _NothingMade:
        pass


def _warn_if_all_trained(folder: RunFolder, config: TrainConfig) -> None:
    """Say as a resumed run starts when it has no epoch left to train: `--resume` without a larger `--epochs`
    prepared every scan (minutes for a folder of patients) and ended with the saved run's best model, as if it had
    trained. Not refused: such a run still rewrites a best model that a kill cut short (`_best_cut_short`). The
    settings are named as the API and the CLI call them (`field_and_flag`): flags alone meant nothing to a script."""
    done = folder.resume_progress().epochs_done
    if done >= config.last_epoch:
        trained = f"{done} epoch{'s' if done != 1 else ''}"
        warnings.warn(InputWarning(f"{folder.path} has already trained {trained} and this run ends after epoch "
                                   f"{config.last_epoch}: nothing is left to train; raise {field_and_flag('epochs')} "
                                   f"or {field_and_flag('stop_after')} to go on"), stacklevel=1)


def _started_as(config: TrainConfig, scans: list[Scan]) -> dict:
    """What every process of a job must share: the settings (named as `field_and_flag` names them; those of speed
    alone, the loader's workers and threads, may suit each node) and each scan's name and shape (what the split and
    the step count depend on). Not the output folder: rank 0 alone writes, and a caller may give each rank its own
    (a temporary folder each)."""
    settings = {field_and_flag(name): value for name, value in config.to_dict().items()
                if name not in ("workers", "threads")}
    return {**settings, "scans": {scan.name: list(scan.image.shape) for scan in scans}}


def _setup(scans: list[Scan], config: TrainConfig, folder: RunFolder, group: Group,
           stopped: Callable[[], bool], asked: Callable[[], bool]) -> _Run:
    """Seed, build the network and optimizer, prepare the data (ended by `stopped`: scans, validation variants, brain
    masks for the skull-strip augmentation), restore a resumed run's state."""
    torch.manual_seed(config.seed)
    set_threads(config.threads)
    device = group.device
    chosen = _precision(config, folder, group, asked)
    preprocess = PreprocessConfig(image_size=config.image_size)
    network, model_config = _initial_network(config, preprocess)
    rewrite = config.resume and group.is_main and _best_cut_short(folder, folder.resume_progress())
    preparing = _never if group.any(rewrite) else stopped  # a run that rewrites its best model prepares it all
    with out_of_memory_as_advice():
        split = _prepare(scans, config, preprocess, preparing)
    prepare_network(network.to(device).train(), chosen)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.lr)
    scaler = grad_scaler(chosen)
    progress = folder.load_resume_state(network, optimizer, scaler, config.init) if config.resume else RunProgress()
    dataset = SliceDataset(split.train, config.augment, config.seed, model_config.inputs, config.single_slice_fraction,
                           preparing)
    steps = config.steps_per_epoch or max(1, len(dataset) // (config.batch_size * group.world))
    sampler = tumour_aware_sampler(dataset, steps * config.batch_size * group.world, config.tumour_fraction,
                                   config.seed)
    loader = _loader(dataset, sampler, config, group)
    provenance = TrainingRecord(config.to_dict(), split.names, len(dataset), chosen.label, group.world)
    run = _Run(config, folder, group, device, chosen, network, model_config, optimizer, scaler,
               SegmentationLoss(config.loss, config.bce_weight), split, sampler, loader, steps, provenance, progress)
    if rewrite:  # the run was killed after its resume state, before its model was written
        folder.keep_lock()  # a folder deleted since its resume state was read is made anew here, and locked again
        _save_best_model(run)
    # last: a wrapper alive when setup fails can hang (_let_go)
    run.network = group.wrap(network, config.sync_batchnorm)
    return run


def _loader(dataset: SliceDataset, sampler: WeightedRandomSampler, config: TrainConfig, group: Group) -> DataLoader:
    """This process's loader of its share of `sampler`'s draws, with `config.workers` workers (else this process's
    share of the physical cores), which end with the run (`_end_workers`)."""
    workers = config.workers if config.workers is not None else physical_cores() // group.local_world
    loader = DataLoader(dataset, batch_size=config.batch_size, sampler=group.share_of(sampler), num_workers=workers,
                        persistent_workers=workers > 0, pin_memory=group.device.type == "cuda",
                        drop_last=len(dataset) >= config.batch_size, worker_init_fn=_loader_worker)
    _LOADERS.add(loader)
    return loader


def _precision(config: TrainConfig, folder: RunFolder, group: Group, asked: Callable[[], bool]) -> Precision:
    """The run's precision, a resumed run's kept where 'auto' allows. Its first timing on a machine is ended by
    `asked`, this process's stop, not the agreed one: rank 0 times alone, and the others would not join its asking."""
    return agreed_precision(group, config.precision, folder.trained_precision(group.device) if config.resume else None,
                            asked)


def _best_cut_short(folder: RunFolder, progress: RunProgress) -> bool:
    """Whether a resumed run must rewrite its best model: the last finished epoch was the best, and the folder does
    not hold it whole (its weights, and a config.json of their save); the run may have been killed after its resume
    state, before its model was written. Only a missing, older or half-saved model is rewritten: rewriting the same
    weights would drop what was done to the model since (a calibration of its threshold)."""
    return progress.best_epoch == progress.epochs_done and not _holds_best(folder, progress)


def _best_kept(run: _Run) -> bool:
    """Whether the run has a best model and its folder still holds it (`_holds_best`), as rank 0 finds, on every
    process."""
    if run.progress.best_epoch is None:
        return False
    return not run.group.any(run.group.is_main and not _holds_best(run.folder, run.progress))


def _holds_best(folder: RunFolder, progress: RunProgress) -> bool:
    """Whether `folder` holds the run's best model whole: weights of its best epoch and a config.json of their save.
    A run whose folder was deleted while it trained found it again (its writes make it anew) without that model."""
    try:
        on_disk = saved_config(folder.path)
        same_save = read_config(folder.path).weights_id == on_disk.weights_id
    except ModelError:
        return False
    return same_save and on_disk.training.best_epoch == progress.best_epoch


def _let_go(run: _Run) -> None:
    """Free the device memory, end the loader's workers (`_end_workers`) and drop the DistributedDataParallel wrapper
    while the process group is still open.

    The wrapper's Reducer holds the group; were it the last holder, freeing the run after the group was destroyed
    would run gloo's destructor with the GIL held, which waits for gloo's worker threads while one of them may wait
    for the GIL to release the last all-reduce's tensor: a rank that never ends (seen after a SIGTERM on a busy
    machine). Destroyed by `process_group` instead, the group is freed without the GIL.
    """
    run.network = run.bare_network
    _end_workers(run.loader)
    release_memory(run.device)


def _prepared(run: _Run) -> Prepared:
    """The run's first line. The processes follow the device and precision, before the precision's reason: after it,
    'auto: remembered from <date> in 2 processes' read as if the remembering had been done in 2 processes."""
    split, slices, world = run.split, len(run.loader.dataset), run.group.world
    processes = f" in {world} processes (batch {run.config.batch_size} each)" if world > 1 else ""
    where, _, why = run.precision.label.partition("; ")
    return Prepared(
        f"{len(split.train)} training and {len(split.val)} validation volumes, {slices} slices, "
        f"on {where}{processes}{f'; {why}' if why else ''}",
        run.progress.epochs_done, run.config.last_epoch, run.steps, str(run.folder.path),
    )


def _start_epoch(run: _Run, stopped: Callable[[], bool]) -> bool:
    """Reseed the sampler from the epoch number, so a resumed run draws what an uninterrupted one would;
    refresh the hard-negative weights (how wrong the model is on empty slices) when it is their turn.

    False when `stopped()` ended that scoring (it runs the network over every training slice, minutes on a CPU, and
    Stop waited for it): the sampler keeps its weights, the epoch takes no step, and the run ends as stopped."""
    config = run.config
    run.sampler.generator.manual_seed(config.seed + run.epoch)
    run.click_rng = np.random.default_rng((config.seed, run.epoch, run.group.rank))
    run.step, run.epoch_loss, run.seen = 0, 0.0, 0
    if config.hard_negatives > 0 and run.epoch % config.hard_negatives_every == 0:
        dataset = run.loader.dataset
        # every process scores all slices in the same batches, so all draw from the same weights, and all ask the
        # agreed `stopped` as often: they stop at the same batch
        wrong = hard_negative_weights(run.bare_network, run.split.train, run.precision, config.batch_size,
                                      run.model_config.inputs, stopped)
        if wrong is None:
            return False
        weights = sampling_weights(dataset.has_tumour(), config.tumour_fraction, wrong, config.hard_negatives)
        run.sampler.weights = torch.as_tensor(weights, dtype=torch.double)  # read afresh at each epoch's start
    return True


def _train_step(run: _Run, x: torch.Tensor, y: torch.Tensor) -> Step:
    """One optimisation step; a non-finite loss stops training with advice instead of saving garbage."""
    started = time.perf_counter()
    config = run.config
    run.step = step = run.step + 1
    total_steps = config.epochs * run.steps
    for group in run.optimizer.param_groups:
        group["lr"] = _learning_rate(config, (run.epoch * run.steps + step - 1) / total_steps)
    if run.model_config.inputs.clicks:
        x = with_simulated_clicks(run.bare_network, x, y, run.model_config.inputs, run.precision, config.click_fraction,
                                  run.click_rng, config.click_rounds, config.click_decoys)
    x = prepare_batch(x.to(run.device, non_blocking=True), run.precision)
    y = y.to(run.device, non_blocking=True)
    run.optimizer.zero_grad(set_to_none=True)
    with autocast(run.precision):
        loss = run.loss_fn(run.network(x), y)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    value = run.group.average(float(loss.detach()))  # every process sees the same loss, and stops on the same NaN
    if not math.isfinite(value):
        raise TrainingError("training diverged (loss is not finite); lower the learning rate")
    run.epoch_loss += value * len(x)
    run.seen += len(x)
    run.step_times.append(time.perf_counter() - started)
    remaining = (config.last_epoch - run.epoch) * run.steps - step
    eta = float(np.mean(run.step_times[-50:])) * remaining * 1.1
    return Step(run.epoch + 1, config.last_epoch, step, run.steps, value, eta)


def _end_epoch(run: _Run, asked: Callable[[], bool]) -> EpochEnd | None:
    """Validate, then save the resume state, the model if it is the best so far, and the history (rank 0 only).
    None, with nothing recorded or saved, when `asked()` stopped the validation: half a validation's figures would
    have been taken for the epoch's, and could have made it the best; a resumed run trains that epoch again.

    The resume state goes first: a run killed before its model is written rewrites that model when resumed.
    """
    progress, epoch = run.progress, run.epoch + 1
    run.group.average_buffers(run.bare_network)
    validation = _validate_variants(run, asked)
    if validation is None:
        return None
    train_loss = run.epoch_loss / max(run.seen, 1)
    seconds = round(progress.seconds + time.perf_counter() - run.started, 1)
    selection = float(np.mean([s.loss for s in validation.values()])) if validation else None
    record = EpochRecord(epoch, train_loss, run.optimizer.param_groups[0]["lr"], seconds, validation, selection)
    progress.history.append(record.row())
    monitored = train_loss if selection is None else selection
    improved = run.config.keep_last or progress.best_epoch is None or monitored < progress.best_val_loss
    if not improved and not _best_kept(run):
        warnings.warn(InputWarning(f"the best model (epoch {progress.best_epoch}) in {run.folder.path} was deleted; "
                                   f"saved epoch {epoch}'s instead"), stacklevel=1)
        improved = True
    if improved:
        progress.best_epoch, progress.best_val_loss = epoch, monitored
    progress.epochs_done, progress.seconds = epoch, seconds
    run.started = time.perf_counter()
    if run.group.is_main:  # one writer; the other processes hold the same weights and figures
        run.folder.keep_lock()  # a folder deleted since the last epoch is made anew here, and locked again
        patients = sorted(name for names in run.split.names.values() for name in names)
        run.folder.save_resume_state(run.bare_network, run.optimizer, run.scaler, progress,
                                     {**run.config.to_dict(), PATIENTS: patients}, run.precision)
        if improved:
            _save_best_model(run)
        run.folder.write_history(progress.history)
    return EpochEnd(epoch, run.config.last_epoch, record, progress.best_epoch, progress.best_val_loss, _history(run))


def _history(run: _Run) -> list[EpochRecord]:
    return [EpochRecord.from_row(row, run.config.validation_variants) for row in run.progress.history]


def _save_best_model(run: _Run) -> None:
    """Write the network as it is now as the run's best model, with the run's provenance and history."""
    training = replace(run.provenance, best_epoch=run.progress.best_epoch, history=list(run.progress.history))
    save_model(run.bare_network, replace(run.model_config, training=training), run.folder.path)


def _finished(run: _Run) -> Finished:
    """The run's last event; on rank 0 (the one that says it), a best model no longer in the folder (deleted with
    it after the last epoch's save, or before a stop that took no step) is said to be gone: the run ended "best epoch
    1, model in ..." over a folder `load_model` refused."""
    history = _history(run)
    best = run.progress.best_epoch
    if best is not None and run.group.is_main and not _holds_best(run.folder, run.progress):
        return Finished(str(run.folder.path), None, None, run.stopped, history,
                        f"the best model (epoch {best}) in {run.folder.path} was deleted before the run ended; no "
                        "model is left to load")
    return _finished_as(run.folder, run.config, run.progress, run.stopped, history, bool(run.split.val_variants))


def _finished_as(folder: RunFolder, config: TrainConfig, progress: RunProgress, stopped: bool,
                 history: list[EpochRecord], validated: bool) -> Finished:
    """The last event of a run that leaves `folder` at `progress`; `validated`: its best epoch was chosen by
    validation loss, not training loss."""
    best, loss = progress.best_epoch, progress.best_val_loss
    kept = "last epoch" if config.keep_last else "best epoch"
    measure = "validation loss" if validated else "training loss"
    message = f"{kept} {best} ({measure} {loss:.4f}), model in {folder.path}" if best else NO_EPOCH_FINISHED
    return Finished(str(folder.path), best, loss, stopped, history, message)


@dataclass
class _Split:
    train: list[TrainingVolume]
    val_variants: dict[str, list[TrainingVolume]]  # the validation volumes as each input variant
    names: dict[str, list[str]]

    @property
    def val(self) -> list[TrainingVolume]:
        return next(iter(self.val_variants.values()), [])


def _prepare(scans: list[Scan], config: TrainConfig, preprocess: PreprocessConfig,
             stopped: Callable[[], bool]) -> _Split:
    """The scans normalised and resized (`prepare_training_volume`), split into training and validation volumes.
    `stopped` is asked before each scan and each validation variant's volume (`_validation_variants`), and within
    them (16 slices at a time, a brain mask's passes): preparing one takes seconds, and a Stop (or Ctrl-C) waited for
    them all (a resumed run's too: a resumed run stopped here leaves
    its folder as it was, `stopped_before_training`; one whose best model a kill cut short is not asked, as it
    rewrites that model from the split: see `_setup`)."""
    if not scans:
        raise InputError("no scans to train on")
    names = [s.name for s in scans]
    check_patient_names(names)
    train_names, val_names, test_names = split_patients(names, config.val_fraction, config.test_fraction, config.seed)
    volumes = {}
    for scan in unless_stopped(scans, stopped):
        volume = prepare_training_volume(scan, preprocess, config.skip_unlabelled and not scan.fully_labelled, stopped)
        if len(volume.mask):
            volumes[scan.name] = volume
    if not volumes:
        raise InputError("no labelled slices to learn from: mark tumour on at least one slice (paint it in napari, "
                         "or give masks that hold some)")
    _check_tumour_left(scans, volumes, preprocess.image_size)
    train = [volumes[n] for n in train_names if n in volumes]
    val = [volumes[n] for n in val_names if n in volumes]
    if len(volumes) == 1 and config.val_fraction > 0:
        only = next(iter(volumes.values()))
        if len(only.mask) >= 2:
            held_in, held_out = split_single_volume(only, config.val_fraction)
            train, val = [held_in], [held_out]
    if not train:
        raise InputError("nothing left to train on after the validation split; lower the validation fraction")
    if config.val_fraction > 0 and not val:
        warnings.warn(InputWarning(_without_validation(config, len(names), val_names, len(volumes))), stacklevel=1)
    variants = _validation_variants(val, config.validation_variants, stopped) if val else {}
    return _Split(train, variants, {"train": train_names, "validation": val_names, "test": test_names})


def _check_tumour_left(scans: list[Scan], volumes: dict[str, TrainingVolume], image_size: int) -> None:
    """Refuse a run whose masks hold no tumour at the model's size, and warn once of every marked slice whose tumour
    the resizing lost (a pixel of the model's size is tumour where tumour covers over half of it: a few voxels or a
    one-voxel outline painted on a 512-pixel slice vanish at 64 or 128 pixels), counting them, naming their scans and
    the smallest tumour that survived. The refusal said "every mask is empty: mark tumour on at least one slice" to a
    user who had, and a slice whose tumour was lost trained as tumour-free without a word (a scan's only when it lost
    all of it)."""
    marked = {scan.name: _marked_slices(scan, volumes[scan.name]) for scan in scans if scan.name in volumes}
    lost = {name: int((~slices.survived).sum()) for name, slices in marked.items() if not slices.survived.all()}
    kept = [(int(area), slices.shape) for slices in marked.values() for area in slices.areas[slices.survived]]
    too_small = ("too small or thin to survive the resizing of {} slices to the image size, "
                 f"{image_size} x {image_size} pixels")
    if not kept and lost:
        raise InputError(f"the tumour marked in {few_names(list(lost))} is {too_small.format('its')}: mark larger "
                         "regions, or choose a larger image size")
    if not kept:
        raise InputError(f"every mask is empty ({few_names(sorted(volumes))}): mark tumour on at least one slice "
                         "(paint it in napari, or give masks that hold some)")
    if lost:
        count = sum(lost.values())
        smallest, (height, width) = min(kept)
        warnings.warn(InputWarning(
            f"the tumour marked on {count} slice{'s' if count > 1 else ''} of {few_names(list(lost))} is "
            f"{too_small.format('the')}, so {'they train' if count > 1 else 'it trains'} as "
            f"tumour-free (the smallest tumour that survived covers {smallest} pixels of a {height} x {width} slice); "
            "mark larger regions, or choose a larger image size"), stacklevel=1)


@dataclass
class _MarkedSlices:
    """The slices of a scan that hold marked tumour: the tumour's pixels on each, whether any of it survived the
    resizing to the model's size, and the scan's slice shape (height, width)."""

    areas: np.ndarray
    survived: np.ndarray
    shape: tuple[int, int]


def _marked_slices(scan: Scan, volume: TrainingVolume) -> _MarkedSlices:
    """`scan`'s marked slices as `volume` (`prepare_training_volume`) holds them: `volume` holds every slice of the
    scan, or its marked slices alone when unlabelled slices are skipped (all of them when all are marked, so a
    volume as long as the scan holds every slice either way)."""
    mask = binarise_mask(scan.mask)
    areas = mask.reshape(-1, mask.shape[-2] * mask.shape[-1]).sum(axis=1)
    survived = volume.mask.reshape(len(volume.mask), -1).any(axis=1)
    marked = areas > 0
    return _MarkedSlices(areas[marked], survived[marked] if len(survived) == len(areas) else survived,
                         mask.shape[-2:])


def _validation_variants(val: list[TrainingVolume], variants: tuple[str, ...],
                         stopped: Callable[[], bool]) -> dict[str, list[TrainingVolume]]:
    """The validation volumes as each input variant, `stopped` asked before each volume of each and within a brain
    mask (`brain_mask`): a skull-stripped volume takes one to four seconds (its brain mask; 24 s for the 9 validation
    patients of kaggle_3m on 2 busy cores), and a Stop waited for them all before the run ended."""
    made: dict[str, list[TrainingVolume]] = {variant: [] for variant in variants}
    for variant, volume in unless_stopped([(variant, v) for variant in variants for v in val], stopped):
        made[variant].append(replace(volume, image=normalised_variant(volume.image, variant, stopped)))
    return made


def _without_validation(config: TrainConfig, scans: int, val_names: list[str], learnt_from: int) -> str:
    """Why a run asked to validate has nothing to validate on, and what picks its model instead: said as the run
    starts, where before only the last message's "(training loss ...)" hinted that no validation ever ran.
    `learnt_from` counts the scans with slices to learn from."""
    if learnt_from == 1:  # of one slice: one of several slices would have been split into held-out slices
        why = ("there is one scan with one slice to learn from, and validation needs a second scan (patients are "
               "split whole) or a second labelled slice of this scan (held out from training)")
    elif not val_names:
        why = f"the test fraction {config.test_fraction:g} leaves only one of the {scans} scans for training"
    else:
        why = f"the validation scans ({few_names(val_names)}) have no labelled slices"
    chosen = "the last epoch's model is kept" if config.keep_last else "the best epoch is chosen by training loss"
    return f"no validation although the validation fraction is {config.val_fraction:g}: {why}; {chosen}"


def _learning_rate(config: TrainConfig, progress: float) -> float:
    if config.lr_schedule == "cosine":
        return config.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return config.lr


def _validate_variants(run: _Run, asked: Callable[[], bool]) -> dict[str, ValidationScores] | None:
    """Validation figures for each configured input variant (none without validation volumes); None when `asked()`
    stopped a variant's validation (`validation_scores`)."""
    validation = {}
    for variant, volumes in run.split.val_variants.items():
        row = validation_scores(run.bare_network, volumes, run.loss_fn, run.config.batch_size, run.precision,
                                run.group, run.model_config.inputs, asked)
        if row is None:
            return None
        validation[variant] = ValidationScores.from_row(row, AS_IS)
    return validation


def validation_scores(network: torch.nn.Module, volumes: list[TrainingVolume], loss_fn: SegmentationLoss,
                      batch_size: int, precision: Precision, group: Group = Group(),
                      inputs: InputConfig = InputConfig(), stop: Callable[[], bool] = _never) -> dict | None:
    """Validation loss (mean over slices) and per-volume Dice/IoU/accuracy (mean over volumes), without clicks.

    Each process of `group` validates its share of the volumes and the sums are added up, so the figures are one
    process's (the default group: this process alone). `stop` is asked after every batch: a validation takes a
    minute on a CPU, and a Stop (or Ctrl-C) waited for its end. None when it stopped on any process: each asks its
    own `stop` (shares differ in batches, so no collective per batch), and the one sum at the end tells them all.
    """
    network.eval()
    total_loss, slices, per_volume, stopped = 0.0, 0, [], False
    for volume in group.share(volumes):
        counts = Counts(0, 0, 0, 0)
        for index, logits in volume_logits(network, volume, inputs, batch_size, precision):
            y = torch.from_numpy(volume.mask[index, None]).to(logits.device)
            total_loss += float(loss_fn(logits, y)) * len(index)
            slices += len(index)
            counts = counts + count((logits > 0).cpu().numpy(), y.cpu().numpy())
            if stopped := stop():
                break
        if stopped:
            break
        per_volume.append(scores(counts))
    network.train()
    total_loss, slices, dice, iou, accuracy, volume_count, stops = group.sum([
        total_loss, slices, sum(s.dice for s in per_volume), sum(s.iou for s in per_volume),
        sum(s.accuracy for s in per_volume), len(per_volume), stopped,
    ])
    if stops:
        return None
    return {
        "val_loss": total_loss / max(slices, 1),
        "val_dice": dice / volume_count,
        "val_iou": iou / volume_count,
        "val_accuracy": accuracy / volume_count,
    }


def _initial_network(config: TrainConfig, preprocess: PreprocessConfig) -> tuple[torch.nn.Module, ModelConfig]:
    """A fresh network, or the `init` model's, grown to take the configured neighbouring slices and clicks.

    A fine-tune keeps the `init` model's settings but not its threshold and clean-up: those were calibrated on that
    network's probabilities, not on the new network's (the default's, threshold 0.4 and pieces of 1000 voxels or
    more, dropped every tumour smaller than that, such as any of a fine-tune on 2D images). It gets the neutral
    clean-up, as a model trained from scratch does: the one its validation Dice is measured with (threshold 0.5,
    nothing dropped), until `lgg-unet calibrate` chooses its own."""
    if config.init:
        loaded = load_model(config.init, "cpu")
        model_config = replace(
            loaded.config, preprocess=replace(loaded.config.preprocess, image_size=preprocess.image_size),
            postprocess=PostprocessConfig(),
        )
        wanted = _model_inputs(config)
        if wanted == InputConfig():  # no inputs asked for: a fine-tune keeps those of the model it starts from
            wanted = loaded.config.inputs
        return with_inputs(loaded.network.train(), model_config, wanted)
    model_config = ModelConfig(encoder=config.encoder, decoder_channels=config.decoder_channels, preprocess=preprocess,
                               inputs=_model_inputs(config))
    return build_network(model_config), model_config


def _model_inputs(config: TrainConfig) -> InputConfig:
    return InputConfig(context_slices=config.context_slices, clicks=config.clicks)


_LOADERS: weakref.WeakSet[DataLoader] = weakref.WeakSet()  # the training loaders alive, for `_end_workers_at_exit`


def _end_workers(loader: DataLoader) -> None:
    """End `loader`'s persistent workers now, not when its iterator is freed, which a reference can put off past the
    exit (an uncaught error's traceback, a script's half-run training generator, an error a notebook keeps). Python
    leaves the workers alive then to multiprocessing, which sends them SIGTERM and waits for them: our workers ignore
    it (`leave_stopping_to_the_parent`), and the process never ended. `_iterator` and `_shutdown_workers` are the
    DataLoader's own, what it runs when its iterator is freed (set to None first: the loader never serves again)."""
    iterator, loader._iterator = loader._iterator, None
    if iterator is not None:
        iterator._shutdown_workers()


@atexit.register
def _end_workers_at_exit() -> None:
    """The workers of the trainings still open at the exit. Registered after torch's and multiprocessing's exit hooks
    (train imports torch first), so it runs before them: the workers still answer the loader then."""
    for loader in list(_LOADERS):
        _end_workers(loader)


def _loader_worker(_: int) -> None:
    """Loader workers do light work: one thread each keeps them from fighting the training threads. A stop signal
    is the parent's to act on (`leave_stopping_to_the_parent`)."""
    torch.set_num_threads(1)
    leave_stopping_to_the_parent()
