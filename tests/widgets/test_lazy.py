"""The loading placeholder (widgets/lazy.py) imports its widget's module without Python's garbage collector walking
the session's objects meanwhile: each full collection held napari's thread too (up to 0.66 s on the first dock). An
import as large as PyTorch's is followed by the one full collection it would have set off later, while the dock
still says it loads, instead of during a segmentation or a training run."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
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
objects = [[number] for number in range({count})]  # 100_000: with the collector running, about 140 collections
COLLECTIONS = _collections() - _before


class Widget(Container):
    def __init__(self, viewer) -> None:
        super().__init__()
'''


@pytest.fixture
def module_making(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """module_making(count): the name of MODULE making `count` tracked objects, importable (and imported afresh) in
    this test."""
    names = []

    def write(count: int) -> str:
        names.append(f"objects_{count}")
        (tmp_path / f"{names[-1]}.py").write_text(MODULE.format(count=count))
        return names[-1]

    monkeypatch.syspath_prepend(str(tmp_path))
    yield write
    for name in names:
        sys.modules.pop(name, None)


@pytest.fixture
def many_objects(module_making) -> str:
    return module_making(100_000)


@pytest.fixture
def full_collections():
    """Each full collection from now on: the name of the thread that ran it and the modules imported when it began."""
    seen: list[tuple[str, set[str]]] = []

    def record(phase: str, info: dict) -> None:
        if phase == "start" and info["generation"] == 2:
            seen.append((threading.current_thread().name, set(sys.modules)))

    gc.callbacks.append(record)
    yield seen
    gc.callbacks.remove(record)


def test_an_import_as_large_as_pytorchs_is_followed_by_one_full_collection_in_the_loading_thread(
        qtbot, viewer, module_making, full_collections):
    """Left to Python's own rule (a full collection once the objects added since the last one exceed a quarter of
    those it kept), PyTorch's 350 000 objects set off a full walk of the session at a later, random moment:
    0.44-0.91 s without a reaction while a segmentation was shown or a model trained (benchmarks/
    workflow_stalls.py). Walked here, they raise the bar for the next one instead."""
    large = module_making(len(gc.get_objects(generation=2)) // 2)
    placeholder = lazy.Loading(viewer, large, "Widget")
    qtbot.waitUntil(lambda: placeholder.widget is not None, timeout=10_000)
    assert sys.modules[large].COLLECTIONS == 0
    in_the_loading_thread = [imported for thread, imported in full_collections if thread == "load Widget"]
    assert len(in_the_loading_thread) == 1 and large in in_the_loading_thread[0]  # one, once the module is there
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_small_import_costs_no_full_collection(qtbot, viewer, module_making, full_collections):
    """The Train widget's module after Segment's (matplotlib's Qt canvas, a tenth of PyTorch's objects) would not set
    off one later either: walking the session for it would only add a stall to the dock."""
    placeholder = lazy.Loading(viewer, module_making(1_000), "Widget")
    qtbot.waitUntil(lambda: placeholder.widget is not None, timeout=10_000)
    assert not any(thread == "load Widget" for thread, _ in full_collections)


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
    """Checked on one object the host froze, not by the frozen count, which frozen objects freed meanwhile (by a
    thread an earlier test left) lower: a run of the whole suite failed on 2 of 2 million."""
    theirs = [object()]
    gc.disable()
    gc.freeze()
    try:
        lazy._import_without_collections(many_objects)
        assert not gc.isenabled()
        assert not any(o is theirs for generation in range(3) for o in gc.get_objects(generation))  # still frozen
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


def test_a_collector_paused_by_someone_else_is_not_made_to_walk_after_a_large_import(module_making, full_collections):
    """A host that turned the collector off chose when collections run: a forced full walk (0.4-0.9 s holding
    Python's lock in a napari session) is not ours to add."""
    gc.disable()
    try:
        lazy._import_without_collections(module_making(len(gc.get_objects(generation=2)) // 2))
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert full_collections == []
