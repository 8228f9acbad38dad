"""Several processes as one job, the way `torchrun` and SLURM launch them: who this process is, the process group,
the few collectives training and batch inference need, and stopping on a scheduler's signal.

torchrun (or `srun` with the same variables) sets RANK / LOCAL_RANK / WORLD_SIZE / LOCAL_WORLD_SIZE. Without
them, or with WORLD_SIZE 1, a `Group` is one process and every collective is a no-op, so the engine runs the same
code on a laptop and on a cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from .device import pick_device
from .errors import DeviceError, InputError, JobError, LggUnetError, few_names
from .precision import Precision, choose
from .settings import field_and_flag, option_and_flag
from .stopping import Stopped, ignore_stop_signals, stop_signals

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)
_MET_BY = "lgg_unet_met_by"  # the attribute Group.own sets on an error: the rank that alone met it (see says_error)


@dataclass(frozen=True)
class Group:
    """This process's place among the job's processes, and where it computes (`cuda:LOCAL_RANK` on GPUs)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files and prints."""
        return self.rank == 0

    def share(self, items: Sequence[T]) -> list[T]:
        """This process's disjoint share of `items`: every world-th item from position rank."""
        return [items[position] for position in self._positions(len(items))]

    def gather(self, rows: Sequence[Sequence[float]], count: int, width: int) -> list[list[float]]:
        """The rows of all `count` items, in the items' order, on every process, where each process computed `rows`:
        `width` numbers for each item of its `share`, in order. For results that rank 0 reports (a patient's scores):
        one all-reduced sum in float64, where each number meets only zeros, so every number arrives exactly."""
        positions = self._positions(count)
        if len(rows) != len(positions) or any(len(row) != width for row in rows):
            raise ValueError(f"process {self.rank} gives {len(rows)} rows for a share of {len(positions)} items of "
                             f"{width} numbers each")
        flat = [0.0] * (count * width)
        for position, row in zip(positions, rows):
            flat[position * width : (position + 1) * width] = [float(value) for value in row]
        summed = self.sum(flat)
        return [summed[position * width : (position + 1) * width] for position in range(count)]

    def _positions(self, count: int) -> range:
        return range(self.rank, count, self.world)

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums of `values` over all processes (float64, so the order of adding hardly matters)."""
        if self.world == 1:
            return [float(v) for v in values]
        device = self.device if self.device.type == "cuda" else torch.device("cpu")  # NCCL reduces GPU tensors
        tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def average(self, value: float) -> float:
        return self.sum([value])[0] / self.world

    def any(self, flag: bool) -> bool:
        """True on every process when it is true on one: how a signal that reached one rank stops them all."""
        return self.sum([float(flag)])[0] > 0

    def own(self, error: E) -> E:
        """`error` (returned, to be raised) marked as met by this process alone, where every other error is taken
        as met by every process alike: its line is this process's to print (`says_error`)."""
        setattr(error, _MET_BY, self.rank)
        return error

    @contextlib.contextmanager
    def own_failures(self, kinds: tuple[type[Exception], ...] = (Exception,)) -> Iterator[None]:
        """Mark the errors of `kinds` raised in the block as this process's own (`own`): the block is its share of
        the work, which no other process did, so no other can say what went wrong."""
        try:
            yield
        except kinds as error:
            self.own(error)
            raise

    def on_main(self, action: Callable[[], None]) -> None:
        """Run `action` on rank 0 while the others wait; a user error it raises is raised on every process.

        Used for what only one process may do (lock a folder, check it may be written), so that a refusal ends
        every rank with the same one-line message instead of leaving them waiting.
        """
        error: LggUnetError | None = None
        if self.is_main:
            try:
                action()
            except LggUnetError as raised:
                if self.world == 1:
                    raise
                error = raised
        if self.world > 1:
            verdict = self.broadcast_text(json.dumps([type(error).__name__, str(error)]) if error else "")
            error = _error_from_json(verdict) if verdict else None
        if error is not None:
            raise error

    def check_same(self, facts: dict[str, Any], advice: str) -> None:
        """Refuse, on every process, a job whose processes were started with other `facts` than rank 0 (settings,
        scans, as each caller chooses): each rank acts on its own, so a rank given another --data trained on other
        patients than rank 0 recorded (silently, with --steps-per-epoch), or its step count differed and the ranks'
        collectives went out of step, which gloo ends by aborting rank 0 with a C++ 'collective mismatch' crash.

        A rank that differs says how (`facts` values: plain values, or dicts of names, e.g. scan -> shape); the
        others name the ranks that differ. `advice` ends both messages."""
        if self.world == 1:
            return
        mine = json.loads(json.dumps(facts))  # tuples as lists, as rank 0's arrive
        theirs = json.loads(self.broadcast_text(json.dumps(mine)))
        differences = [line for key in mine for line in _differences(key, theirs.get(key), mine[key])]
        flags = self.sum([float(rank == self.rank and bool(differences)) for rank in range(self.world)])
        odd = [str(rank) for rank, flag in enumerate(flags) if flag]
        if differences:
            raise self.own(InputError(f"process {self.rank} of {self.world} was started otherwise than process 0: "
                                      f"{'; '.join(differences)}; {advice}"))
        if odd:
            ranks = f"process {odd[0]}" if len(odd) == 1 else f"processes {few_names(odd)}"
            raise InputError(f"{ranks} of {self.world} started otherwise than process 0 (their own lines say how); "
                             f"{advice}")

    def broadcast_text(self, text: str) -> str:
        """Rank 0's `text` on every process, sent as bytes in tensors: nothing is pickled, so a rank unpickles
        nothing another sent (the project's promise, kept across processes too)."""
        if self.world == 1:
            return text
        device = self.device if self.device.type == "cuda" else torch.device("cpu")  # NCCL sends GPU tensors
        data = text.encode("utf-8") if self.is_main else b""
        size = torch.tensor([len(data)], dtype=torch.int64, device=device)
        dist.broadcast(size, src=0)
        if not size.item():
            return ""
        buffer = torch.zeros(int(size.item()), dtype=torch.uint8, device=device)
        if self.is_main:
            buffer.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        dist.broadcast(buffer, src=0)
        return buffer.cpu().numpy().tobytes().decode("utf-8")

    def average_buffers(self, network: torch.nn.Module) -> None:
        """Make batch-norm running statistics the mean over the processes, each of which saw only its own batches,
        so that every process validates, and rank 0 saves, the same model."""
        if self.world == 1:
            return
        for buffer in network.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer /= self.world

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def wrap(self, network: torch.nn.Module, sync_batchnorm: bool = False) -> torch.nn.Module:
        """DistributedDataParallel around `network` (already on `device`) when there are several processes."""
        if self.world == 1:
            return network
        if sync_batchnorm:
            if self.device.type != "cuda":
                raise DeviceError(f"{field_and_flag('sync_batchnorm')} needs CUDA GPUs; leave it off on the CPU")
            network = torch.nn.SyncBatchNorm.convert_sync_batchnorm(network)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(network, device_ids=ids)

    def share_of(self, sampler: Sampler) -> Sampler:
        """This process's share of `sampler`'s draws (the sampler itself for one process)."""
        return sampler if self.world == 1 else ShareOfDraws(sampler, self.rank, self.world)


class ShareOfDraws(Sampler):
    """Every world-th draw of another sampler, from position rank: the ranks' shares are disjoint and together
    are exactly what one process would draw, so an epoch's sampling (and its seed) does not depend on the number
    of processes. The training loop reseeds the wrapped sampler per epoch."""

    def __init__(self, sampler: Sampler, rank: int, world: int) -> None:
        self.sampler, self.rank, self.world = sampler, rank, world

    def __iter__(self) -> Iterator[int]:
        for position, index in enumerate(self.sampler):
            if position % self.world == self.rank:
                yield index

    def __len__(self) -> int:
        return len(range(self.rank, len(self.sampler), self.world))


def launched_ranks() -> Group:
    """Rank and world size from torchrun's environment (or an existing process group); one process otherwise."""
    if dist.is_available() and dist.is_initialized():
        local_world = _env_int("LOCAL_WORLD_SIZE", 1)
        return Group(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0), local_world)
    world = _env_int("WORLD_SIZE", 1)
    if world == 1:
        return Group()
    rank, local_rank = _env_int("RANK", None), _env_int("LOCAL_RANK", 0)
    if rank is None or not 0 <= rank < world:
        raise InputError(f"WORLD_SIZE is {world} but RANK is {os.environ.get('RANK')!r}; start the job with torchrun")
    return Group(rank, world, local_rank, _env_int("LOCAL_WORLD_SIZE", 1))


def says_error(error: BaseException) -> bool:
    """Whether this process prints the line of `error`, the user error that ends it. In a job of several processes,
    torchrun showed one identical line per process: an error every process meets alike (a check of the command line
    each was given, rank 0's verdict sent to all, "another process ended") is printed by the first process of each
    machine (LOCAL_RANK 0) alone. Not by rank 0 alone: each machine's log is its own, and a machine that sees other
    files than rank 0's (no shared file system) says what it found. An error a process met alone (`Group.own`: a case
    of its share, its GPU, inputs other than rank 0's) is printed by that process, the only one that can say it."""
    try:
        ranks = launched_ranks()
    except LggUnetError:  # torchrun's variables cannot be read: no job to speak for
        return True
    met_by = getattr(error, _MET_BY, None)
    return ranks.local_rank == 0 if met_by is None else met_by == ranks.rank


def agreed_precision(group: Group, requested: str, keep: Precision | None = None,
                     stop: Callable[[], bool] | None = None) -> Precision:
    """The precision of every process: rank 0's choice (`choose`'s, with `keep`); processes that chose differently
    (channels-last or not, bf16 or fp32) cannot train one DDP model.

    Only rank 0 resolves 'auto' (it has nothing to refuse, so the others have nothing to check): on a CPU each process
    timed the candidates at once, slowing each other's probes, and each wrote its own verdict to the machine's
    remembered choice, where the last writer, not rank 0, decided what later runs read. `stop` (this process's own)
    can end that timing on rank 0; every process then raises `stopping.Stopped`, none waiting for a choice."""
    if group.world == 1:
        return choose(group.device, requested, keep, stop)
    said = ""  # only rank 0's is sent
    if group.is_main or requested != "auto":
        try:
            mine = choose(group.device, requested, keep, stop)
            said = json.dumps([mine.name, mine.channels_last, mine.why])
        except Stopped:
            said = json.dumps(None)
    sent = json.loads(group.broadcast_text(said))
    if sent is None:
        raise Stopped
    name, channels_last, why = sent
    return Precision(group.device, str(name), bool(channels_last), str(why))


@contextlib.contextmanager
def process_group(requested_device: str | torch.device = "auto") -> Iterator[Group]:
    """This process's `Group`, joined to the job's process group for the duration (NCCL on CUDA, gloo otherwise).

    Under torchrun each process takes the GPU numbered by its LOCAL_RANK. A process group that the caller
    already initialised is used and left open; one this function opened is closed at the end.
    """
    ranks = launched_ranks()
    device = pick_device(requested_device)
    if ranks.world == 1:
        yield Group(device=device)
        return
    if device.type == "mps":
        raise DeviceError("several processes train on CUDA GPUs or the CPU, not on Apple MPS; use "
                          f"{option_and_flag('device', 'cpu')}")
    if device.type == "cuda":
        if device.index is None:
            if ranks.local_rank >= torch.cuda.device_count():
                raise ranks.own(DeviceError(f"{ranks.local_world} processes on this node but only "
                                            f"{torch.cuda.device_count()} GPUs; start one process per GPU (torchrun "
                                            "--nproc_per_node)"))
            device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    opened = not dist.is_initialized()
    if opened:
        with _stoppable_while_waiting():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield Group(ranks.rank, ranks.world, ranks.local_rank, ranks.local_world, device)
    except RuntimeError as error:
        if not _lost_a_process(error):
            raise
        raise JobError(f"process {ranks.rank} of {ranks.world}: another process of this job ended, so this one "
                       "stops too; its own message (or the launcher's) says why") from error
    finally:
        if opened:
            dist.destroy_process_group()


@contextlib.contextmanager
def _stoppable_while_waiting() -> Iterator[None]:
    """Let the stop signals end this process while it waits for the others to join: a rank whose peer failed before
    joining (another node's missing --data) waited up to the 30-minute default timeout, and as `stop_on_signals` only
    sets a flag that nothing reads there, it outlived Ctrl-C and SIGTERM (torchrun's too, which had to SIGKILL it
    after its shutdown timeout). Nothing is written before the group is joined, so there is nothing to keep."""
    if threading.current_thread() is not threading.main_thread():  # Python's rule for signal handlers
        yield
        return
    with _signals_handled(signal.SIG_DFL):
        yield


def _lost_a_process(error: RuntimeError) -> bool:
    """Whether a collective failed because a peer is gone: NCCL raises DistError; gloo a RuntimeError from its
    transport ("Connection closed by peer", naming gloo's source file)."""
    return isinstance(error, dist.DistError) or "gloo" in str(error)


@contextlib.contextmanager
def stop_on_signals(notice: Callable[[], None] | None = None,
                    ended: threading.Event | None = None) -> Iterator[Callable[[], bool]]:
    """Yield a `stop` callable that turns true on Ctrl-C, SIGTERM or SIGUSR1, instead of the process dying.

    Training polls it between steps (and agrees on it across processes) and between validation batches, so a
    scheduler's pre-emption ends a run with the resume state on disk and exit code 0. `notice` runs on the first
    signal: the stop may come a step or a batch later, and a Ctrl-C nothing answered looked ignored. `ended` (the
    CLI's stop, `interrupt_on_signals`) is set where the block ends without an error after a stop: the program ends on
    that stop, so the signals after it are ignored as after an interrupt (one pressed again as `train` ended raised in
    Python's exit hooks: a traceback, or death by SIGINT instead of exit code 0). Main thread only (Python's rule for
    signal handlers).
    """
    asked = threading.Event()

    def ask(*_: object) -> None:
        if notice is not None and not asked.is_set():
            notice()
        asked.set()

    with _signals_handled(ask):
        yield asked.is_set
        if asked.is_set() and ended is not None:
            ended.set()  # before the handlers in place before are back


@contextlib.contextmanager
def interrupt_on_signals(stopped: threading.Event) -> Iterator[None]:
    """Make SIGTERM and SIGUSR1 raise KeyboardInterrupt like Ctrl-C, so clean-up code runs on a scheduler's stop. The
    first of these signals sets `stopped`, so a caller knows of the stop even where the KeyboardInterrupt was caught on
    its way (by an import it interrupted). Those after it are ignored while an exception is being handled, the clean-up
    the first one started (a lock let go, a temporary file removed), which a second Ctrl-C 10 ms after the first cut
    short; not where the first was swallowed and the command went on, which, ignoring them, SIGKILL alone ended. A
    stop the command answered itself (`stop_on_signals`' `ended`: a training that stopped between steps and saved)
    ignores them all: it ends as stopped, exit code 0, not interrupted."""
    raised = threading.Event()  # `stopped` by a KeyboardInterrupt of ours, not by a stop answered without one

    def interrupt(number: int, frame: Any) -> None:
        if stopped.is_set() and (not raised.is_set() or sys.exc_info()[1] is not None):
            return
        raised.set()
        stopped.set()
        signal.default_int_handler(number, frame)

    with _signals_handled(interrupt):
        yield


def leave_stopping_to_the_parent() -> None:
    """In a DataLoader worker: ignore the stop signals. A scheduler sends them to every process of the job (SLURM's
    scancel, a kill of the process group): a worker that died of SIGTERM failed the training with "DataLoader worker
    is killed by signal" instead of the stop between steps that keeps its resume state. The parent stops, then ends
    its workers."""
    ignore_stop_signals()


@contextlib.contextmanager
def _signals_handled(handler: Callable[..., Any]) -> Iterator[None]:
    previous = {number: signal.signal(number, handler) for number in stop_signals()}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def _differences(what: str, theirs: Any, mine: Any) -> list[str]:
    """How this process's `mine` differs from rank 0's `theirs`, in a few words for one line: for a dict (names ->
    values) the names only one side has and those whose values differ, in a few names each."""
    if theirs == mine:
        return []
    if not (isinstance(theirs, dict) and isinstance(mine, dict)):
        return [f"{what} {theirs!r} on process 0, {mine!r} here"]
    only_here, only_there = sorted(set(mine) - set(theirs)), sorted(set(theirs) - set(mine))
    changed = sorted(name for name in set(mine) & set(theirs) if mine[name] != theirs[name])
    return ([f"{what}: {len(only_here)} that process 0 lacks ({few_names(only_here)})"] if only_here else []) + (
        [f"{what}: {len(only_there)} of process 0's missing here ({few_names(only_there)})"] if only_there else []) + (
        [f"{what}: {len(changed)} that differ from process 0's ({few_names(changed)})"] if changed else [])


def _error_from_json(text: str) -> LggUnetError:
    """The user error rank 0 sent as [class name, message], as the same one of our error types."""
    name, message = json.loads(text)
    kinds = {kind.__name__: kind for kind in (LggUnetError, *LggUnetError.__subclasses__())}
    return kinds.get(name, LggUnetError)(message)


def _env_int(name: str, default: int | None) -> int | None:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise InputError(
            f"environment variable {name}={text!r} is not a whole number; start the job with torchrun"
        ) from None
