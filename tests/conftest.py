"""Shared fixtures: the real LGG data and BraTS sample beside the project (skipped with a reason when absent), the
patient that ships in the package as a Kaggle-style folder (so tests that need one real patient run anywhere), a tiny
model, and a cache folder of the tests' own."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LGG_ROOT = SHARED_DATA / "lgg" / "kaggle_3m"
BRATS_CASE = SHARED_DATA / "brats-sample" / "Brats18_TCIA10_628_1"


@pytest.fixture(scope="session", autouse=True)
def private_cache_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The tests' own cache folder (XDG_CACHE_HOME, inherited by the CLI runs they start): what 'auto' precision
    remembers is never written into the real home, and the real home's choices never steer a test."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(folder))
        yield folder


@pytest.fixture(scope="session")
def lgg_root() -> Path:
    if not LGG_ROOT.is_dir():
        pytest.skip(f"real LGG data not found at {LGG_ROOT} (../shared/data/lgg beside the project)")
    return LGG_ROOT


@pytest.fixture(scope="session")
def brats_case() -> Path:
    """A real BraTS 2018 case folder (FLAIR, T1, T1ce, T2 and seg NIfTI files); the sample holds one more beside it."""
    if not BRATS_CASE.is_dir():
        pytest.skip(f"BraTS sample case not found at {BRATS_CASE} (../shared/data/brats-sample beside the project)")
    return BRATS_CASE


@pytest.fixture(scope="session")
def sample_patient_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged sample patient (held out from the default model's training) laid out as the Kaggle dataset has it:
    `<patient>_<n>.tif` slices (n from 1) with `<patient>_<n>_mask.tif` (0/255), pixels unchanged."""
    import tifffile

    from napari_lgg_unet.sample_data import SAMPLE_PATIENT, sample_folder

    image = tifffile.imread(sample_folder() / f"{SAMPLE_PATIENT}_image.tif")
    mask = tifffile.imread(sample_folder() / f"{SAMPLE_PATIENT}_mask.tif")
    folder = tmp_path_factory.mktemp("kaggle") / SAMPLE_PATIENT
    folder.mkdir()
    for number, (slice_image, slice_mask) in enumerate(zip(image, mask), start=1):
        tifffile.imwrite(folder / f"{SAMPLE_PATIENT}_{number}.tif", slice_image)
        tifffile.imwrite(folder / f"{SAMPLE_PATIENT}_{number}_mask.tif", (slice_mask > 0).astype("uint8") * 255)
    return folder


@pytest.fixture(scope="session")
def short_lgg_patients(lgg_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[list[str]], Path]:
    """Makes a folder of short copies of real LGG patients (see `_short_patient`), for tests whose assertions hold
    on any real scans: segmenting and validating whole volumes made them the slowest of the suite."""

    def make(names: list[str]) -> Path:
        root = tmp_path_factory.mktemp("short-lgg")
        for name in names:
            _short_patient(lgg_root / name, root)
        return root

    return make


def _short_patient(source: Path, destination: Path, slices: int = 8) -> Path:
    """A copy of the Kaggle patient folder `source` under `destination` holding only the `slices` slices around its
    largest tumour cross-section (renumbered from 1, pixels unchanged)."""
    import shutil

    import tifffile

    def number(path: Path) -> int:
        return int(path.stem.rsplit("_", 1)[1])

    images = sorted((p for p in source.glob("*.tif") if not p.stem.endswith("_mask")), key=number)
    areas = [int((tifffile.imread(p.with_name(f"{p.stem}_mask.tif")) > 0).sum()) for p in images]
    start = min(max(0, areas.index(max(areas)) - slices // 2), max(0, len(images) - slices))
    folder = destination / source.name
    folder.mkdir(parents=True)
    for new, image in enumerate(images[start:start + slices], start=1):
        shutil.copyfile(image, folder / f"{source.name}_{new}.tif")
        shutil.copyfile(image.with_name(f"{image.stem}_mask.tif"), folder / f"{source.name}_{new}_mask.tif")
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small untrained U-Net folder (64 px input, narrow decoder) for fast plumbing tests."""
    from napari_lgg_unet.engine.model import ModelConfig, build_network, save_model
    from napari_lgg_unet.engine.preprocess import PreprocessConfig

    config = ModelConfig(decoder_channels=(16, 16, 16, 16, 16), preprocess=PreprocessConfig(image_size=64))
    return save_model(build_network(config), config, tmp_path_factory.mktemp("tiny") / "model")
