"""Shared fixtures: the real LGG data beside the project (skipped with a reason when absent) and a tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

LGG_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lgg" / "kaggle_3m"
# Patients of the default model's held-out test split (never trained on), small enough for quick tests.
TEST_PATIENT = "TCGA_CS_6665_20010817"


@pytest.fixture(scope="session")
def lgg_root() -> Path:
    if not LGG_ROOT.is_dir():
        pytest.skip(f"real LGG data not found at {LGG_ROOT} (../shared/data/lgg beside the project)")
    return LGG_ROOT


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small untrained U-Net folder (64 px input, narrow decoder) for fast plumbing tests."""
    from napari_lgg_unet.engine.model import ModelConfig, build_network, save_model
    from napari_lgg_unet.engine.preprocess import PreprocessConfig

    config = ModelConfig(decoder_channels=(16, 16, 16, 16, 16), preprocess=PreprocessConfig(image_size=64))
    return save_model(build_network(config), config, tmp_path_factory.mktemp("tiny") / "model")
