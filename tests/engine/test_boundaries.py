import subprocess
import sys
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "src" / "napari_lgg_unet" / "engine"


def test_engine_imports_no_napari_or_qt():
    modules = sorted(p.stem for p in ENGINE.glob("*.py") if p.stem != "__init__")
    code = (
        "import sys\n"
        + "".join(f"import napari_lgg_unet.engine.{m}\n" for m in modules)
        + "bad = [m for m in sys.modules if m.split('.')[0] in ('napari', 'qtpy', 'magicgui', 'superqt', 'vispy')"
        + " or m.startswith(('PyQt', 'PySide'))]\n"
        + "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert len(modules) >= 10
    assert out.stdout.strip() == ""


def test_every_engine_module_a_dataset_and_a_tiff_prediction_run_without_simpleitk(tmp_path):
    """A lent GPU machine has no room for SimpleITK's 50 MB wheel (benchmarks/gpu_check.sh, scripts/gpu_train.sh):
    only reading or writing DICOM, NRRD and MHA may import it, not finding the patients of a Kaggle-style root."""
    import tifffile

    from napari_lgg_unet.sample_data import SAMPLE_PATIENT, sample_folder

    modules = sorted(p.stem for p in ENGINE.glob("*.py") if p.stem != "__init__")
    scan, mask = sample_folder() / f"{SAMPLE_PATIENT}_image.tif", tmp_path / "mask.tif"
    patient = tmp_path / "root" / "P"
    patient.mkdir(parents=True)
    tifffile.imwrite(patient / "P_1.tif", tifffile.imread(scan)[0])
    tifffile.imwrite(patient / "P_1_mask.tif", tifffile.imread(sample_folder() / f"{SAMPLE_PATIENT}_mask.tif")[0])
    code = (
        "import sys\n"
        "class NoSimpleITK:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'SimpleITK':\n"
        "            raise ImportError('SimpleITK is not installed here')\n"
        "sys.meta_path.insert(0, NoSimpleITK())\n"
        + "".join(f"import napari_lgg_unet.engine.{m}\n" for m in modules)
        + "from napari_lgg_unet.engine.io import find_scans\n"
        + f"assert len(find_scans({str(patient.parent)!r}, require_masks=True)) == 1\n"
        + "from napari_lgg_unet.cli import main\n"
        + f"sys.exit(main(['predict', '--model', 'default', '--input', {str(scan)!r}, '--output', {str(mask)!r}]))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert mask.stat().st_size > 0
