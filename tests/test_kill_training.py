"""`lgg-unet train` killed at any moment: its folder holds no model or a loadable one, and `--resume` continues."""

from __future__ import annotations

import pytest

from napari_lgg_unet.engine import train as train_module
from napari_lgg_unet.engine.dataset import AugmentConfig
from napari_lgg_unet.engine.io import load_patients
from napari_lgg_unet.engine.model import load_model
from napari_lgg_unet.engine.run_folder import RunFolder
from napari_lgg_unet.engine.train import TrainConfig, train_model


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after the point where it is raised runs."""


def test_a_run_killed_before_its_best_model_was_written_gets_it_back_on_resume(sample_patient_dir, tmp_path, monkeypatch):
    scans = load_patients(sample_patient_dir)
    settings = dict(steps_per_epoch=1, batch_size=4, image_size=64, encoder="mobilenet_v2",
                    decoder_channels=(16, 16, 16, 16, 16), augment=AugmentConfig(enabled=False), workers=0,
                    device="cpu", precision="fp32")

    def killed(*_, **__):
        raise _Killed

    with monkeypatch.context() as patch:
        patch.setattr(train_module, "save_model", killed)
        with pytest.raises(_Killed):
            list(train_model(scans, TrainConfig(epochs=3, **settings), tmp_path / "run"))
    assert not RunFolder(tmp_path / "run").holds_model() and RunFolder(tmp_path / "run").holds_resume_state()
    finished = list(train_model(scans, TrainConfig(epochs=1, resume=True, **settings), tmp_path / "run"))[-1]
    assert finished.best_epoch == 1
    assert load_model(tmp_path / "run").config.training["best_epoch"] == 1
