"""Training in two processes as torchrun starts them (gloo on the CPU): shares, one writer, agreed stop, resume."""

import contextlib
import datetime
import gc
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import tifffile
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import napari_lgg_unet
from napari_lgg_unet.cli import main
from napari_lgg_unet.engine.dataset import SliceDataset, TrainingVolume, prepare_training_volume, tumour_aware_sampler
from napari_lgg_unet.engine import distributed, precision
from napari_lgg_unet.engine.device import OOM_ADVICE
from napari_lgg_unet.engine.distributed import Group, ShareOfDraws
from napari_lgg_unet.engine.errors import DeviceError
from napari_lgg_unet.engine.events import Finished
from napari_lgg_unet.engine.io import Scan, load_patient
from napari_lgg_unet.engine.losses import SegmentationLoss
from napari_lgg_unet.engine.model import load_model
from napari_lgg_unet.engine.precision import Precision, choose
from napari_lgg_unet.engine.preprocess import PreprocessConfig
from napari_lgg_unet.engine.train import TrainConfig, train_model, validation_scores

from rank_helpers import free_port, rank_variables

PATIENTS = ["TCGA_CS_4941_19960909", "TCGA_CS_4942_19970222", "TCGA_CS_6665_20010817", "TCGA_DU_5849_19950405"]
# mobilenet_v2, as test_train.py's FAST: what these tests check is the processes' sharing, not the encoder
SETTINGS = dict(encoder="mobilenet_v2", image_size=64, batch_size=4, lr=1e-3, decoder_channels=[32, 16, 16, 16, 16],
                workers=0, device="cpu", precision="fp32", epochs=2, steps_per_epoch=8, val_fraction=0.5, seed=3)
WORKER = Path(__file__).with_name("ddp_worker.py")
TRAIN_ARGS = ["--encoder", "mobilenet_v2", "--epochs", "50", "--steps-per-epoch", "3", "--batch-size", "2",
              "--image-size", "64", "--decoder-channels", "16,16,16,16,16", "--workers", "0", "--val-fraction", "0.5",
              "--device", "cpu"]


@pytest.fixture(scope="module")
def data(short_lgg_patients):
    return short_lgg_patients(PATIENTS)


def _launch(command: list[str], port: int, rank: int, **popen) -> subprocess.Popen:
    """One of two processes with the variables torchrun sets."""
    source = str(Path(napari_lgg_unet.__file__).parents[1])
    env = {**os.environ, **rank_variables(rank, port),
           "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, *command], env=env, **popen)


def test_ranks_draw_disjoint_shares_that_together_are_what_one_process_draws():
    sampler = tumour_aware_sampler(_dataset_with_tumour_on(range(0, 40, 3), 40), 30, 0.5, seed=7)

    def drawn(share):  # each process reseeds the sampler at the start of an epoch
        sampler.generator.manual_seed(7)
        return list(share)

    draws = drawn(sampler)
    shares = [drawn(ShareOfDraws(sampler, rank, 4)) for rank in range(4)]
    assert [len(s) for s in shares] == [len(ShareOfDraws(sampler, r, 4)) for r in range(4)] == [8, 8, 7, 7]
    assert sorted(sum(shares, [])) == sorted(draws) and shares[1] == draws[1::4]
    assert Group().share_of(sampler) is sampler and Group().share([1, 2, 3]) == [1, 2, 3]


def _dataset_with_tumour_on(slices, total) -> SliceDataset:
    mask = np.zeros((total, 4, 4), bool)
    mask[list(slices), 1, 1] = True
    return SliceDataset([TrainingVolume("v", np.zeros((total, 3, 4, 4), np.float16), mask)])


def test_two_process_training_shares_each_epoch_writes_one_model_and_validates_like_one_process(data, tmp_path):
    out, port = tmp_path / "model", free_port()
    ranks = [_launch([str(WORKER), str(data), str(out), str(tmp_path / f"rank{r}.json"), json.dumps(SETTINGS)], port, r)
             for r in range(2)]
    assert [p.wait(timeout=600) for p in ranks] == [0, 0]
    records = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]

    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "rank0.json", "rank1.json"]
    model = load_model(out)
    training = model.config.training
    assert training.processes == 2 and len(training.history) == training.best_epoch

    # Each epoch's draws are one process's draws of 2 x batch x steps slices, dealt out alternately.
    preprocess = PreprocessConfig(image_size=SETTINGS["image_size"])
    scans = {name: load_patient(data / name) for name in PATIENTS}
    train = SliceDataset([prepare_training_volume(scans[n], preprocess) for n in training.patients("train")])
    per_epoch = SETTINGS["batch_size"] * SETTINGS["steps_per_epoch"]
    sampler = tumour_aware_sampler(train, 2 * per_epoch, 0.5, SETTINGS["seed"])
    for epoch in range(SETTINGS["epochs"]):
        sampler.generator.manual_seed(SETTINGS["seed"] + epoch)
        draws = list(sampler)
        for rank, record in enumerate(records):
            assert record["drawn"][epoch * per_epoch : (epoch + 1) * per_epoch] == draws[rank::2]

    losses = records[0]["losses"]
    assert records[1]["losses"] == losses and len(losses) == SETTINGS["epochs"] * SETTINGS["steps_per_epoch"]
    assert np.mean(losses[-4:]) < 0.9 * np.mean(losses[:4])

    # The validation figures of the saved epoch, computed over two processes, are one process's on those weights.
    val = [prepare_training_volume(scans[n], preprocess) for n in training.patients("validation")]
    assert len(val) == 2
    single = validation_scores(model.network, val, SegmentationLoss("dice+bce"), SETTINGS["batch_size"],
                               choose("cpu", "fp32"))
    saved = training.history[training.best_epoch - 1]
    for key in ("val_loss", "val_dice", "val_iou", "val_accuracy"):
        assert saved[key] == pytest.approx(single[key], rel=1e-5, abs=1e-7)


def test_sigterm_to_one_rank_stops_both_at_the_same_step_and_one_process_resumes(data, tmp_path, capsys):
    out, port = tmp_path / "model", free_port()
    command = ["-m", "napari_lgg_unet", "train", "--data", str(data), "--out", str(out), *TRAIN_ARGS]
    main_rank = _launch(command, port, 0, stderr=subprocess.PIPE, text=True)
    other = _launch(command, port, 1, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = []
    for line in main_rank.stderr:
        seen.append(line)
        if line.startswith("epoch 1:"):  # the first epoch is validated and saved: stop in the middle of the run
            other.send_signal(signal.SIGTERM)
            break
    rest = main_rank.communicate(timeout=300)[1]
    assert (main_rank.returncode, other.wait(timeout=300)) == (0, 0), "".join(seen) + rest
    history = json.loads((out / "history.json").read_text())
    done = len(history)
    assert 1 <= done < 50 and "lgg-unet: error" not in rest

    assert main(
        ["train", "--data", str(data), "--out", str(out), *TRAIN_ARGS, "--epochs", str(done + 1), "--resume"]
    ) == 0
    assert "best epoch" in capsys.readouterr().out
    assert [row["epoch"] for row in json.loads((out / "history.json").read_text())] == list(range(1, done + 2))


def _in_group(group: int) -> list[int]:
    """The processes of process group `group` (Linux: listed in /proc)."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if os.getpgid(int(name)) == group:
                found.append(int(name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals a process group, listed in /proc")
def test_sigterm_to_the_whole_process_group_stops_a_run_with_loader_workers_between_steps(data, tmp_path):
    """SLURM's scancel signals every process of the job, the loader's worker too: it died of SIGTERM, and the run
    failed with "internal error: DataLoader worker ... is killed by signal" instead of stopping between steps."""
    out = tmp_path / "model"
    workers = TRAIN_ARGS.index("--workers")
    args = [*TRAIN_ARGS[:workers], "--workers", "1", *TRAIN_ARGS[workers + 2:]]
    source = str(Path(napari_lgg_unet.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    run = subprocess.Popen([sys.executable, "-m", "napari_lgg_unet", "train", "--data", str(data), "--out", str(out),
                            *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                           start_new_session=True, env=env)
    seen = []
    for line in run.stderr:
        seen.append(line)
        if line.startswith("epoch 1:"):
            assert len(_in_group(run.pid)) >= 2, "no loader worker in the group"
            os.killpg(run.pid, signal.SIGTERM)
            break
    rest = run.communicate(timeout=300)[1]
    assert run.returncode == 0 and "error" not in rest, "".join(seen) + rest
    assert rest.count("stopping after the current step") == 1  # said at once: a stop may wait for a validation
    assert 1 <= len(json.loads((out / "history.json").read_text())) < 50


def _train_in_auto_precision_timed_by_rank_0_alone(rank: int, port: int, out: str, cache: str) -> None:
    """One rank of a short training in 'auto' precision on the CPU, where timing the candidates is rank 0's alone."""
    os.environ.update(rank_variables(rank, port), XDG_CACHE_HOME=cache)

    def timed(candidates: list[Precision], stop: Callable[[], bool] | None = None) -> Precision:
        assert rank == 0, f"rank {rank} timed the precision candidates too"
        return candidates[1]  # fp32 channels-last, as if it had won on rank 0

    precision._fastest = timed
    for _ in train_model(_three_scans(), _tiny_config(steps_per_epoch=1, precision="auto"), out):
        pass


def _three_scans() -> list[Scan]:
    rng = np.random.default_rng(0)
    return [Scan(f"P{i}", rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8), rng.random((4, 32, 32)) > 0.7, True)
            for i in range(3)]


def _tiny_config(**changes) -> TrainConfig:
    return TrainConfig(**{**dict(epochs=1, batch_size=2, image_size=32, decoder_channels=(8, 8, 8, 8, 8),
                                 val_fraction=0.34, workers=0, device="cpu"), **changes})


def test_only_rank_0_times_auto_precision_and_every_rank_trains_in_what_it_remembers(tmp_path):
    # Every rank timed the candidates at once (slowing each other's probes) and wrote its own verdict to the machine's
    # remembered choice: the last writer, not rank 0 whose choice the run trained in, decided what later runs read.
    torch.multiprocessing.spawn(_train_in_auto_precision_timed_by_rank_0_alone,
                                args=(free_port(), str(tmp_path / "model"), str(tmp_path / "cache")), nprocs=2)
    measured = f"auto: measured on {datetime.date.today().isoformat()}"
    assert load_model(tmp_path / "model").config.training.device == f"cpu, fp32, 1 threads; {measured}"
    remembered = json.loads((tmp_path / "cache" / "napari-lgg-unet" / "precision.json").read_text())
    assert [(entry["name"], entry["channels_last"]) for entry in remembered.values()] == [("fp32", True)]


def _train_in_auto_precision_stopped_while_rank_0_times_it(rank: int, port: int, out: str, cache: str) -> None:
    """One rank of a training in 'auto' precision whose rank 0 alone is asked to stop, once its timing has begun."""
    os.environ.update(rank_variables(rank, port), XDG_CACHE_HOME=cache)
    timed, timing = [], precision.autocast
    precision.autocast = lambda candidate: timed.append(candidate) or timing(candidate)
    events = list(train_model(_three_scans(), _tiny_config(precision="auto"), out, lambda: rank == 0 and bool(timed)))
    assert [type(event) for event in events] == [Finished] and events[0].stopped, events
    assert len(timed) == (1 if rank == 0 else 0), f"rank {rank} timed {len(timed)} passes"


def test_a_stop_asked_on_rank_0_while_it_times_auto_precision_ends_every_rank_before_the_next_pass(tmp_path):
    """Rank 0 times 'auto' alone while the others wait for its choice: its stop ends the timing, and every rank
    ends as stopped instead of waiting for a choice that never comes."""
    torch.multiprocessing.spawn(_train_in_auto_precision_stopped_while_rank_0_times_it,
                                args=(free_port(), str(tmp_path / "model"), str(tmp_path / "cache")), nprocs=2)
    assert list(tmp_path.iterdir()) == []


def _train_and_check_the_wrapper_is_gone_when_the_group_closes(rank: int, port: int, out: str) -> None:
    """One rank of a short training that fails if a DistributedDataParallel still exists when the group is destroyed.

    Its Reducer would then drop the group last, holding the GIL while the group's destructor waits for gloo's worker
    threads, one of which may need the GIL to release its last all-reduce: a rank that never ends.
    """
    os.environ.update(rank_variables(rank, port))
    destroy = dist.destroy_process_group

    def destroy_after_the_wrapper(*args, **kwargs):
        wrappers = sum(isinstance(thing, DistributedDataParallel) for thing in gc.get_objects())
        assert wrappers == 0, f"rank {rank}: {wrappers} DistributedDataParallel alive when the process group closes"
        destroy(*args, **kwargs)

    dist.destroy_process_group = destroy_after_the_wrapper
    config = _tiny_config(steps_per_epoch=2, precision="fp32")
    assert next(event for event in train_model(_three_scans(), config, out, stop=lambda: True)
                if isinstance(event, Finished))


def test_the_ddp_wrapper_is_released_before_the_process_group_is_destroyed(tmp_path):
    # A rank stopped by SIGTERM once never ended: the generator's last reference to the DDP model dropped the group
    # after destroy_process_group, in a destructor that holds the GIL while gloo's worker waited for it (deadlock).
    torch.multiprocessing.spawn(_train_and_check_the_wrapper_is_gone_when_the_group_closes,
                                args=(free_port(), str(tmp_path / "model")), nprocs=2)


def test_no_source_file_uses_a_pickle_based_collective_or_pickle():
    """Ranks exchange tensors and JSON text only (Group.broadcast_text), so no rank unpickles what another sent."""
    source = Path(napari_lgg_unet.__file__).parent
    forbidden = ("broadcast_object_list", "all_gather_object", "gather_object", "scatter_object_list",
                 "send_object_list", "recv_object_list", "import pickle", "torch.load(")
    used = [(path.name, word) for path in source.rglob("*.py") for word in forbidden if word in path.read_text()]
    assert used == []


def test_when_one_rank_is_killed_the_survivor_ends_with_one_line_and_exit_2(tmp_path, tiny_model_dir):
    rng = np.random.default_rng(0)
    for case in range(6):
        (tmp_path / "cohort" / f"C{case}").mkdir(parents=True)
        for n in range(1, 3):
            tifffile.imwrite(tmp_path / "cohort" / f"C{case}" / f"C{case}_{n}.tif",
                             rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
    command = ["-m", "napari_lgg_unet", "predict", "--model", str(tiny_model_dir), "--input", str(tmp_path / "cohort"),
               "--output", str(tmp_path / "masks"), "--device", "cpu"]
    port = free_port()
    survivor = _launch(command, port, 0, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = _launch(command, port, 1, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert survivor.stdout.readline().startswith("segmenting on")  # both ranks have joined the job
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    _, err = survivor.communicate(timeout=300)
    last = err.splitlines()[-1]
    assert survivor.returncode == 2, err
    assert last.startswith("lgg-unet: error: process 0 of 2: another process of this job ended"), err
    assert "Traceback" not in err and "internal error" not in err


def _train_over_a_model(rank: int, port: int, out: str) -> None:
    """One rank of a training into a folder that holds a model: rank 0 refuses, and the refusal reaches rank 1."""
    from napari_lgg_unet.engine.errors import InputError

    os.environ.update(rank_variables(rank, port))
    scans = [Scan("P", np.zeros((2, 32, 32), np.float32), np.zeros((2, 32, 32), bool), False)]
    with pytest.raises(InputError, match="already holds a model; choose a new output folder"):
        list(train_model(scans, TrainConfig(epochs=1, workers=0, device="cpu"), out))


def test_a_refusal_on_rank_0_reaches_every_rank_as_the_same_error_type(tmp_path, tiny_model_dir):
    torch.multiprocessing.spawn(_train_over_a_model, args=(free_port(), str(tiny_model_dir)), nprocs=2)


def _train_with_other_scans_and_out_on_rank_1(rank: int, port: int, out: str) -> None:
    """One rank of a job whose rank 1 sees another --data (one more scan) and another seed: both refuse at once,
    naming them as the API and the CLI do. Each has its own output folder, which is allowed (only rank 0 writes; a
    caller may give each rank a temporary folder)."""
    from napari_lgg_unet.engine.errors import InputError

    os.environ.update(rank_variables(rank, port))
    mask = np.zeros((2, 32, 32), bool)
    mask[:, 8:16, 8:16] = True
    scans = [Scan(name, np.ones((2, 32, 32), np.float32), mask, False) for name in ("P1", "P2", "P3")[: 2 + rank]]
    said = ("process 1 of 2 was started otherwise than process 0: seed (--seed) 0 on process 0, 1 here; scans: 1 "
            "that process 0 lacks (P3)" if rank else "process 1 of 2 started otherwise than process 0 (their own "
            "lines say how)")
    with pytest.raises(InputError, match=re.escape(f"{said}; every process of a job needs the same settings and the "
                                                   "same scans (--data)")):
        list(train_model(scans, TrainConfig(epochs=1, workers=0, device="cpu", image_size=32, steps_per_epoch=1,
                                            batch_size=2, seed=rank), f"{out}{rank}"))


def test_ranks_started_with_other_data_refuse_with_what_differs_before_any_folder_is_made(tmp_path):
    # Another --data on rank 1 trained silently on other patients than rank 0 recorded, or (other step counts) ended
    # rank 0 in a C++ abort of gloo ("collective mismatch") and rank 1 with "another process ended".
    torch.multiprocessing.spawn(_train_with_other_scans_and_out_on_rank_1, args=(free_port(), str(tmp_path / "m")),
                                nprocs=2)
    assert list(tmp_path.iterdir()) == []


def test_the_first_line_names_the_processes_after_the_device_and_before_the_reason_for_the_precision(tmp_path):
    # It read "on cpu, bf16, 1 threads; auto: remembered from 2026-12-04 in 2 processes (batch 4 each)".
    from types import SimpleNamespace

    from napari_lgg_unet.engine.train import _prepared

    run = SimpleNamespace(
        split=SimpleNamespace(train=[1, 2, 3], val=[4]), loader=SimpleNamespace(dataset=range(81)),
        group=Group(rank=0, world=2), config=SimpleNamespace(batch_size=4, last_epoch=2), steps=3,
        precision=Precision(torch.device("cpu"), "bf16", False, "auto: remembered from 2026-12-04"),
        progress=SimpleNamespace(epochs_done=0), folder=SimpleNamespace(path=tmp_path))
    threads = torch.get_num_threads()
    assert _prepared(run).message == ("3 training and 1 validation volumes, 81 slices, on cpu, bf16, "
                                      f"{threads} threads in 2 processes (batch 4 each); "
                                      "auto: remembered from 2026-12-04")


def test_a_rank_waiting_for_a_peer_that_never_joins_ends_on_sigterm(tmp_path):
    # It waited for the 30-minute default timeout: the stop handler only set a flag, and torchrun had to SIGKILL it.
    script = ("from napari_lgg_unet.engine.distributed import process_group, stop_on_signals\n"
              "print('joining', flush=True)\n"
              "with stop_on_signals(), process_group('cpu'):\n"
              "    pass\n")
    rank_0 = _launch(["-c", script], free_port(), 0, stdout=subprocess.PIPE, text=True)  # rank 1 never comes
    try:
        assert rank_0.stdout.readline() == "joining\n"
        time.sleep(1)  # into init_process_group
        rank_0.send_signal(signal.SIGTERM)
        assert rank_0.wait(timeout=30) == -signal.SIGTERM
    finally:
        if rank_0.poll() is None:
            rank_0.kill()
            rank_0.wait()


def _train_as_rank_out_of_memory_on_rank_1(rank: int, port: int, argv: list[str], log: str) -> None:
    """One of two processes of `lgg-unet train` (exit 2, its output in `log`.<rank>) whose rank 1 runs out of memory
    at its first step, as one GPU of a job does."""
    if rank == 1:
        from napari_lgg_unet.engine import train

        def out_of_memory(*_: object) -> None:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        train._train_step = out_of_memory  # this process's own module: spawn started it afresh
    os.environ.update(rank_variables(rank, port))
    with open(f"{log}.{rank}", "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        assert main(argv) == 2


def test_a_rank_whose_device_runs_out_of_memory_says_so_itself_and_rank_0_says_another_process_ended(
        sample_patient_dir, tmp_path):
    """Only the first process prints what every process meets alike; running out of memory on one GPU is that
    process's own, so it is the one to say it (rank 0 only knows that another process ended)."""
    argv = ["train", "--data", str(sample_patient_dir), "--out", str(tmp_path / "run"), *TRAIN_ARGS]
    torch.multiprocessing.spawn(_train_as_rank_out_of_memory_on_rank_1, args=(free_port(), argv, str(tmp_path / "log")),
                                nprocs=2)
    errors = {rank: [line for line in (tmp_path / f"log.{rank}").read_text().splitlines() if "error:" in line]
              for rank in (0, 1)}
    assert errors[1] == [f"lgg-unet: error: {OOM_ADVICE}"]
    assert len(errors[0]) == 1 and errors[0][0].startswith("lgg-unet: error: process 0 of 2: another process of "
                                                           "this job ended")
    assert not (tmp_path / "run").exists()


def test_a_process_without_a_gpu_of_its_own_says_so_itself(monkeypatch):
    """Four processes on a machine of two GPUs: processes 2 and 3 refuse, process 0 does not, so theirs are the only
    lines that can say why."""
    monkeypatch.setattr(distributed, "pick_device", lambda requested: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for name, value in {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "4"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(DeviceError, match="^4 processes on this node but only 2 GPUs") as refused:
        with distributed.process_group("cuda"):
            pass
    assert distributed.says_error(refused.value)
    assert not distributed.says_error(DeviceError("met by every process alike"))


def test_a_refused_device_or_sync_batchnorm_is_named_as_the_api_and_the_cli_name_it(monkeypatch):
    """"use --device cpu" and "--sync-batchnorm needs CUDA GPUs" meant nothing to a script's TrainConfig."""
    with pytest.raises(DeviceError, match=re.escape("sync_batchnorm (--sync-batchnorm) needs CUDA GPUs")):
        Group(world=2).wrap(torch.nn.Conv2d(1, 1, 1), sync_batchnorm=True)
    monkeypatch.setattr(distributed, "pick_device", lambda requested: torch.device("mps"))
    for name, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(DeviceError, match=re.escape("not on Apple MPS; use device='cpu' (--device cpu)")):
        with distributed.process_group("mps"):
            pass


def _cli_as_rank(rank: int, port: int, argv: list[str], log: str, signal_at: int = 0) -> None:
    """One of two processes of an `lgg-unet` command (`argv`; its exit code, output and the scans it read in
    `log`.<rank>), started as torchrun starts them; with `signal_at`, it sends itself SIGTERM as it reads its
    `signal_at`-th scan (as torchrun forwards a scheduler's stop to every rank)."""
    from napari_lgg_unet.engine import cohort

    os.environ.update(rank_variables(rank, port))
    read, loaded = cohort.load_scan, []

    def recording(source, *args, **kwargs):
        loaded.append(Path(source).name)
        if len(loaded) == signal_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return read(source, *args, **kwargs)

    cohort.load_scan = recording  # this process's own module: spawn started it afresh
    with open(f"{log}.{rank}", "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(argv)
    Path(f"{log}.{rank}.json").write_text(json.dumps({"code": code, "loaded": loaded}))


def _run_as_two_ranks(argv: list[str], log: Path, signal_at: int = 0) -> list[tuple[dict, str]]:
    """Each rank's exit code and scans read, and its output."""
    torch.multiprocessing.spawn(_cli_as_rank, args=(free_port(), argv, str(log), signal_at), nprocs=2)
    return [(json.loads(Path(f"{log}.{rank}.json").read_text()), Path(f"{log}.{rank}").read_text()) for rank in (0, 1)]


def test_two_process_evaluate_shares_the_patients_and_rank_0_alone_reports_them_all_as_one_process_does(
        data, tiny_model_dir, tmp_path, capsys):
    # Every process evaluated every patient, printed the whole table and wrote the --json.
    # fp32 pinned: `auto` times the number formats, and under load the two runs could choose differently
    argv = ["evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--device", "cpu", "--precision", "fp32"]
    (rank_0, said), (rank_1, quiet) = _run_as_two_ranks([*argv, "--json", str(tmp_path / "two.json")], tmp_path / "log")
    assert rank_0 == {"code": 0, "loaded": PATIENTS[0::2]} and rank_1 == {"code": 0, "loaded": PATIENTS[1::2]}
    assert quiet == "" and all(said.count(f"{name} ") == 1 for name in PATIENTS) and "4 patients: mean Dice" in said
    assert main([*argv, "--json", str(tmp_path / "one.json")]) == 0
    two, one = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("two", "one"))
    assert two["patients"] == one["patients"] and two["mean_dice"] == one["mean_dice"]


def test_two_process_calibrate_shares_the_patients_and_chooses_and_writes_what_one_process_does(
        data, tiny_model_dir, tmp_path):
    # Every process segmented every patient and each tried to lock and write the model folder.
    for copy in ("two", "one"):
        shutil.copytree(tiny_model_dir, tmp_path / copy)
    argv = ["calibrate", "--data", str(data), "--split", "all", "--input-variants", "as-is,flair-only", "--device",
            "cpu", "--model"]
    (rank_0, said), (rank_1, quiet) = _run_as_two_ranks([*argv, str(tmp_path / "two")], tmp_path / "log")
    assert rank_0 == {"code": 0, "loaded": PATIENTS[0::2]} and rank_1 == {"code": 0, "loaded": PATIENTS[1::2]}
    assert quiet == "" and said.count("mean Dice") == 2  # the choice's and keep largest's, on one line
    assert main([*argv, str(tmp_path / "one")]) == 0
    two, one = (load_model(tmp_path / copy).config for copy in ("two", "one"))
    assert two.postprocess == one.postprocess and two.training.calibration.patients == PATIENTS
    assert two.training.calibration.mean_dice == pytest.approx(one.training.calibration.mean_dice, rel=1e-12)


def test_a_two_process_calibrate_stopped_by_sigterm_ends_every_rank_with_130_and_leaves_the_model_as_it_was(
        data, tiny_model_dir, tmp_path):
    # SIGTERM killed every rank without a word, leaving rank 0's lock file in the model folder.
    shutil.copytree(tiny_model_dir, tmp_path / "model")
    before = {path.name: path.read_bytes() for path in (tmp_path / "model").iterdir()}
    argv = ["calibrate", "--data", str(data), "--split", "all", "--device", "cpu", "--model", str(tmp_path / "model")]
    (rank_0, said), (rank_1, quiet) = _run_as_two_ranks(argv, tmp_path / "log", signal_at=2)
    assert rank_0 == {"code": 130, "loaded": PATIENTS[0:3:2]} and rank_1 == {"code": 130, "loaded": PATIENTS[1::2]}
    assert said.endswith("lgg-unet: interrupted\n") and "mean Dice" not in said and quiet == ""
    assert {path.name: path.read_bytes() for path in (tmp_path / "model").iterdir()} == before


def _evaluate_other_patients_on_rank_1(rank: int, port: int, data: str, model: str) -> None:
    """One rank of an evaluation whose rank 1 sees one more patient under --data: both refuse before segmenting."""
    from napari_lgg_unet.engine.errors import InputError
    from napari_lgg_unet.engine.evaluate import evaluate_patients
    from napari_lgg_unet.engine.predict import SegmentOptions

    os.environ.update(rank_variables(rank, port))
    said = ("process 1 of 2 was started otherwise than process 0: cases: 1 that process 0 lacks" if rank
            else "process 1 of 2 started otherwise than process 0")
    advice = re.escape("every process of a job needs the same folders (--data)")  # evaluate_patients's, the CLI's
    with distributed.process_group("cpu") as group, pytest.raises(InputError, match=f"{said}.*; {advice}"):
        evaluate_patients(load_model(model), [Path(data) / name for name in PATIENTS[: 2 + rank]], SegmentOptions(),
                          group=group)


def test_evaluating_ranks_that_see_other_patients_refuse_before_any_is_segmented(data, tiny_model_dir):
    # Each rank scores every N-th patient of its own list: rank 0 would have reported other patients' scores under
    # the names of its list.
    torch.multiprocessing.spawn(_evaluate_other_patients_on_rank_1, args=(free_port(), str(data), str(tiny_model_dir)),
                                nprocs=2)
