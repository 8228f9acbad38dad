"""The `lgg-unet` command as one process of a torchrun job that needs no other process (no group is joined): what it
says and does as rank 0 and as rank 1 of two, on one machine (LOCAL_RANK = RANK)."""

import pytest

from napari_lgg_unet import cli
from napari_lgg_unet.cli import main


def _as_rank(monkeypatch, rank: int) -> None:
    """The variables torchrun sets for `rank` of two processes on one machine."""
    for name, value in {"RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": 2, "LOCAL_WORLD_SIZE": 2}.items():
        monkeypatch.setenv(name, str(value))


def test_one_scan_is_segmented_and_written_by_rank_0_alone_and_the_other_ranks_end_quietly(
        sample_patient_dir, tiny_model_dir, tmp_path, capsys, monkeypatch):
    # Every process segmented the same scan and wrote the same mask (and its lines), each replacing the others'.
    out = tmp_path / "mask.tif"
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(sample_patient_dir), "--output", str(out),
            "--device", "cpu"]
    _as_rank(monkeypatch, 1)
    assert main(argv) == 0
    assert capsys.readouterr() == ("", "") and not out.exists()
    _as_rank(monkeypatch, 0)
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {out}"


@pytest.mark.parametrize("existing", [False, True], ids=["new-mask", "overwritten-mask"])
def test_the_other_ranks_end_before_listing_or_reading_a_scan_that_rank_0_segments_alone(
        sample_patient_dir, tiny_model_dir, tmp_path, capsys, monkeypatch, existing):
    """They listed the input first (every header of a DICOM folder) only to learn it was one scan, and ended."""
    out = tmp_path / "mask.nii.gz"
    if existing:
        out.write_text("an earlier mask")
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(sample_patient_dir), "--output", str(out),
            "--device", "cpu", *(["--overwrite"] if existing else [])]
    for name in ("find_scans", "is_one_scan", "load_scan"):
        monkeypatch.setattr(f"napari_lgg_unet.engine.io.{name}", lambda *_, **__: pytest.fail("the input was read"))
    _as_rank(monkeypatch, 1)
    assert main(argv) == 0
    assert capsys.readouterr() == ("", "") and out.exists() == existing


def test_one_scan_given_a_bad_output_is_refused_by_rank_0_alone(sample_patient_dir, tiny_model_dir, tmp_path,
                                                                 capsys, monkeypatch):
    (tmp_path / "mask.tif").write_text("mine")
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(sample_patient_dir), "--output",
            str(tmp_path / "mask.tif")]
    _as_rank(monkeypatch, 1)
    assert main(argv) == 0 and capsys.readouterr() == ("", "")
    _as_rank(monkeypatch, 0)
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("lgg-unet: error: --output")


@pytest.mark.parametrize("rank, lines", [(0, 1), (1, 0)])
def test_a_bad_option_is_said_once_per_machine_and_ends_every_process_with_2(rank, lines, capsys, monkeypatch):
    _as_rank(monkeypatch, rank)
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--input", "x", "--output", "y", "--no-such-option"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("lgg-unet: error: unrecognized arguments: --no-such-option") == lines and err.count("\n") == lines


@pytest.mark.parametrize("rank, lines", [(0, 1), (1, 0)])
def test_ctrl_c_is_said_once_per_machine_and_ends_every_process_with_130(rank, lines, capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt("the finished masks stay in out")

    monkeypatch.setitem(cli.COMMANDS, "view", interrupted)
    _as_rank(monkeypatch, rank)
    assert main(["view"]) == 130
    assert capsys.readouterr().err == "lgg-unet: interrupted; the finished masks stay in out\n" * lines
