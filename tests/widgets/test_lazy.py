"""The loading placeholder (widgets/lazy.py) imports its widget's module without Python's garbage collector walking
the session's objects meanwhile: each full collection held napari's thread too (up to 0.66 s on the first dock)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from napari_lgg_unet.widgets import lazy

# A module whose import makes enough tracked objects to set off young collections, and counts the collections
# that ran while it was imported.
MODULE = '''
import gc

from magicgui.widgets import Container


def _collections() -> int:
    return sum(generation["collections"] for generation in gc.get_stats())


_before = _collections()
objects = [[number] for number in range(100_000)]  # with the collector running: about 140 collections
COLLECTIONS = _collections() - _before


class Widget(Container):
    def __init__(self, viewer) -> None:
        super().__init__()
'''


@pytest.fixture
def many_objects(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """The name of MODULE, importable (and imported afresh) in this test."""
    (tmp_path / "many_objects.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "many_objects"
    sys.modules.pop("many_objects", None)


def test_the_placeholder_imports_its_widget_with_no_garbage_collection_and_turns_the_collector_back_on(
        qtbot, viewer, many_objects):
    placeholder = lazy.Loading(viewer, many_objects, "Widget")
    qtbot.waitUntil(lambda: placeholder.widget is not None, timeout=10_000)
    assert sys.modules[many_objects].COLLECTIONS == 0
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_what_the_import_made_goes_to_the_oldest_generation_and_nothing_stays_frozen(many_objects):
    """Left young, the import's objects were walked again once the collector was back on, and counted as new
    long-lived objects they set off the full collection the pause had put off."""
    module = lazy._import_without_collections(many_objects)
    assert any(candidate is module.objects for candidate in gc.get_objects(generation=2))
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_collector_paused_by_someone_else_stays_paused_and_what_they_froze_stays_frozen(many_objects):
    gc.disable()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        lazy._import_without_collections(many_objects)
        assert not gc.isenabled() and gc.get_freeze_count() >= frozen
    finally:
        gc.unfreeze()
        gc.enable()


def test_a_widget_whose_module_is_not_imported_yet_docks_as_a_placeholder_even_with_pytorch_loaded(
        qtbot, viewer, many_objects):
    """PyTorch loaded (Segment docked first) left the Train widget's own module, which imports matplotlib's Qt canvas,
    to be imported on napari's thread: 0.5-0.7 s without a reaction."""
    assert "torch" in sys.modules
    docked = lazy._when_loaded(viewer, many_objects, "Widget")
    assert isinstance(docked, lazy.Loading)
    qtbot.waitUntil(lambda: docked.widget is not None, timeout=10_000)
    assert isinstance(lazy._when_loaded(viewer, many_objects, "Widget"), sys.modules[many_objects].Widget)


@pytest.mark.parametrize("benchmark", ["first_dock_stall", "workflow_stalls"])
def test_the_first_dock_benchmarks_load_no_pytorch_before_they_dock(benchmark):
    """With PyTorch imported by the benchmark itself (benchmarks/timing.py imports engine/device.py), napari built the
    widget at once and the benchmark measured no first dock at all."""
    root = Path(__file__).resolve().parents[2]
    code = f"import sys; import {benchmark}; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root / "benchmarks")])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "False", done.stderr
