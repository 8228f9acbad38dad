"""The built wheel carries what napari's plugin manager and offline users need."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    pytest.importorskip("setuptools", reason="building the wheel without isolation needs setuptools in this env")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    return zipfile.ZipFile(next(out.glob("napari_lgg_unet-*.whl")))


def test_wheel_holds_manifest_sample_and_default_model(wheel):
    names = set(wheel.namelist())
    assert "napari_lgg_unet/napari.yaml" in names
    assert any(n.startswith("napari_lgg_unet/samples/") and n.endswith(".tif") for n in names)
    assert {"napari_lgg_unet/weights/lgg-unet-default/config.json",
            "napari_lgg_unet/weights/lgg-unet-default/model.safetensors"} <= names


def test_wheel_metadata_registers_the_plugin_and_the_cli(wheel):
    entry_points = wheel.read(next(n for n in wheel.namelist() if n.endswith("entry_points.txt"))).decode()
    assert "[napari.manifest]" in entry_points and "napari_lgg_unet:napari.yaml" in entry_points
    assert "lgg-unet = napari_lgg_unet.cli:main" in entry_points
    metadata = wheel.read(next(n for n in wheel.namelist() if n.endswith("METADATA"))).decode()
    assert "Classifier: Framework :: napari" in metadata and "Summary: " in metadata
