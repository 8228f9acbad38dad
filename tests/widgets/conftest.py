"""Widget fixtures: recorded notifications, a fresh session-model registry and a viewer."""

from __future__ import annotations

from typing import Iterator

import pytest

# Loaded before any viewer, so that the tests' docks get the widgets themselves: a file that imports no PyTorch (such
# as test_review_list.py), run alone, got the loading placeholder (widgets/lazy.py) and failed on it.
import napari_lgg_unet.widgets.segment  # noqa: F401
import napari_lgg_unet.widgets.train  # noqa: F401
from napari_lgg_unet.widgets import notify, session_models as registry
from napari_lgg_unet.widgets.job import JobRunner


@pytest.fixture
def notes(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Every notification the widgets show, by kind, instead of napari popups."""
    seen: dict[str, list[str]] = {"error": [], "warning": [], "info": []}
    for kind in seen:
        monkeypatch.setattr(notify, f"show_{kind}", seen[kind].append)
    return seen


@pytest.fixture(autouse=True)
def fresh_session_models():
    registry.session_models.clear()
    yield
    registry.session_models.clear()


@pytest.fixture(autouse=True)
def closed_viewers_freed() -> Iterator[None]:
    """After each test (and after napari's fixture has closed its viewers), drop the callback napari 0.9's main
    window leaves on every theme's `canvas` event: it holds the closed window, and with it the viewer, its layers and
    our widgets' models and sessions, so every widget test's memory stayed to the end (13 GB over the suite)."""
    yield
    from napari.utils.theme import _themes

    for theme in _themes.values():
        for callback in list(theme.events.canvas.callbacks):
            if getattr(callback, "__qualname__", "").startswith("Window._connect_theme"):
                theme.events.canvas.disconnect(callback)


@pytest.fixture
def inline_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Widget jobs run to their end inside the click that starts them: no thread, no waiting."""
    monkeypatch.setattr(JobRunner, "in_thread", False)


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture(scope="session")
def tiny_click_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small untrained U-Net that takes clicks (64 px input), for tests of orderings and layers, not of masks."""
    from napari_lgg_unet.engine.model import ModelConfig, build_network, save_model, with_inputs
    from napari_lgg_unet.engine.model_input import InputConfig
    from napari_lgg_unet.engine.preprocess import PreprocessConfig

    config = ModelConfig(decoder_channels=(16, 16, 16, 16, 16), preprocess=PreprocessConfig(image_size=64))
    network, config = with_inputs(build_network(config), config, InputConfig(clicks=True))
    return str(save_model(network, config, tmp_path_factory.mktemp("tiny-clicks") / "model"))
