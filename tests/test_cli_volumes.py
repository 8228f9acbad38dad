"""`lgg-unet predict / evaluate` on NIfTI cases: masks keep the scan's grid, a folder of cases gives one mask each."""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile

from napari_lgg_unet.cli import main

AFFINE = np.array([[0, 0, -2.0, 40], [0.9, 0, 0, -30], [0, 1.1, 0, 12], [0, 0, 0, 1]])


def _case(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(len(name))
    for sequence in ("flair", "t1", "t1ce"):
        nib.save(nib.Nifti1Image(rng.integers(0, 500, (40, 36, 3), dtype=np.int16), AFFINE),
                 folder / f"{name}_{sequence}.nii.gz")
    nib.save(nib.Nifti1Image((rng.random((40, 36, 3)) > 0.9).astype(np.uint8) * 4, AFFINE),
             folder / f"{name}_seg.nii.gz")
    return folder


def test_predict_on_a_case_folder_writes_a_nifti_mask_on_the_flair_grid(tiny_model_dir, tmp_path, capsys):
    case = _case(tmp_path / "data", "P1")
    out = tmp_path / "m.nii.gz"
    assert main(["predict", "--model", str(tiny_model_dir), "--input", str(case), "--output", str(out)]) == 0
    said = capsys.readouterr().out  # which file fed each of the model's channels
    assert f"FLAIR: {case / 'P1_flair.nii.gz'}" in said and f"post-contrast T1: {case / 'P1_t1ce.nii.gz'}" in said
    mask, flair = nib.load(out), nib.load(case / "P1_flair.nii.gz")
    assert mask.shape == flair.shape and mask.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(mask.affine, flair.affine)
    assert set(np.unique(np.asanyarray(mask.dataobj))) <= {0, 1}


def test_an_output_ending_in_a_slash_is_a_new_folder_given_the_case_mask_and_summary(tiny_model_dir, tmp_path):
    """`--output out/` for one case: Path drops the slash, and a TIFF named `out` lost the NIfTI's geometry."""
    case = _case(tmp_path / "data", "P1")
    out = tmp_path / "out"
    assert main(["predict", "--model", str(tiny_model_dir), "--input", str(case), "--output", f"{out}/"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".lock", "P1_mask.nii.gz", "summary.csv"]
    np.testing.assert_array_equal(nib.load(out / "P1_mask.nii.gz").affine, nib.load(case / "P1_flair.nii.gz").affine)


@pytest.mark.parametrize("kaggle", [False, True], ids=["plain case folder", "Kaggle patient"])
def test_a_scan_given_as_the_working_folder_is_named_after_it(tiny_model_dir, tmp_path, monkeypatch, kaggle):
    """`--input .` in a case or patient folder: Path(".").name is "", so its mask was `_mask.nii.gz` (`_mask.tif`)
    and its summary row had no name; two patients' runs into one folder then shared one mask."""
    if kaggle:
        folder = tmp_path / "data" / "TCGA_P"
        folder.mkdir(parents=True)
        for n in (1, 2):
            tifffile.imwrite(folder / f"TCGA_P_{n}.tif", np.zeros((32, 32, 3), np.uint8))
    else:  # files named by sequence alone: the case is named after its folder
        folder = tmp_path / "data" / "case7"
        folder.mkdir(parents=True)
        nib.save(nib.Nifti1Image(np.zeros((40, 36, 3), np.int16), AFFINE), folder / "flair.nii.gz")
    monkeypatch.chdir(folder)
    out = tmp_path / "out"
    assert main(["predict", "--model", str(tiny_model_dir), "--input", ".", "--output", f"{out}/"]) == 0
    name = folder.name + ("_mask.tif" if kaggle else "_mask.nii.gz")
    assert sorted(p.name for p in out.iterdir()) == [".lock", name, "summary.csv"]
    assert (out / "summary.csv").read_text().splitlines()[1].startswith(f"{folder.name},")


def test_a_folder_holding_one_scan_gets_a_folder_of_masks_unless_the_output_is_named_as_a_mask(tiny_model_dir,
                                                                                                 tmp_path):
    """`--input folder --output masks` was refused ("end --output with / for a folder") when the folder held one
    scan, though the same command writes a folder of masks for two."""
    data = tmp_path / "data"
    _one_file_scans(data)[0].unlink()
    model = str(tiny_model_dir)
    assert main(["predict", "--model", model, "--input", str(data), "--output", str(tmp_path / "masks")]) == 0
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == [".lock", "summary.csv", "vol_mask.nii.gz"]
    assert main(["predict", "--model", model, "--input", str(data), "--output", str(tmp_path / "m.nii.gz")]) == 0
    assert (tmp_path / "m.nii.gz").is_file()


@pytest.mark.parametrize("where", ["P1_mask.nii.gz", "new/P1_mask.nii.gz"], ids=["loose", "in a new subfolder"])
@pytest.mark.parametrize("layout", ["loose files", "case folders"])
def test_a_mask_file_is_not_written_into_the_folder_of_scans_it_was_read_from(tiny_model_dir, tmp_path, capsys,
                                                                              layout, where):
    """Into a folder of loose scans the mask was read as one more scan next time; into a folder of case folders,
    `P1_mask.nii.gz` made the next run refuse the folder (P1 both loose and in a subfolder). In a subfolder it is
    found as well (`new/P1_mask.nii.gz`: a case P1 twice, or scans both loose and in subfolders); and giving the scan
    itself as --input, which the message once offered, writes the same file to the same place."""
    data = tmp_path / "data"
    if layout == "loose files":
        _one_file_scans(data)[0].unlink()
    else:
        _case(data, "P1")
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(data), "--output", str(data / where)]
    assert main(argv) == 2
    assert capsys.readouterr().err.endswith(f"would lie in {data}, the folder of scans read, where the next run on it "
                                            "would take the mask for a scan or for a scan's manual mask; write it "
                                            "elsewhere\n")
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before


def test_an_nnunet_dataset_of_one_case_is_a_folder_of_scans_and_gets_a_folder_of_masks(tiny_model_dir, tmp_path):
    """A dataset is read whole (find_scans does not look into its subfolders), which is_one_scan took for one scan:
    `--output masks` was refused with the slash hint, though the same dataset with two cases gets a folder."""
    data = tmp_path / "Dataset001"
    (data / "imagesTr").mkdir(parents=True)
    (data / "dataset.json").write_text('{"channel_names": {"0": "FLAIR"}, "labels": {"background": 0, "tumour": 1}}')
    nib.save(nib.Nifti1Image(np.random.default_rng(0).integers(0, 500, (40, 36, 3), dtype=np.int16), AFFINE),
             data / "imagesTr" / "c1_0000.nii.gz")
    for root, out in ((data, tmp_path / "masks"), (data / "imagesTr", tmp_path / "masks2")):
        assert main(["predict", "--model", str(tiny_model_dir), "--input", str(root), "--output", str(out)]) == 0
        assert sorted(p.name for p in out.iterdir()) == [".lock", "c1_mask.nii.gz", "summary.csv"]


def test_an_earlier_runs_masks_inside_the_input_are_named_as_such_when_another_output_is_given(tiny_model_dir,
                                                                                                tmp_path, capsys):
    """`--output ROOT/masks` then `--output elsewhere`: the refusal said "two cases are named P1" without a word
    that the second was the first run's mask."""
    data = tmp_path / "data"
    _case(data, "P1")
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(data), "--output"]
    assert main([*argv, str(data / "masks")]) == 0
    capsys.readouterr()
    assert main([*argv, str(tmp_path / "elsewhere")]) == 2
    assert f"{data / 'masks' / 'P1_mask.nii.gz'} is a mask alone, perhaps an earlier run's" in capsys.readouterr().err
    assert not (tmp_path / "elsewhere").exists()


def _one_file_scans(root: Path) -> list[Path]:
    """A TIFF stack and a lone NIfTI sequence file: scans whose names are not their file names (`scan`, `vol`)."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    tifffile.imwrite(root / "scan.tif", rng.integers(0, 255, (2, 48, 48, 3), dtype=np.uint8))
    nib.save(nib.Nifti1Image(rng.integers(0, 500, (40, 36, 3), dtype=np.int16), AFFINE), root / "vol_flair.nii.gz")
    return [root / "scan.tif", root / "vol_flair.nii.gz"]


@pytest.mark.parametrize("which", [0, 1], ids=["TIFF", "NIfTI file"])
def test_one_scan_file_into_a_folder_refuses_a_users_mask_there_and_gets_its_summary_row(
        tiny_model_dir, tmp_path, capsys, which):
    """A file's scan is named without its suffix (`scan.tif` -> `scan_mask.tif`): its finished mask was looked for as
    `scan.tif_mask.*`, so a user's `scan_mask.tif` in the folder was replaced unasked, and summary.csv had no row."""
    scan = _one_file_scans(tmp_path / "data")[which]
    mask_name = ["scan_mask.tif", "vol_mask.nii.gz"][which]
    out = tmp_path / "out"
    out.mkdir()
    (out / mask_name).write_text("the user's own mask")
    command = ["predict", "--model", str(tiny_model_dir), "--input", str(scan), "--output", f"{out}/"]
    assert main(command) == 2
    assert f"already holds {mask_name}" in capsys.readouterr().err
    assert (out / mask_name).read_text() == "the user's own mask"
    (out / mask_name).unlink()
    assert main(command) == 0
    rows = (out / "summary.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith(f"{mask_name.split('_mask')[0]},")


def test_predict_on_a_folder_of_cases_writes_one_mask_each_and_evaluate_scores_them(tiny_model_dir, tmp_path, capsys):
    for name in ("P1", "P2"):
        _case(tmp_path / "data", name)
    assert main(["predict", "--model", str(tiny_model_dir), "--input", str(tmp_path / "data"),
                 "--output", str(tmp_path / "out")]) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())  # the lock marks a folder a job writes; it is empty
    assert written == [".lock", "P1_mask.nii.gz", "P2_mask.nii.gz", "summary.csv"]
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data", str(tmp_path / "data")]) == 0
    printed = capsys.readouterr().out
    assert "P1" in printed and "P2" in printed and "2 patients: mean Dice" in printed


SHEARED = np.array([[0.9, 0, 0.5, -20], [0, 1.1, 0, 12], [0, 0, 2.0, -30], [0, 0, 0, 1]])  # slices slanted along x


@pytest.mark.parametrize("units", ["mm", "meter"])
def test_the_summarys_tumour_volume_of_a_sheared_scan_is_its_voxels_times_the_affines_determinant(
        tiny_model_dir, tmp_path, units):
    """A sheared affine (gantry tilt, a registration tool's output) has slanted voxels, smaller than the product of
    their edge lengths: summary.csv gave that product per voxel, here 3 % too much (sqrt(2.0² + 0.5²) / 2.0)."""
    root = tmp_path / "data"
    root.mkdir()
    image = nib.Nifti1Image(np.random.default_rng(3).integers(0, 500, (40, 36, 3), dtype=np.int16),
                            SHEARED / [[1000], [1000], [1000], [1]] if units == "meter" else SHEARED)
    image.header.set_xyzt_units(units)
    nib.save(image, root / "P1.nii.gz")
    assert main(["predict", "--model", str(tiny_model_dir), "--input", str(root), "--output", str(tmp_path / "out"),
                 "--threshold", "0.01", "--min-size", "0", "--min-confidence", "0", "--no-keep-largest"]) == 0
    with open(tmp_path / "out" / "summary.csv", newline="") as handle:
        (row,) = csv.DictReader(handle)
    voxels = int(row["tumour_voxels"])
    assert voxels > 0
    assert float(row["tumour_mm3"]) == pytest.approx(voxels * abs(np.linalg.det(SHEARED[:3, :3])), abs=1e-3)


@pytest.mark.parametrize("again", ["--skip-existing", "--overwrite"])
def test_a_root_of_loose_volume_files_is_segmented_again_into_its_masks_subfolder(tiny_model_dir, tmp_path, again):
    """The earlier run's masks in ROOT/masks are no scans: not a subfolder of cases beside the loose ones."""
    root = tmp_path / "data"
    root.mkdir()
    for name in ("P1", "P2"):
        nib.save(nib.Nifti1Image(np.random.default_rng(0).integers(0, 500, (40, 36, 3), dtype=np.int16), AFFINE),
                 root / f"{name}.nii.gz")
    command = ["predict", "--model", str(tiny_model_dir), "--input", str(root), "--output", str(root / "masks")]
    assert main(command) == 0
    assert main([*command, again]) == 0
    assert sorted(p.name for p in (root / "masks").glob("*.nii.gz")) == ["P1_mask.nii.gz", "P2_mask.nii.gz"]


def _without_speed(printed: str) -> str:
    """`lgg-unet evaluate`'s report less its speed (slices/s), the one part that differs between two runs."""
    return re.sub(r"[\d.]+ slices/s", "", printed)


@pytest.mark.parametrize("extra", [(1,), (1, 1)])
def test_evaluate_and_train_take_labels_with_trailing_axes_of_one_as_their_3d_labels(tiny_model_dir, tmp_path,
                                                                                      capsys, extra):
    """Some tools write a 3D label map as (X, Y, Z, 1) or (X, Y, Z, 1, 1): the same labels, so the same Dice."""
    case = _case(tmp_path / "data", "P1")
    evaluate = ["evaluate", "--model", str(tiny_model_dir), "--data", str(tmp_path / "data")]
    assert main(evaluate) == 0
    plain = capsys.readouterr().out
    seg = nib.load(case / "P1_seg.nii.gz")
    nib.save(nib.Nifti1Image(np.asanyarray(seg.dataobj).reshape(*seg.shape, *extra), AFFINE), case / "P1_seg.nii.gz")
    assert main(evaluate) == 0
    assert _without_speed(capsys.readouterr().out) == _without_speed(plain)
    train = ["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--epochs", "1",
             "--steps-per-epoch", "1", "--batch-size", "2", "--image-size", "64", "--decoder-channels",
             "16,16,16,16,16", "--workers", "0", "--val-fraction", "0"]
    assert main(train) == 0, capsys.readouterr().err


def test_a_case_without_flair_is_one_line_and_writes_nothing(tiny_model_dir, tmp_path, capsys):
    case = _case(tmp_path / "data", "P1")
    (case / "P1_flair.nii.gz").unlink()
    out = tmp_path / "m.nii.gz"
    assert main(["predict", "--model", str(tiny_model_dir), "--input", str(case), "--output", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no FLAIR" in error and not out.exists()



def test_predict_on_an_nnunet_folder_whose_dataset_json_is_no_object_is_one_line(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "dataset.json").write_text("[1, 2, 3]")
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 2), np.int16), AFFINE), tmp_path / "imagesTr" / "c_0000.nii.gz")
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(tmp_path), "--output", str(tmp_path / "out")]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "dataset.json is no nnU-Net dataset description: it holds an array" in error


def _without_orientation(path: Path) -> Path:
    """A NIfTI scan whose qform_code and sform_code are 0, as old Analyze-era conversions are: pixdim alone."""
    image = nib.Nifti1Image(np.random.default_rng(0).integers(0, 500, (40, 36, 3), dtype=np.int16), None)
    image.header.set_zooms((0.9, 1.1, 2.0))
    image.set_qform(None, code=0)
    image.set_sform(None, code=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)
    return path


def test_predict_on_a_nifti_without_orientation_says_so_in_one_line_and_writes_a_mask_without_it_too(
        tiny_model_dir, tmp_path, capsys):
    scan = _without_orientation(tmp_path / "data" / "old.nii.gz")
    out = tmp_path / "old_mask.nii.gz"
    assert main(["predict", "--model", str(tiny_model_dir), "--input", str(scan), "--output", str(out)]) == 0
    said = capsys.readouterr().err.splitlines()
    assert [line for line in said if "warning" in line] == [
        f"lgg-unet: warning: {scan} has no orientation (its qform_code and sform_code are 0): it is shown and "
        "segmented as if its voxel axes ran right to left, posterior to anterior and inferior to superior (nibabel's "
        "reading; ITK-based viewers read it otherwise), so check that the brain looks upright; its mask keeps the "
        "scan's voxel grid and header, codes 0 included, so any tool overlays the two alike"]
    mask = nib.load(out)  # so ITK-based viewers read the mask by pixdim as they read the scan
    assert (int(mask.header["qform_code"]), int(mask.header["sform_code"])) == (0, 0)
    np.testing.assert_array_equal(mask.header.get_zooms(), nib.load(scan).header.get_zooms())


def test_predict_writes_a_nifti_2_scans_mask_with_its_header_as_stored(tiny_model_dir, tmp_path):
    """End to end, a NIfTI-2 scan placed by its qform alone (sform_code 0, unused sform rows of another matrix, the
    qform's offsets beyond 32-bit precision): `predict --output out/` gives a NIfTI-2 mask whose transforms, codes,
    pixdim and unit are the scan's, field for field (its sform rows held the qform, and NIfTI-1 rounded the rest)."""
    from nifti_headers import PLACEMENT_FIELDS

    image = nib.Nifti2Image(np.random.default_rng(2).integers(0, 500, (40, 36, 3), dtype=np.int16), None)
    qform = AFFINE.copy()
    qform[:3, 3] = (40.123456789, -30.987654321, 12.5)
    image.set_qform(qform, code=1)
    image.set_sform(np.diag([2.0, 2.0, 2.0, 1.0]), code=0)
    image.header.set_xyzt_units("mm", "sec")
    (tmp_path / "data").mkdir()
    nib.save(image, tmp_path / "data" / "scan.nii.gz")
    out = tmp_path / "out"
    assert main(["predict", "--model", str(tiny_model_dir), "--input", str(tmp_path / "data" / "scan.nii.gz"),
                 "--output", f"{out}/"]) == 0
    mask, scan = nib.load(out / "scan_mask.nii.gz"), nib.load(tmp_path / "data" / "scan.nii.gz")
    assert type(mask) is nib.Nifti2Image and mask.shape == scan.shape
    for field in PLACEMENT_FIELDS:  # to 64-bit rounding (the quaternion is recomputed), not NIfTI-1's micrometres
        np.testing.assert_allclose(np.ravel(mask.header[field])[:4], np.ravel(scan.header[field])[:4], rtol=0,
                                   atol=1e-12, err_msg=field)
    assert mask.header.get_xyzt_units()[0] == "mm"


@pytest.mark.parametrize("suffix, mask_suffix", [(".nrrd", ".nrrd"), (".mha", ".mha"), (".mhd", ".mha")])
def test_an_nrrd_or_mha_scans_mask_takes_its_format_and_its_grid_to_the_last_bit(tiny_model_dir, tmp_path, suffix,
                                                                                  mask_suffix):
    """`predict --output out/` gave every volume a `.nii.gz` mask, whose 32-bit header moved an NRRD's 64-bit origin
    by 2 micrometres: ITK's filters then refused the scan and its mask as two physical spaces. The mask now takes its
    scan's format (the one-file form of a `.mhd`), on its grid to the last bit, and `--skip-existing` keeps it."""
    import SimpleITK as sitk

    scan = sitk.GetImageFromArray(np.random.default_rng(3).integers(0, 500, (3, 36, 40), dtype=np.int16))
    scan.SetSpacing((0.9, 1.1, 2.0))
    scan.SetOrigin((-90.123456789, 12.987654321, -7.5))
    scan.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, -1.0))
    (tmp_path / "data").mkdir()
    sitk.WriteImage(scan, str(tmp_path / "data" / f"scan{suffix}"))
    out = tmp_path / "out"
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(tmp_path / "data" / f"scan{suffix}"),
            "--output", f"{out}/", "--skip-existing"]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == [".lock", f"scan_mask{mask_suffix}", "summary.csv"]
    mask = sitk.ReadImage(str(out / f"scan_mask{mask_suffix}"))
    for read in ("GetSize", "GetOrigin", "GetSpacing", "GetDirection"):
        assert getattr(mask, read)() == getattr(scan, read)(), read
    sitk.LabelStatisticsImageFilter().Execute(scan, mask)  # raises where ITK finds two physical spaces
    written = (out / f"scan_mask{mask_suffix}").stat().st_mtime_ns
    assert main(argv) == 0  # the mask is read back as its scan's, so kept, not refused as someone else's
    assert (out / f"scan_mask{mask_suffix}").stat().st_mtime_ns == written


def test_predict_on_a_folder_says_once_for_each_scan_without_orientation(tiny_model_dir, tmp_path, capsys):
    scans = [_without_orientation(tmp_path / "data" / f"{name}.nii.gz") for name in ("A", "B")]
    oriented = nib.Nifti1Image(np.random.default_rng(1).integers(0, 500, (40, 36, 3), dtype=np.int16), AFFINE)
    nib.save(oriented, tmp_path / "data" / "P1.nii.gz")  # no warning
    out = tmp_path / "out"
    assert main(["predict", "--model", str(tiny_model_dir), "--input", str(tmp_path / "data"), "--output", str(out),
                 "--read-ahead", "2"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lgg-unet: warning:")]
    assert [line.split(" has no orientation")[0] for line in warned] == [f"lgg-unet: warning: {s}" for s in scans]
    assert sorted(p.name for p in out.glob("*_mask.nii.gz")) == ["A_mask.nii.gz", "B_mask.nii.gz", "P1_mask.nii.gz"]


@pytest.mark.parametrize("read_ahead", ["0", "2"])
def test_a_warning_filter_of_error_makes_a_nifti_without_orientation_one_error_line_and_exit_2(
        tiny_model_dir, tmp_path, capsys, read_ahead):
    """A script that turned warnings into errors (or `python -W error`) gets the warning as bad input, in one line
    and exit 2, also when the scan was read by the read-ahead thread: it was 'internal error' and exit 1, a bug's
    report pointing at LGG_UNET_DEBUG."""
    scan = _without_orientation(tmp_path / "data" / "old.nii.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code = main(["predict", "--model", str(tiny_model_dir), "--input", str(scan.parent),
                     "--output", f"{tmp_path / 'out'}/", "--read-ahead", read_ahead])  # a folder: one scan is a cohort
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lgg-unet:")]
    assert code == 2
    assert said == [f"lgg-unet: error: {scan} has no orientation (its qform_code and sform_code are 0): it is shown "
                    "and segmented as if its voxel axes ran right to left, posterior to anterior and inferior to "
                    "superior (nibabel's reading; ITK-based viewers read it otherwise), so check that the brain looks "
                    "upright; its mask keeps the scan's voxel grid and header, codes 0 included, so any tool overlays "
                    "the two alike"]


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_an_itk_mask_of_a_scan_itk_would_place_elsewhere_is_refused_before_the_model_loads(
        tiny_model_dir, tmp_path, capsys, monkeypatch, suffix):
    """A NIfTI scan whose qform places it elsewhere than its sform gets no .nrrd / .mha mask (one placement only;
    see volumes.itk_placement_differs). The refusal came once the model had segmented the whole scan, though the
    scan's header says so as soon as it is read; the same scan written as .nii.gz is segmented."""
    image = nib.Nifti1Image(np.random.default_rng(0).integers(0, 500, (40, 36, 3), dtype=np.int16), AFFINE)
    image.set_qform(np.diag([1.0, 1.0, 2.0, 1.0]), code=1)  # ITK-based viewers follow the qform
    image.set_sform(AFFINE, code=2)  # nibabel the sform
    scan = tmp_path / "data" / "scan.nii.gz"
    scan.parent.mkdir()
    nib.save(image, scan)
    monkeypatch.setattr("napari_lgg_unet.engine.model.load_model", lambda *_, **__: pytest.fail("refused too late"))
    out = tmp_path / f"m{suffix}"
    assert main(["predict", "--model", str(tiny_model_dir), "--input", str(scan), "--output", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"lgg-unet: error: cannot write m{suffix}: its scan's NIfTI header has a qform and an sform that place it "
        "differently (its qform_code and sform_code are both set), so ITK-based viewers (3D Slicer, ITK-SNAP) may "
        f"place the scan elsewhere than nibabel does, and a {suffix} mask holds one placement only; save the mask as "
        ".nii.gz, which keeps the scan's header as it is\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    monkeypatch.undo()
    assert main(["predict", "--model", str(tiny_model_dir), "--input", str(scan),
                 "--output", str(tmp_path / "m.nii.gz")]) == 0


def test_evaluate_lists_a_folder_of_dicom_studies_once_for_json_and_the_run(tiny_model_dir, tmp_path, monkeypatch,
                                                                            capsys):
    """--json's check and the run each listed --data, and GDCM read every DICOM file's header for each listing. A
    DICOM study holds no mask, so the run ends at the refusal of patients without one, after both listings."""
    from dicom_files import counting_gdcm_scans, write_studies

    studies = write_studies(tmp_path / "data", 2)
    scans = counting_gdcm_scans(monkeypatch)
    argv = ["evaluate", "--model", str(tiny_model_dir), "--data", str(tmp_path / "data"), "--json",
            str(tmp_path / "r.json")]
    assert main(argv) != 0 and "no manual mask" in capsys.readouterr().err
    assert {str(study) for study in studies} <= set(scans) and set(scans.values()) == {1}
