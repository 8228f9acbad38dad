"""Cohort predict as a batch job: a killed job continues with --skip-existing, never rewriting a finished mask."""

import contextlib
import csv
import dataclasses
import errno
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import tifffile
import torch

from napari_lgg_unet.cli import main
from napari_lgg_unet.engine import batch_predict
from napari_lgg_unet.engine.atomic import atomic_path
from napari_lgg_unet.engine.batch_predict import COHORT_TASK, case_mask, segment_cohort
from napari_lgg_unet.engine.distributed import Group
from napari_lgg_unet.engine.errors import InputError
from napari_lgg_unet.engine.model import load_model
from napari_lgg_unet.engine.predict import SegmentOptions
from napari_lgg_unet.engine.folder_lock import LOCK_FILE
from napari_lgg_unet.engine.run_folder import RunFolder

from rank_helpers import free_port, rank_variables

CASES = [f"CASE_{i:02d}" for i in range(12)]


@pytest.fixture
def cohort(tmp_path):
    """Twelve small Kaggle-layout cases (3 slices of 48x48 RGB each)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "cohort"
    for name in CASES:
        (root / name).mkdir(parents=True)
        for n in range(1, 4):
            tifffile.imwrite(root / name / f"{name}_{n}.tif", rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
    return root


def _stamps(out):
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("*_mask.tif")}


def test_killed_cohort_job_continues_with_skip_existing_and_never_rewrites_a_finished_mask(
    tiny_model_dir, cohort, tmp_path, capsys
):
    out = tmp_path / "masks"
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(cohort), "--output", str(out), "--device", "cpu",
            "--skip-existing"]
    job = subprocess.Popen([sys.executable, "-m", "napari_lgg_unet", *argv], stderr=subprocess.PIPE, text=True)
    first = job.stderr.readline()  # a line per finished case when stderr is a log file
    job.send_signal(signal.SIGKILL)
    job.communicate(timeout=60)
    assert first.startswith("CASE_00:")
    before = _stamps(out)
    assert 1 <= len(before) and not (out / "summary.csv").exists()

    assert main(argv) == 0
    assert "summary in" in capsys.readouterr().out
    after = _stamps(out)
    assert sorted(after) == [f"{name}_mask.tif" for name in CASES]
    assert {name: after[name] for name in before} == before  # finished masks were neither rewritten nor replaced
    left = sorted(p.name for p in out.iterdir())  # no journal, and no temp file of the killed write
    assert left == sorted([*after, "summary.csv", LOCK_FILE])
    with open(out / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["case"] for row in rows] == CASES and all(row["slices"] == "3" for row in rows)
    for row in rows:  # the killed attempt's rows come from its journal; sizes agree with the masks
        mask = tifffile.imread(out / f"{row['case']}_mask.tif")
        assert int(row["tumour_voxels"]) == np.count_nonzero(mask) and row["tumour_mm3"] == ""
        assert float(row["seconds"]) > 0


@pytest.mark.parametrize("keep", [False, True])
def test_a_cohort_stopped_with_ctrl_c_says_what_became_of_its_finished_masks(tiny_model_dir, cohort, tmp_path, keep):
    out = tmp_path / "masks"
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(cohort), "--output", str(out), "--device", "cpu",
            *(["--skip-existing"] if keep else [])]
    job = subprocess.Popen([sys.executable, "-m", "napari_lgg_unet", *argv], stderr=subprocess.PIPE, text=True)
    assert job.stderr.readline().startswith("CASE_00:")
    job.send_signal(signal.SIGINT)
    _, err = job.communicate(timeout=60)
    assert job.returncode == 130, err
    masks = sorted(out.glob("*_mask.tif"))
    if keep:
        assert masks and f"interrupted; the finished masks stay in {out}; the same command segments the rest" in err
    else:
        assert not masks and "interrupted; the masks this run made were removed, and the same command starts again " \
                             "from the first case (with --skip-existing" in err


# `lgg-unet` whose removal of a mask takes a second, saying so first: a second Ctrl-C can be sent while a stopped run
# removes its masks (a real process and real signals; only the clean-up is slowed down).
SLOW_CLEAN_UP = """
import pathlib, sys, time
from napari_lgg_unet import cli
unlink = pathlib.Path.unlink
def slow_unlink(path, missing_ok=False):
    if path.name.endswith("_mask.tif"):
        print("removing", path.name, file=sys.stderr, flush=True)
        time.sleep(1)
    unlink(path, missing_ok=missing_ok)
pathlib.Path.unlink = slow_unlink
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("choice", [[], ["--overwrite"]])
def test_a_second_ctrl_c_while_the_masks_are_removed_is_ignored_and_the_removal_finishes(
        tiny_model_dir, cohort, tmp_path, choice):
    """The second Ctrl-C raised inside the removal its first one started, and left finished masks of a run said to be
    stopped: the CLI answers the first stop signal alone, so the clean-up it started ends as a single Ctrl-C's."""
    out = tmp_path / "masks"
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(cohort), "--output", str(out), "--device", "cpu"]
    job = subprocess.Popen([sys.executable, "-c", SLOW_CLEAN_UP, *argv, *choice], stderr=subprocess.PIPE, text=True)
    while not job.stderr.readline().startswith("CASE_02:"):
        pass
    job.send_signal(signal.SIGINT)
    while not job.stderr.readline().startswith("removing"):
        pass
    job.send_signal(signal.SIGINT)  # while the first of the run's masks is removed
    _, err = job.communicate(timeout=60)
    assert job.returncode == 130, err
    assert not list(out.glob("*_mask.tif")) and err.count("removing") >= 2  # the run finished at least three
    said = [line for line in err.splitlines() if line.startswith("lgg-unet:")]
    removed = f"lgg-unet: interrupted; the masks this run {'added' if choice else 'made'} were removed"
    assert len(said) == 1 and said[0].startswith(removed), err


def test_a_second_interrupt_while_the_masks_are_removed_says_which_stay_and_the_same_command_is_told_the_way_on(
        tmp_path, monkeypatch):
    """Outside the CLI (a notebook's second interrupt) the removal stops where it is: the masks left are named, and
    what the same command does with them."""
    created = [tmp_path / f"{name}_mask.tif" for name in CASES[:4]]
    for path in created:
        path.write_bytes(b"mask")
    unlink = Path.unlink

    def interrupted_at_the_second(path, missing_ok=False):
        if path == created[1]:
            raise KeyboardInterrupt
        unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", interrupted_at_the_second)
    skip = "refuses them: give existing='skip' (--skip-existing)"
    for existing, then in [("skip", skip), ("overwrite", "replaces them")]:
        with pytest.raises(batch_predict.CleanUpStopped) as stopped:
            batch_predict._remove_created(tmp_path, created, tmp_path / "journal", None, [], existing)
        assert str(stopped.value).startswith(f"stopped again while the masks this run made were removed: "
                                              f"{created[1].name}, {created[2].name} and 1 more stay in {tmp_path}, "
                                              f"finished; the same command {then}")


def test_a_case_redone_by_a_rerun_with_other_ranks_gets_the_row_of_its_mask_on_disk(tiny_model_dir, cohort, tmp_path,
                                                                                      monkeypatch):
    """A two-process job died after rank 1 journaled CASE_00; the rerun, one process, redid it on rank 0. The
    summary kept rank 1's row (a higher rank was taken for a later attempt): figures of a mask no longer there."""
    out, cases = tmp_path / "masks", [cohort / name for name in CASES[:2]]
    real = batch_predict.segment_scan

    def segment_whole_scan(model, scan, options):
        # the first attempt's mask is the rerun's turned inside out: all tumour, as it was, is the rerun's own mask
        # where the untrained test model finds tumour everywhere
        done = real(model, scan, options)
        inverted = (done.result.mask == 0).astype(done.result.mask.dtype)
        return dataclasses.replace(done, result=dataclasses.replace(done.result, mask=inverted))

    monkeypatch.setattr(batch_predict, "segment_scan", segment_whole_scan)
    monkeypatch.setattr(Group, "barrier", lambda group: None)  # rank 1's share alone: its peer never started
    monkeypatch.setattr(Group, "sum", lambda group, values: list(values))  # the masks it checks are all there are
    out.mkdir()
    first = batch_predict._segment_share(load_model(tiny_model_dir, "cpu"), cases[::-1], out, SegmentOptions(),
                                         Group(rank=1, world=2), "skip", 0)
    assert next(first).case == CASES[0] and (out / ".summary.rank1.csv").exists()  # then the job died
    monkeypatch.setattr(batch_predict, "segment_scan", real)
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(cohort), "--output", str(out), "--device", "cpu"]
    assert main([*argv, "--overwrite"]) == 0
    with open(out / "summary.csv", newline="") as handle:
        voxels = {row["case"]: int(row["tumour_voxels"]) for row in csv.DictReader(handle)}
    on_disk = np.count_nonzero(tifffile.imread(out / f"{CASES[0]}_mask.tif"))
    assert 2 * on_disk != 3 * 48 * 48 and voxels[CASES[0]] == on_disk  # the rerun's count, not the first's


@pytest.mark.parametrize("journal", ["older format", "row before the mask was rewritten"])
def test_a_summary_row_is_kept_only_while_it_can_describe_the_mask_on_disk(cohort, tmp_path, journal):
    """An earlier version's journal (no mask stamp) is still read; a stamped row whose mask was rewritten after it
    (a run killed between a mask and its row) is not taken for the new mask, which is listed by name only."""
    out = tmp_path / "masks"
    out.mkdir()
    mask = out / f"{CASES[0]}_mask.tif"
    tifffile.imwrite(mask, np.zeros((3, 48, 48), np.uint8))
    row = [CASES[0], 3, 7, "", 0.5]
    if journal != "older format":
        row += batch_predict._mask_stamp(mask)
        os.utime(mask, ns=(mask.stat().st_atime_ns, mask.stat().st_mtime_ns + 10**9))
    with open(out / ".summary.rank0.csv", "w", newline="") as handle:
        csv.writer(handle).writerow(row)
    batch_predict.write_summary(out, [cohort / CASES[0]])
    with open(out / "summary.csv", newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    assert rows == ([[CASES[0], "3", "7", "", "0.5"]] if journal == "older format" else [[CASES[0]]])


def test_a_run_whose_journal_was_removed_says_which_cases_its_summary_lists_without_figures(tiny_model_dir, cohort,
                                                                                             tmp_path, capsys):
    out = tmp_path / "masks"
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(cohort), "--output", str(out), "--device", "cpu"]
    job = subprocess.Popen([sys.executable, "-m", "napari_lgg_unet", *argv], stderr=subprocess.PIPE, text=True)
    while not job.stderr.readline().startswith("CASE_01:"):
        pass
    (out / ".summary.rank0.csv").unlink()  # the user tidies hidden files up
    _, err = job.communicate(timeout=120)
    assert job.returncode == 0, err
    with open(out / "summary.csv", newline="") as handle:
        unmeasured = [row[0] for row in csv.reader(handle) if len(row) == 1]
    assert unmeasured[:2] == CASES[:2]
    assert f"lgg-unet: summary.csv lists {len(unmeasured)} cases by name only (" in err
    assert "remove their masks and segment again with existing='skip' (--skip-existing) to measure them" in err
    for name in unmeasured:  # as told
        (out / f"{name}_mask.tif").unlink()
    assert main([*argv, "--skip-existing"]) == 0
    with open(out / "summary.csv", newline="") as handle:
        assert all(row["tumour_voxels"] for row in csv.DictReader(handle))
    assert "by name only" not in capsys.readouterr().err


def test_a_stopped_run_whose_journal_was_removed_still_removes_the_masks_it_made(tiny_model_dir, cohort, tmp_path):
    out = tmp_path / "masks"
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(cohort), "--output", str(out), "--device", "cpu"]
    first = subprocess.Popen([sys.executable, "-m", "napari_lgg_unet", *argv, "--skip-existing"],
                             stderr=subprocess.PIPE, text=True)
    while not first.stderr.readline().startswith("CASE_01:"):
        pass
    first.send_signal(signal.SIGKILL)  # leaves finished masks and a journal of their rows
    first.communicate(timeout=60)
    earlier = sorted(p.name for p in out.glob("*_mask.tif"))
    job = subprocess.Popen([sys.executable, "-m", "napari_lgg_unet", *argv, "--overwrite"], stderr=subprocess.PIPE,
                           text=True)
    while not job.stderr.readline().startswith(f"CASE_{len(earlier) + 1:02d}:"):  # two masks of its own
        pass
    (out / ".summary.rank0.csv").unlink()
    job.send_signal(signal.SIGINT)
    _, err = job.communicate(timeout=60)
    assert job.returncode == 130, err
    assert f"lgg-unet: interrupted; the masks this run added were removed, and those it replaced stay in {out} as " \
           "it wrote them; the same command segments every case again" in err
    assert sorted(p.name for p in out.glob("*_mask.tif")) == earlier


@pytest.mark.parametrize("choice", [[], ["--overwrite"], ["--skip-existing"]])
def test_ctrl_c_while_the_summary_is_written_leaves_no_half_summary_and_says_the_masks_stay(
        tiny_model_dir, cohort, tmp_path, capsys, monkeypatch, choice):
    out = tmp_path / "masks"
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(cohort), "--output", str(out), "--device", "cpu"]

    def stopped_half_way(target, text):
        with atomic_path(target) as temporary:
            temporary.write_text(text[: len(text) // 2])
            raise KeyboardInterrupt  # Ctrl-C

    with monkeypatch.context() as patched:
        patched.setattr(batch_predict, "write_text_atomic", stopped_half_way)
        assert main([*argv, *choice]) == 130
    last = capsys.readouterr().err.splitlines()[-1]  # after a line per finished case
    assert last == f"lgg-unet: interrupted; every mask is in {out}, but writing summary.csv was stopped, so there is " \
                   "none; segment again with existing='skip' (--skip-existing) to write it (no finished mask is redone)"
    masks = [f"{name}_mask.tif" for name in CASES]  # and their rows, in the journal
    assert sorted(p.name for p in out.iterdir()) == [".summary.rank0.csv", *masks]
    before = _stamps(out)
    assert main([*argv, "--skip-existing"]) == 0  # as told
    assert _stamps(out) == before
    with open(out / "summary.csv", newline="") as handle:
        assert [row["case"] for row in csv.DictReader(handle)] == CASES


@pytest.mark.parametrize("choice", ["--overwrite", "--skip-existing"])
def test_ctrl_c_while_the_summary_is_written_over_an_earlier_one_says_that_one_is_still_there_unchanged(
        tiny_model_dir, cohort, tmp_path, capsys, monkeypatch, choice):
    """An earlier run's summary.csv stays whole (it is replaced atomically), and the message says it is that one, so
    it is not taken for this run's: with --skip-existing it lacks the new cases, with --overwrite it has old results."""
    out = tmp_path / "masks"
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(cohort), "--output", str(out), "--device", "cpu"]
    (cohort / CASES[-1]).rename(tmp_path / CASES[-1])
    assert main(argv) == 0
    earlier = (out / "summary.csv").read_bytes()
    (tmp_path / CASES[-1]).rename(cohort / CASES[-1])  # a case the earlier run did not have

    def stopped(target, text):
        raise KeyboardInterrupt  # Ctrl-C

    monkeypatch.setattr(batch_predict, "write_text_atomic", stopped)
    assert main([*argv, choice]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"lgg-unet: interrupted; every mask is in {out}, but writing summary.csv was stopped, so the one there is "
        "still an earlier run's, without this run's results; segment again with existing='skip' (--skip-existing) "
        "to write it (no finished mask is redone)")
    assert (out / "summary.csv").read_bytes() == earlier
    monkeypatch.undo()
    assert main([*argv, "--skip-existing"]) == 0  # as told
    with open(out / "summary.csv", newline="") as handle:
        assert [row["case"] for row in csv.DictReader(handle)] == CASES


def test_ctrl_c_just_after_the_summary_was_written_says_it_was(tiny_model_dir, cohort, tmp_path, capsys, monkeypatch):
    out = tmp_path / "masks"
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(cohort), "--output", str(out), "--device", "cpu"]
    written = batch_predict.write_text_atomic

    def stopped_after(target, text):
        written(target, text)
        raise KeyboardInterrupt  # Ctrl-C before the journals were removed

    monkeypatch.setattr(batch_predict, "write_text_atomic", stopped_after)
    assert main(argv) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"lgg-unet: interrupted; every mask is in {out} and summary.csv was written before the stop")
    with open(out / "summary.csv", newline="") as handle:
        assert [row["case"] for row in csv.DictReader(handle)] == CASES


def test_ctrl_c_between_two_cases_removes_the_runs_masks_and_folder_before_letting_the_folder_go(
        tiny_model_dir, cohort, tmp_path, capsys, monkeypatch):
    out = tmp_path / "masks"
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(cohort), "--output", str(out), "--device", "cpu"]
    monkeypatch.setattr("tqdm.tqdm.update", lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))  # in the CLI's loop
    assert main(argv) == 130
    assert "the masks this run made were removed" in capsys.readouterr().err
    assert not out.exists()  # the masks went while the run still held the folder, so the folder it made went too


def test_a_second_job_into_a_folder_being_written_is_refused_and_leaves_the_first_job_whole(tiny_model_dir, cohort,
                                                                                              tmp_path, capsys):
    out = tmp_path / "masks"
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(cohort), "--output", str(out), "--device", "cpu",
            "--skip-existing"]
    first = subprocess.Popen([sys.executable, "-m", "napari_lgg_unet", *argv], stderr=subprocess.PIPE, text=True)
    assert first.stderr.readline().startswith("CASE_00:")  # the first job is writing masks
    assert main(argv) == 2
    assert f"{out} is in use by another cohort prediction (process {first.pid})" in capsys.readouterr().err
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    with open(out / "summary.csv", newline="") as handle:  # no row was lost to the second job
        assert [row["case"] for row in csv.DictReader(handle)] == CASES
    assert main(argv) == 0  # once the first job has ended, the folder is free again


def test_a_job_into_a_folder_in_use_is_told_so_first_and_every_refusal_comes_before_the_model_loads(
        tiny_model_dir, cohort, tmp_path, capsys, monkeypatch):
    out = tmp_path / "masks"
    out.mkdir()
    (out / f"{CASES[0]}_mask.tif").write_bytes(b"the other job's, or the user's")
    monkeypatch.setattr("napari_lgg_unet.engine.model.load_model", lambda *_: pytest.fail("the model was loaded"))
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(cohort), "--output", str(out), "--device", "cpu"]
    with RunFolder(out).locked(COHORT_TASK):  # another job is writing the folder
        for choice in ([], ["--skip-existing"], ["--overwrite"]):
            assert main([*argv, *choice]) == 2
            err = capsys.readouterr().err
            assert err == f"lgg-unet: error: {out} is in use by another {COHORT_TASK} (process {os.getpid()}); wait " \
                          "for it to end or choose another folder\n"
    assert main(argv) == 2  # once it has ended, the folder's own refusal: it holds a mask this run would write
    assert f"already holds {CASES[0]}_mask.tif, which this run would write" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE, f"{CASES[0]}_mask.tif"]  # the ended job's lock


def test_without_skip_existing_a_failing_case_removes_the_masks_of_the_run(tiny_model_dir, cohort, tmp_path, capsys):
    (cohort / CASES[5] / f"{CASES[5]}_2.tif").write_bytes(b"not a tiff")
    out = tmp_path / "masks"
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(cohort), "--output", str(out), "--device", "cpu"]
    assert main(argv) == 2
    said = [line for line in capsys.readouterr().err.splitlines(keepends=True) if line.startswith("lgg-unet:")]
    assert len(said) == 1 and said[0].startswith("lgg-unet: error: cannot read")  # and what became of the masks:
    assert said[0].endswith("; the masks this run made were removed, and the same command starts again from the first "
                        "case (with --skip-existing a failed run keeps its finished masks, and the same command "
                        "segments the rest)\n")
    assert not list(out.glob("*_mask.tif"))
    assert main([*argv, "--skip-existing"]) == 2
    assert "were removed" not in capsys.readouterr().err  # kept, as --skip-existing keeps them
    assert [case_mask(out, cohort / name) is not None for name in CASES[:6]] == [True] * 5 + [False]


def test_a_cohort_whose_summary_cannot_be_written_says_its_masks_stay_not_that_they_were_removed(
        tiny_model_dir, cohort, tmp_path, capsys, monkeypatch):
    """Every mask was finished and kept when summary.csv failed to be written (a full disk), but the line said "the
    masks this run made were removed, and the same command starts again from the first case"."""
    def disk_full(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(batch_predict, "write_summary", disk_full)
    out = tmp_path / "masks"
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(cohort), "--output", str(out), "--device", "cpu"]
    assert main(argv) == 2
    said = capsys.readouterr().err.splitlines()[-1]
    assert "No space left on device" in said and "removed" not in said
    assert said.endswith(f"every mask is in {out}, but writing summary.csv failed, so there is none; segment again "
                         "with existing='skip' (--skip-existing) to write it (no finished mask is redone)")
    assert [case_mask(out, cohort / name) is not None for name in CASES] == [True] * len(CASES)


def _nrrd_scans(data: Path, names: Sequence[str], old_masks: Path | None = None) -> None:
    """NRRD scans `<name>.nrrd` (3 slices of 36x40, 64-bit spacing and origin that 32 bits do not hold, as a
    scanner's) in `data`, and in `old_masks` (when given) each one's all-tumour mask as the previous version wrote it:
    `<name>_mask.nii.gz`, on the scan's grid as far as NIfTI-1 holds it."""
    import SimpleITK as sitk

    from napari_lgg_unet.engine.formats import NIFTI
    from napari_lgg_unet.engine.io import load_scan

    data.mkdir(parents=True, exist_ok=True)
    for n, name in enumerate(names):
        scan = sitk.GetImageFromArray(np.random.default_rng(3 + n).integers(0, 500, (3, 36, 40), dtype=np.int16))
        scan.SetSpacing((0.9, 1.1, 2.0))
        scan.SetOrigin((-119.7654321987, 101.2345678912, -63.4567891234))
        sitk.WriteImage(scan, str(data / f"{name}.nrrd"))
        if old_masks is not None:
            old_masks.mkdir(exist_ok=True)
            NIFTI.write_mask(old_masks / f"{name}_mask.nii.gz", np.ones((3, 36, 40), np.uint8),
                             load_scan(data / f"{name}.nrrd").geometry)


def _summary_rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "summary.csv", newline="") as handle:
        return {row["case"]: row for row in csv.DictReader(handle)}


def test_skip_existing_keeps_an_earlier_versions_nifti_mask_of_an_nrrd_scan_and_writes_no_second_mask(
        tiny_model_dir, tmp_path, capsys):
    """The previous version wrote an NRRD scan's mask as `<case>_mask.nii.gz`; --skip-existing looked only for the
    `.nrrd` it now writes, segmented the case again and left a second mask beside the first. The name it is written
    as still decides where that file is there: a `.nrrd` of the user's that does not fit is refused, kept or not."""
    out = tmp_path / "masks"
    _nrrd_scans(tmp_path / "data", ["scan"], out)
    (out / "summary.csv").write_text("case,slices,tumour_voxels,tumour_mm3,seconds\nscan,3,4320,8553.6,1.0\n")
    before = (out / "scan_mask.nii.gz").stat()
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(tmp_path / "data"), "--output", str(out),
            "--device", "cpu", "--skip-existing"]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE, "scan_mask.nii.gz", "summary.csv"]
    assert (out / "scan_mask.nii.gz").stat().st_mtime_ns == before.st_mtime_ns
    assert (out / "summary.csv").read_text().splitlines()[1] == "scan,3,4320,8553.6,1.0"
    capsys.readouterr()
    (out / "scan_mask.nrrd").write_text("my own mask")
    assert main(argv) == 2
    assert "holds scan_mask.nrrd, not masks that fit their cases' scans" in capsys.readouterr().err
    assert (out / "scan_mask.nrrd").read_text() == "my own mask"


def _same_physical_space(mask: Path, scan: Path) -> bool:
    """Whether ITK takes `mask` and `scan` to lie in one physical space: its filters refuse them otherwise."""
    import SimpleITK as sitk

    try:
        sitk.Mask(sitk.ReadImage(str(scan)), sitk.Cast(sitk.ReadImage(str(mask)), sitk.sitkUInt8))
    except RuntimeError as error:
        assert "do not occupy the same physical space" in str(error)
        return False
    return True


def test_overwrite_over_an_earlier_versions_nifti_mask_of_an_nrrd_scan_writes_the_nrrd_in_its_place(
        tiny_model_dir, tmp_path):
    """--overwrite over the previous version's folder wrote `scan_mask.nrrd` beside its `scan_mask.nii.gz`: two
    masks of one case, the old one stale. Then it rewrote the `.nii.gz` where it was: a new mask that ITK's filters
    refuse with its scan, NIfTI-1 holding the scan's 64-bit origin in 32 bits, as the previous version's did. The
    case's mask is now the `.nrrd`, and the `.nii.gz` it replaces goes once that is written."""
    import SimpleITK as sitk

    out = tmp_path / "masks"
    _nrrd_scans(tmp_path / "data", ["scan"], out)
    assert not _same_physical_space(out / "scan_mask.nii.gz", tmp_path / "data" / "scan.nrrd")  # the old mask's flaw
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(tmp_path / "data"), "--output", str(out),
            "--device", "cpu", "--overwrite"]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE, "scan_mask.nrrd", "summary.csv"]
    assert _same_physical_space(out / "scan_mask.nrrd", tmp_path / "data" / "scan.nrrd")
    voxels = np.count_nonzero(sitk.GetArrayFromImage(sitk.ReadImage(str(out / "scan_mask.nrrd"))))
    assert _summary_rows(out)["scan"]["tumour_voxels"] == str(voxels)


@pytest.mark.parametrize("earlier", [("scan_mask.nrrd", "scan_mask.nii.gz"), ("scan_mask.nii.gz", "scan_mask.nii")],
                         ids=["nrrd-beside-old-nifti", "two-nifti"])
def test_overwrite_leaves_one_mask_of_a_case_that_had_two_and_the_refusal_names_both(
        tiny_model_dir, tmp_path, capsys, earlier):
    """A folder where an earlier version left two masks of a case (the `.nrrd` a later run wrote beside the stale
    `.nii.gz` of the previous version): --overwrite replaced one of them and kept the other, still two masks of one
    case, one of them stale; the refusal named only one. Now the run writes the case's mask, then removes the others."""
    import SimpleITK as sitk

    out = tmp_path / "masks"
    _nrrd_scans(tmp_path / "data", ["scan"], out)  # scan_mask.nii.gz, all tumour
    for name in earlier:
        if not (out / name).exists():
            (out / name).write_text("an earlier run's mask")
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(tmp_path / "data"), "--output", str(out),
            "--device", "cpu"]
    assert main(argv) == 2
    assert f"{out} already holds {earlier[0]} and {earlier[1]}, which this run would write" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted(earlier)
    assert main([*argv, "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE, "scan_mask.nrrd", "summary.csv"]
    assert _same_physical_space(out / "scan_mask.nrrd", tmp_path / "data" / "scan.nrrd")  # the new mask, read back
    voxels = np.count_nonzero(sitk.GetArrayFromImage(sitk.ReadImage(str(out / "scan_mask.nrrd"))))
    assert _summary_rows(out)["scan"]["tumour_voxels"] == str(voxels)


def test_overwrite_over_a_nifti_scans_nrrd_mask_writes_nifti_where_nrrd_cannot_place_it(tiny_model_dir, tmp_path,
                                                                                         capsys):
    """A NIfTI scan's mask kept as `.nrrd` was rewritten as NRRD: for a scan whose header ITK places elsewhere than
    nibabel that is refused, after the cases before it were segmented, and the run failed advising a `.nii.gz` it
    gives no way to ask for. Its mask is now written as `.nii.gz`, the `.nrrd` it replaces removed."""
    import nibabel as nib

    data, out = tmp_path / "data", tmp_path / "masks"
    data.mkdir()
    out.mkdir()
    image = np.random.default_rng(0).integers(0, 500, (40, 36, 3)).astype(np.int16)
    nib.save(nib.Nifti1Image(image, None), data / "scan.nii.gz")  # no orientation: ITK places it its own way
    (out / "scan_mask.nrrd").write_text("my own mask")
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(data), "--output", str(out), "--device", "cpu",
            "--overwrite"]
    assert main(argv) == 0
    assert "has no orientation" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE, "scan_mask.nii.gz", "summary.csv"]
    assert nib.load(out / "scan_mask.nii.gz").shape == image.shape


def test_skip_existing_refuses_an_earlier_format_mask_that_does_not_fit_instead_of_writing_a_second_beside_it(
        tiny_model_dir, tmp_path, capsys):
    """The case's mask in another volume format is its mask for --skip-existing as for the refusal: one that does not
    fit its scan was left, and the case segmented into a second mask beside it, two masks of one case."""
    out = tmp_path / "masks"
    _nrrd_scans(tmp_path / "data", ["scan"])
    out.mkdir()
    (out / "scan_mask.nii.gz").write_text("my own notes")
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(tmp_path / "data"), "--output", str(out),
            "--device", "cpu"]
    assert main(argv) == 2
    assert "already holds scan_mask.nii.gz, which this run would write" in capsys.readouterr().err
    assert main([*argv, "--skip-existing"]) == 2
    assert f"{out} holds scan_mask.nii.gz, not masks that fit their cases' scans" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["scan_mask.nii.gz"]
    assert (out / "scan_mask.nii.gz").read_text() == "my own notes"


def test_a_file_of_a_format_no_mask_of_its_case_takes_is_not_its_mask_for_any_choice(tiny_model_dir, cohort, tmp_path):
    """Any `<case>_mask.*` refused the run as a file it "would write", though --skip-existing ignored it and wrote the
    case's mask beside it: a `.png` or a `.nii.gz.bak` is no mask lgg-unet writes or reads back, and a TIFF case has
    no volume mask. They are the user's files, of other names: never named, never touched."""
    out = tmp_path / "masks"
    out.mkdir()
    foreign = {f"{CASES[0]}_mask.png": "a picture", f"{CASES[1]}_mask.tif.bak": "a backup",
               f"{CASES[2]}_mask.nii.gz": "a volume"}
    for name, text in foreign.items():
        (out / name).write_text(text)
    cases, model = [cohort / name for name in CASES[:3]], load_model(tiny_model_dir)
    for existing in ("refuse", "skip", "overwrite"):
        assert len(list(segment_cohort(model, cases, out, SegmentOptions(), existing=existing))) == 3
        assert {name: (out / name).read_text() for name in foreign} == foreign
        assert sorted(p.name for p in out.glob("*_mask.tif")) == [f"{name}_mask.tif" for name in CASES[:3]]
        assert all(_summary_rows(out)[name]["tumour_voxels"] for name in CASES[:3])


def test_a_tiff_cases_mask_saved_as_tiff_is_its_mask_for_every_choice(tiny_model_dir, cohort, tmp_path, capsys):
    """`<case>_mask.tiff` is a mask of a TIFF case as much as `.tif`: it refused a run, yet --skip-existing wrote a
    `.tif` beside it, and so did --overwrite, two masks of one case. It is kept where it fits, and replaced where it
    is (a TIFF again) with --overwrite."""
    out = tmp_path / "masks"
    out.mkdir()
    mask = out / f"{CASES[0]}_mask.tiff"
    tifffile.imwrite(mask, np.full((3, 48, 48), 255, np.uint8), photometric="minisblack")
    cases, model = [cohort / name for name in CASES[:2]], load_model(tiny_model_dir)
    with pytest.raises(InputError, match=f"already holds {CASES[0]}_mask.tiff, which this run would write"):
        next(segment_cohort(model, cases, out, SegmentOptions()))
    assert list(segment_cohort(model, cases, out, SegmentOptions(), existing="skip"))[0] is None
    assert sorted(p.name for p in out.glob("*_mask.*")) == [mask.name, f"{CASES[1]}_mask.tif"]
    assert np.count_nonzero(tifffile.imread(mask)) == 3 * 48 * 48 and list(_summary_rows(out)) == CASES[:2]
    summaries = list(segment_cohort(model, cases, out, SegmentOptions(), existing="overwrite"))
    assert sorted(p.name for p in out.glob("*_mask.*")) == [mask.name, f"{CASES[1]}_mask.tif"]
    assert np.count_nonzero(tifffile.imread(mask)) == summaries[0].tumour_voxels
    assert _summary_rows(out)[CASES[0]]["tumour_voxels"] == str(summaries[0].tumour_voxels)


def test_under_torchrun_a_case_failing_on_rank_0_leaves_no_mask_of_the_others_nor_their_folder(
        tiny_model_dir, cohort, tmp_path):
    """Rank 0's lock removed the folder it made while empty, but let go of it while rank 1's masks were still there:
    rank 1 then removed its masks and left the empty folder. Rank 1's line said only that another process ended,
    after rank 0's reason: under torchrun a job's processes printed one line each."""
    (cohort / CASES[2] / f"{CASES[2]}_2.tif").write_bytes(b"not a tiff")  # rank 0's second case
    out = tmp_path / "masks"
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(cohort), "--output", str(out), "--device", "cpu"]
    torch.multiprocessing.spawn(_predict_as_rank_0_failing_once_rank_1_wrote,
                                args=(free_port(), argv, str(tmp_path / "log"), str(out)), nprocs=2)
    said = [line for line in (tmp_path / "log.0").read_text().splitlines() if line.startswith("lgg-unet:")]
    assert len(said) == 1 and said[0].startswith(f"lgg-unet: error: cannot read {cohort / CASES[2] / CASES[2]}_2.tif")
    assert (tmp_path / "log.1").read_text() == ""
    assert not out.exists()


def _predict_as_rank_0_failing_once_rank_1_wrote(rank: int, port: int, argv: list[str], log: str, out: str) -> None:
    """`_predict_as_rank` ending with exit 2, whose rank 0 reads its corrupt second case (CASES[2]) only once rank 1
    has written the mask of its first (CASES[1]), so that rank 0 fails while the folder holds rank 1's mask."""
    if rank == 0:
        from napari_lgg_unet.engine import cohort

        read = cohort.load_scan

        def read_late(source, *args, **kwargs):
            if Path(source).name == CASES[2]:
                _wait_for(Path(out) / f"{CASES[1]}_mask.tif")
            return read(source, *args, **kwargs)

        cohort.load_scan = read_late  # this process's own module: spawn started it afresh
    _predict_as_rank(rank, port, argv, log, 2)


def _wait_for(path: Path, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} was not written"
        time.sleep(0.05)


def test_under_torchrun_a_case_failing_on_rank_1_is_told_by_rank_1_and_rank_0_says_another_process_ended(
        tiny_model_dir, cohort, tmp_path):
    (cohort / CASES[1] / f"{CASES[1]}_2.tif").write_bytes(b"not a tiff")  # rank 1's first case
    out = tmp_path / "masks"
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(cohort), "--output", str(out), "--device", "cpu"]
    torch.multiprocessing.spawn(_predict_as_rank, args=(free_port(), argv, str(tmp_path / "log"), 2), nprocs=2)
    said = (tmp_path / "log.1").read_text()
    assert said.count("\n") == 1
    assert said.startswith(f"lgg-unet: error: cannot read {cohort / CASES[1] / CASES[1]}_2.tif")
    assert (tmp_path / "log.0").read_text().splitlines()[-1].startswith(
        "lgg-unet: error: process 0 of 2: another process of this job ended")
    assert not out.exists()


def test_under_torchrun_a_mask_not_fitting_its_case_in_rank_1s_share_ends_every_rank_at_once_saying_which(
        tiny_model_dir, cohort, tmp_path):
    """--skip-existing checks each rank's share of the masks: a misfit in rank 1's share ended rank 1 with its line
    while rank 0 waited for it at the next collective (with NCCL until the launcher killed it; gloo sees the peer go,
    and rank 0 said only that another process had ended). Every rank learns the refusal, and it is said once."""
    out = tmp_path / "masks"
    out.mkdir()
    (out / f"{CASES[1]}_mask.tif").write_text("my own notes")  # rank 1's first case
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(cohort), "--output", str(out), "--device", "cpu",
            "--skip-existing"]
    started = time.monotonic()
    torch.multiprocessing.spawn(_predict_as_rank, args=(free_port(), argv, str(tmp_path / "log"), 2), nprocs=2)
    assert time.monotonic() - started < 120
    said = [line for line in (tmp_path / "log.0").read_text().splitlines() if line.startswith("lgg-unet:")]
    assert said == [f"lgg-unet: error: {out} holds {CASES[1]}_mask.tif, not masks that fit their cases' scans "
                    "(another grid or size, or not readable as a mask): they may be your own, and existing='skip' "
                    "(--skip-existing) would replace them; move them away, or give existing='overwrite' (--overwrite) "
                    "to replace them"]
    assert (tmp_path / "log.1").read_text() == ""
    assert [p.name for p in out.iterdir()] == [f"{CASES[1]}_mask.tif"]


def test_under_torchrun_bad_input_is_told_once_and_every_process_exits_with_2(tiny_model_dir, tmp_path):
    """Every process checks the command line it was given, and said so: torchrun showed one identical line per
    process. The first process (of each machine) says it; every process still exits with code 2."""
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(tmp_path / "absent"),
            "--output", str(tmp_path / "masks"), "--device", "cpu"]
    torch.multiprocessing.spawn(_predict_as_rank, args=(free_port(), argv, str(tmp_path / "log"), 2), nprocs=2)
    assert (tmp_path / "log.0").read_text() == f"lgg-unet: error: path not found: {tmp_path / 'absent'}\n"
    assert (tmp_path / "log.1").read_text() == ""


def test_under_torchrun_a_folder_of_a_mask_name_in_rank_1s_share_is_refused_by_every_rank_before_any_case(
        tiny_model_dir, cohort, tmp_path):
    """Rank 0 checks the folder before anything is written, for every rank: --overwrite segmented rank 0's share and
    failed on rank 1 at the folder, "Is a directory"."""
    out = tmp_path / "masks"
    (out / f"{CASES[7]}_mask.tif").mkdir(parents=True)
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(cohort), "--output", str(out), "--device", "cpu",
            "--overwrite"]
    torch.multiprocessing.spawn(_predict_as_rank, args=(free_port(), argv, str(tmp_path / "log"), 2), nprocs=2)
    assert (tmp_path / "log.0").read_text() == (
        f"lgg-unet: error: {out} holds {CASES[7]}_mask.tif (a folder) where this run would write a case's mask or its "
        "summary, which is not a file: neither existing='skip' (--skip-existing) nor existing='overwrite' "
        "(--overwrite) can keep or replace it; move it away, or choose another output folder\n")
    assert (tmp_path / "log.1").read_text() == ""
    assert [p.name for p in out.iterdir()] == [f"{CASES[7]}_mask.tif"]


def _predict_as_rank(rank: int, port: int, argv: list[str], log: str, code: int = 0) -> None:
    """One of two torchrun-style processes of a cohort predict ending with exit `code`, its output in `log`.<rank>."""
    os.environ.update(rank_variables(rank, port))
    with open(f"{log}.{rank}", "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        assert main(argv) == code


def _predict_as_rank_with_own_argv(rank: int, port: int, argvs: list[list[str]], log: str) -> None:
    """`_predict_as_rank` where each rank has its own command line (a mis-set environment), refused with exit 2."""
    _predict_as_rank(rank, port, argvs[rank], log, 2)


def test_under_torchrun_ranks_given_other_inputs_or_outputs_refuse_before_any_mask(tiny_model_dir, cohort, tmp_path):
    # Each rank took every 2nd case of its own list: rank 1 (one case fewer, another --output) wrote its masks
    # elsewhere, one case was never segmented, and rank 0 said "masks of 12 cases" over a folder holding 6 of them.
    fewer = tmp_path / "fewer"
    fewer.mkdir()
    for name in CASES[:-1]:
        (fewer / name).symlink_to(cohort / name)
    argv = ["predict", "--model", str(tiny_model_dir), "--device", "cpu", "--output"]
    argvs = [[*argv, str(tmp_path / "masks"), "--input", str(cohort)],
             [*argv, str(tmp_path / "other"), "--input", str(fewer)]]
    torch.multiprocessing.spawn(_predict_as_rank_with_own_argv, args=(free_port(), argvs, str(tmp_path / "log")),
                                nprocs=2)
    assert "process 1 of 2 started otherwise than process 0" in (tmp_path / "log.0").read_text()
    said = (tmp_path / "log.1").read_text()
    assert "process 1 of 2 was started otherwise than process 0: out_dir (--output)" in said  # segment_cohort's, CLI's
    assert "every process of a job needs the same cases (--input) and the same out_dir (--output), on a" in said
    assert f"cases: 1 of process 0's missing here ({CASES[-1]})" in said
    assert not (tmp_path / "masks").exists() and not (tmp_path / "other").exists()


def test_under_torchrun_only_rank_0_prints(tiny_model_dir, cohort, tmp_path):
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(cohort), "--output", str(tmp_path / "masks"),
            "--device", "cpu"]
    torch.multiprocessing.spawn(_predict_as_rank, args=(free_port(), argv, str(tmp_path / "log")), nprocs=2)
    assert "summary in" in (tmp_path / "log.0").read_text()
    assert (tmp_path / "log.1").read_text() == ""


def test_segment_cohort_refuses_a_folder_holding_a_users_mask_before_reading_any_scan(tiny_model_dir, cohort, tmp_path,
                                                                                        monkeypatch):
    out = tmp_path / "masks"
    out.mkdir()
    tifffile.imwrite(out / f"{CASES[3]}_mask.tif", np.full((3, 48, 48), 255, np.uint8), photometric="minisblack")
    users = (out / f"{CASES[3]}_mask.tif").read_bytes()
    monkeypatch.setattr(batch_predict, "loaded_scans", lambda *_: pytest.fail("a scan was read"))
    model = load_model(tiny_model_dir)
    cases = sorted(cohort.iterdir())
    with pytest.raises(InputError, match=f"already holds {CASES[3]}_mask.tif, which this run would write"):
        next(segment_cohort(model, cases, out, SegmentOptions()))
    with pytest.raises(ValueError, match="existing must be one of"):
        next(segment_cohort(model, cases, out, SegmentOptions(), existing="replace"))
    assert sorted(p.name for p in out.iterdir()) == [f"{CASES[3]}_mask.tif"]
    assert (out / f"{CASES[3]}_mask.tif").read_bytes() == users


def _not_a_file(path: Path, kind: str) -> str:
    """Make `path` a `kind` of entry that is not a file; what the refusal calls it."""
    if kind == "fifo":
        os.mkfifo(path)
        return "a named pipe"
    target = path.with_name("elsewhere") if kind == "link to a folder" else path
    (target / "inside.txt").parent.mkdir()
    (target / "inside.txt").write_text("mine")
    if kind == "link to a folder":
        path.symlink_to(target)
    return "a folder"


@pytest.mark.skipif(sys.platform == "win32", reason="named pipes are POSIX's")
@pytest.mark.parametrize("existing", ["refuse", "skip", "overwrite"])
@pytest.mark.parametrize("name, kind", [(f"{CASES[3]}_mask.tif", "folder"), (f"{CASES[3]}_mask.tiff", "fifo"),
                                        (f"{CASES[3]}_mask.tif", "link to a folder"), ("summary.csv", "folder"),
                                        (".summary.rank1.csv", "folder")])
def test_a_mask_or_summary_name_that_is_no_file_is_refused_in_every_mode_before_any_scan_is_read(
        tiny_model_dir, cohort, tmp_path, monkeypatch, existing, name, kind):
    """A folder (or named pipe) of a case's mask name: --overwrite segmented the other cases, then failed with "Is a
    directory" and undid them all; without a flag it was called a file the run would write. Nothing is removed."""
    out = tmp_path / "masks"
    out.mkdir()
    what = _not_a_file(out / name, kind)
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    monkeypatch.setattr(batch_predict, "loaded_scans", lambda *_: pytest.fail("a scan was read"))
    with pytest.raises(InputError) as refused:
        next(segment_cohort(load_model(tiny_model_dir), sorted(cohort.iterdir()), out, SegmentOptions(),
                            existing=existing))
    assert str(refused.value) == (
        f"{out} holds {name} ({what}) where this run would write a case's mask or its summary, which is not a file: "
        "neither existing='skip' (--skip-existing) nor existing='overwrite' (--overwrite) can keep or replace it; move "
        "it away, or choose another output folder")  # as the API (`existing=`) and the CLI name them
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before


def test_skip_existing_keeps_a_fitting_mask_beside_a_folder_of_another_mask_name_which_only_overwrite_refuses(
        tiny_model_dir, cohort, tmp_path):
    """`--skip-existing` keeps a case's mask and touches no other file of the case, so a folder of another of its mask
    names (`.tiff` beside the `.tif` kept) is no reason to refuse it: it was refused as a file that "neither
    --skip-existing nor --overwrite can keep or replace". `--overwrite` would remove it, and still refuses."""
    out, cases, model = tmp_path / "masks", sorted(cohort.iterdir())[:2], load_model(tiny_model_dir)
    list(segment_cohort(model, cases, out, SegmentOptions()))
    (out / f"{cases[0].name}_mask.tiff").mkdir()
    before = _stamps(out)
    list(segment_cohort(model, cases, out, SegmentOptions(), existing="skip"))
    assert _stamps(out) == before and (out / f"{cases[0].name}_mask.tiff").is_dir()
    with pytest.raises(InputError, match=f"holds {cases[0].name}_mask.tiff \\(a folder\\) where this run would"):
        next(segment_cohort(model, cases, out, SegmentOptions(), existing="overwrite"))
    assert _stamps(out) == before


def test_every_mask_name_that_is_no_file_is_named_in_one_line_whatever_its_format(tiny_model_dir, tmp_path):
    """An NRRD scan's mask is written as .mha; a folder of an earlier version's name (.nii.gz) is its mask too."""
    data, out = tmp_path / "data", tmp_path / "masks"
    _nrrd_scans(data, ["a", "b", "c"])
    for name in ("a_mask.nii.gz", "b_mask.mha", "c_mask.nii"):
        (out / name).mkdir(parents=True)
    with pytest.raises(InputError, match=r"holds a_mask\.nii\.gz \(a folder\), b_mask\.mha \(a folder\) and 1 more "
                       "where this run would write a case's mask or its summary, which are not files"):
        next(segment_cohort(load_model(tiny_model_dir), sorted(data.iterdir()), out, SegmentOptions(),
                            existing="overwrite"))
    assert sorted(p.name for p in out.iterdir()) == ["a_mask.nii.gz", "b_mask.mha", "c_mask.nii"]


@pytest.mark.parametrize("name", [f"{CASES[3]}_mask.tif", "summary.csv"])
def test_a_users_link_to_a_missing_file_is_an_output_the_run_refuses_to_replace(tiny_model_dir, cohort, tmp_path, name):
    """A link to a mask or summary on a drive not plugged in is the user's: replaced only with --overwrite, and
    --skip-existing does not take a linked summary.csv for its own."""
    out = tmp_path / "masks"
    out.mkdir()
    (out / name).symlink_to(tmp_path / "unplugged" / name)
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(cohort), "--output", str(out), "--device", "cpu"]
    with pytest.raises(InputError, match=f"already holds {name}, which this run would write"):
        next(segment_cohort(load_model(tiny_model_dir), sorted(cohort.iterdir()), out, SegmentOptions()))
    assert main(argv) == 2
    if name == "summary.csv":
        assert main([*argv, "--skip-existing"]) == 2
    assert sorted(p.name for p in out.iterdir()) == [name] and (out / name).is_symlink()


def test_a_users_link_replaced_with_overwrite_stays_replaced_when_a_later_case_fails(tiny_model_dir, cohort, tmp_path):
    """As every mask --overwrite replaced: removing the new mask too would leave neither the link nor a mask."""
    out = tmp_path / "masks"
    out.mkdir()
    (out / f"{CASES[3]}_mask.tif").symlink_to(tmp_path / "unplugged.tif")
    (cohort / CASES[5] / f"{CASES[5]}_2.tif").write_bytes(b"not a tiff")
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(cohort), "--output", str(out), "--device", "cpu"]
    assert main([*argv, "--overwrite"]) == 2
    assert [p.name for p in out.glob("*_mask.tif")] == [f"{CASES[3]}_mask.tif"]
    assert tifffile.imread(out / f"{CASES[3]}_mask.tif").shape == (3, 48, 48)


@pytest.mark.parametrize("link", ["hard", "symbolic"])
def test_a_journal_that_is_a_link_is_continued_as_a_file_of_its_own(tiny_model_dir, cohort, tmp_path, link):
    """A killed run's journal, hard-linked by a `cp -al` backup of the folder, or a link to a file of the user's: the
    next run's rows never reach the file behind the other name."""
    out, elsewhere = tmp_path / "masks", tmp_path / "backup.csv"
    out.mkdir()
    elsewhere.write_text(f"{CASES[0]},3,7,,0.5\n")
    (os.link if link == "hard" else os.symlink)(elsewhere, out / ".summary.rank0.csv")
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(cohort), "--output", str(out), "--device", "cpu"]
    assert main([*argv, "--skip-existing"]) == 0
    assert elsewhere.read_text() == f"{CASES[0]},3,7,,0.5\n"
    with open(out / "summary.csv", newline="") as handle:
        assert len(list(csv.reader(handle))) == 1 + len(CASES)


@pytest.mark.skipif(sys.platform == "win32", reason="file owners and modes are POSIX's")
def test_a_journal_another_user_left_unwritable_is_refused_in_one_line_naming_its_owner_before_any_case(
        tiny_model_dir, cohort, tmp_path, monkeypatch, capsys):
    """A shared lab folder: a colleague's run left its journal 0644. The first case's row failed with a bare
    "[Errno 13] Permission denied: ..." once that case was segmented. Root writes any file, so the refusal is the
    system's as a user meets it, and this process becomes someone other than the file's owner."""
    import pwd

    out = tmp_path / "masks"
    out.mkdir()
    journal = out / ".summary.rank0.csv"
    journal.write_text(f"{CASES[0]},3,7,,0.5\n")
    os.chmod(journal, 0o644)
    real_open = os.open

    def refused(path, flags, *args, **kwargs):
        if Path(path) == journal and flags & (os.O_WRONLY | os.O_RDWR | os.O_APPEND):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    def refused_append(path, mode="r", *args, **kwargs):
        if Path(path) == journal and mode != "r":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(batch_predict.os, "open", refused)
    monkeypatch.setattr(batch_predict, "open", refused_append, raising=False)  # the rows' appends
    monkeypatch.setattr(batch_predict.os, "geteuid", lambda: journal.stat().st_uid + 1)
    owner = pwd.getpwuid(journal.stat().st_uid).pw_name
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(cohort), "--output", str(out), "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Errno" not in err
    assert f"{journal} belongs to {owner} and is not writable for you" in err
    assert "ask them to finish it" in err and "choose another output folder" in err
    assert not list(out.glob("*_mask.tif")) and journal.read_text() == f"{CASES[0]},3,7,,0.5\n"


@pytest.mark.skipif(sys.platform == "win32", reason="file owners and sticky folders are POSIX's")
@pytest.mark.parametrize("name, text, existing", [
    ("summary.csv", "case,slices,tumour_voxels,tumour_mm3,seconds\n", "skip"),
    ("summary.csv", "case,slices,tumour_voxels,tumour_mm3,seconds\n", "overwrite"),
    (".summary.rank1.csv", f"{CASES[0]},3,7,,0.5\n", "refuse"),
    (f"{CASES[5]}_mask.tif", "their own mask", "overwrite"),
], ids=["summary-skip", "summary-overwrite", "journal", "mask-overwrite"])
def test_another_users_summary_or_mask_in_a_sticky_folder_is_refused_in_one_line_before_any_scan_is_read(
        tiny_model_dir, cohort, tmp_path, monkeypatch, capsys, name, text, existing):
    """A shared folder of mode 1777 keeps a colleague's summary.csv, or a journal a rank of their run left, for them:
    rank 0 replaces or removes those once every case is segmented, and was refused only then, hours of work lost.
    With --overwrite a colleague's mask of a case was refused only once that case came to be written.
    Root replaces any file, so this process becomes someone other than the file's and the folder's owner."""
    import pwd

    out = tmp_path / "masks"
    out.mkdir()
    os.chmod(out, 0o1777)
    theirs = out / name
    theirs.write_text(text)
    os.chmod(theirs, 0o666)  # writable for everyone: only the sticky bit keeps it
    monkeypatch.setattr(batch_predict, "loaded_scans", lambda *_: pytest.fail("a scan was read"))
    monkeypatch.setattr(os, "geteuid", lambda: theirs.stat().st_uid + 1)
    refusal = (f"cannot write {theirs}: it belongs to {pwd.getpwuid(theirs.stat().st_uid).pw_name}, and {out} is a "
               "shared folder (sticky bit) where only a file's owner may replace it")
    cases = sorted(cohort.iterdir())
    with pytest.raises(InputError, match=re.escape(refusal)):
        next(segment_cohort(load_model(tiny_model_dir), cases, out, SegmentOptions(), existing=existing))
    flags = {"skip": ["--skip-existing"], "overwrite": ["--overwrite"], "refuse": []}[existing]
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(cohort), "--output", str(out), "--device", "cpu"]
    assert main([*argv, *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"lgg-unet: error: {refusal}")
    assert sorted(p.name for p in out.iterdir()) == [name] and theirs.read_text() == text


@pytest.mark.skipif(sys.platform == "win32", reason="file owners and sticky folders are POSIX's")
def test_overwrite_in_a_sticky_folder_asks_about_the_mask_it_writes_not_another_format_of_the_case(
        tiny_model_dir, cohort, tmp_path, monkeypatch):
    """Only the first `<case>_mask.*` found was asked about: a colleague's mask in another format than the case's
    (a TIFF case's mask is .tif) refused the run for a file it would not touch, and beside an earlier-sorted file it
    hid the case's own mask, refused only once that case came to be written, after the cases before it."""
    import pwd

    out = tmp_path / "masks"
    out.mkdir()
    os.chmod(out, 0o1777)
    other_format = out / f"{CASES[5]}_mask.nii.gz"
    other_format.write_text("their NIfTI mask")
    monkeypatch.setattr(os, "geteuid", lambda: other_format.stat().st_uid + 1)  # every file is someone else's
    cases = sorted(cohort.iterdir())
    with batch_predict.claimed_output(out, cases, existing="overwrite"):
        pass
    theirs = out / f"{CASES[5]}_mask.tif"  # the file the run writes, after the .nii.gz in name order
    theirs.write_text("their TIFF mask")
    monkeypatch.setattr(batch_predict, "loaded_scans", lambda *_: pytest.fail("a scan was read"))
    refusal = (f"cannot write {theirs}: it belongs to {pwd.getpwuid(theirs.stat().st_uid).pw_name}, and {out} is a "
               "shared folder (sticky bit) where only a file's owner may replace it")
    with pytest.raises(InputError, match=f"^{re.escape(refusal)}"):
        next(segment_cohort(load_model(tiny_model_dir), cases, out, SegmentOptions(), existing="overwrite"))
    assert other_format.read_text() == "their NIfTI mask" and theirs.read_text() == "their TIFF mask"


@pytest.mark.skipif(sys.platform == "win32", reason="file owners and sticky folders are POSIX's")
def test_overwrite_in_a_sticky_folder_asks_about_an_earlier_versions_mask_it_would_replace(tiny_model_dir, tmp_path,
                                                                                           monkeypatch):
    """--overwrite replaces an NRRD scan's `.nii.gz` mask where it is, so that file, a colleague's, is refused before
    any scan is read; the `.nrrd` the run would otherwise write was asked about instead."""
    import pwd

    out = tmp_path / "masks"
    _nrrd_scans(tmp_path / "data", ["scan"], out)
    os.chmod(out, 0o1777)
    theirs = out / "scan_mask.nii.gz"
    monkeypatch.setattr(batch_predict, "loaded_scans", lambda *_: pytest.fail("a scan was read"))
    monkeypatch.setattr(os, "geteuid", lambda: theirs.stat().st_uid + 1)
    refusal = (f"cannot write {theirs}: it belongs to {pwd.getpwuid(theirs.stat().st_uid).pw_name}, and {out} is a "
               "shared folder (sticky bit) where only a file's owner may replace it")
    with pytest.raises(InputError, match=f"^{re.escape(refusal)}"):
        next(segment_cohort(load_model(tiny_model_dir), [tmp_path / "data" / "scan.nrrd"], out, SegmentOptions(),
                            existing="overwrite"))
    assert sorted(p.name for p in out.iterdir()) == [theirs.name]


def test_under_torchrun_overwrite_replaces_each_earlier_versions_mask_and_summarises_it(tiny_model_dir, tmp_path):
    """Each rank replaces its share's `.nii.gz` masks of NRRD scans with `.nrrd` ones, and rank 0's summary finds
    each of them, rank 1's too, with its row."""
    import SimpleITK as sitk

    out, names = tmp_path / "masks", ["a", "b", "c"]
    _nrrd_scans(tmp_path / "data", names, out)
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(tmp_path / "data"), "--output", str(out),
            "--device", "cpu", "--overwrite"]
    torch.multiprocessing.spawn(_predict_as_rank, args=(free_port(), argv, str(tmp_path / "log")), nprocs=2)
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE, *(f"{name}_mask.nrrd" for name in names),
                                                     "summary.csv"]
    rows = _summary_rows(out)
    assert list(rows) == names
    for name in names:
        voxels = np.count_nonzero(sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{name}_mask.nrrd"))))
        assert rows[name]["tumour_voxels"] == str(voxels) and rows[name]["seconds"] != ""
