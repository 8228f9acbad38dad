"""scripts/gpu_data.py: the slices that travel to a lent GPU machine in parts come back as the same training data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile

from napari_lgg_unet.engine.io import load_patient

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_data.py"


def _run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def test_parts_unpack_to_the_same_pixels_and_masks_and_report_missing_parts(sample_patient_dir, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(sample_patient_dir, root / sample_patient_dir.name)
    second = root / "P2"
    second.mkdir()
    rng = np.random.default_rng(0)  # noise compresses worst: the parts' size limit is really met
    for z in (1, 2, 3):
        tifffile.imwrite(second / f"P2_{z}.tif", rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
        tifffile.imwrite(second / f"P2_{z}_mask.tif", (rng.random((256, 256)) > 0.7).astype(np.uint8) * 255)
    packed = _run("pack", root, tmp_path / "pack", "--part-mib", 0.5)
    assert packed.returncode == 0, packed.stderr
    manifest = json.loads((tmp_path / "pack" / "manifest.json").read_text())
    assert {entry["part"] for entry in manifest.values()} == {1, 2}

    held_back = tmp_path / "held-back"
    shutil.move(tmp_path / "pack" / "part-2", held_back)  # the second call has not come yet
    first = _run("unpack", tmp_path / "pack", tmp_path / "data")
    assert first.returncode == 3 and "1 of 2 patients" in first.stdout
    shutil.move(held_back, tmp_path / "pack" / "part-2")
    second_call = _run("unpack", tmp_path / "pack", tmp_path / "data")
    assert second_call.returncode == 0, second_call.stderr + second_call.stdout
    for name in manifest:
        before, after = load_patient(root / name, require_masks=True), load_patient(tmp_path / "data" / name, True)
        np.testing.assert_array_equal(after.image, before.image)
        np.testing.assert_array_equal(after.mask, before.mask)


def test_a_part_that_does_not_match_its_manifest_is_refused(sample_patient_dir, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(sample_patient_dir, root / sample_patient_dir.name)
    assert _run("pack", root, tmp_path / "pack").returncode == 0
    manifest_file = tmp_path / "pack" / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest[sample_patient_dir.name]["sha256"] = "0" * 64
    manifest_file.write_text(json.dumps(manifest))
    refused = _run("unpack", tmp_path / "pack", tmp_path / "data")
    assert refused.returncode == 1 and "does not match its checksum" in refused.stderr
    assert not (tmp_path / "data").exists()


def test_a_wrong_path_is_one_line_not_a_traceback(tmp_path):
    packed = _run("pack", tmp_path / "nothere", tmp_path / "pack")
    unpacked = _run("unpack", tmp_path / "empty", tmp_path / "data")
    assert packed.returncode == 1 and packed.stderr.strip().splitlines() == [
        f"gpu_data pack: path not found: {tmp_path / 'nothere'}"]
    assert unpacked.returncode == 1 and len(unpacked.stderr.strip().splitlines()) == 1
    assert unpacked.stderr.startswith("gpu_data unpack: FileNotFoundError") and not (tmp_path / "pack").exists()
