"""Widget fixtures: recorded notifications, a fresh session-model registry and a viewer."""

from __future__ import annotations

import pytest

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


@pytest.fixture
def inline_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Widget jobs run to their end inside the click that starts them: no thread, no waiting."""
    monkeypatch.setattr(JobRunner, "in_thread", False)


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()
