"""The first dock of a session: how long napari could not react while Segment tumour docked and became ready.

napari builds a docked widget on its own thread, and the widgets need PyTorch; widgets/lazy.py docks a placeholder
and imports it in a thread. Run in a fresh process (nothing of PyTorch loaded yet), under a virtual display:

    PYTHONPATH=src:benchmarks xvfb-run -a python benchmarks/first_dock_stall.py
"""

from __future__ import annotations

import time

import napari

from qt_stall import Heartbeat, run_until


def main() -> None:
    viewer = napari.Viewer()
    viewer.open_sample("napari-lgg-unet", "lgg_patient")
    run_until(lambda: True)
    beat = Heartbeat()
    started = time.perf_counter()
    _, docked = viewer.window.add_plugin_dock_widget("napari-lgg-unet", "Segment tumour")
    returned = time.perf_counter() - started
    run_until(lambda: getattr(docked, "widget", docked) is not None)
    ready = time.perf_counter() - started
    from timing import cpu_model  # it imports PyTorch (engine/device.py): imported first, the dock had nothing to load

    print(f"{type(docked).__name__} docked in {returned:.2f} s, widget ready after {ready:.2f} s, longest event-loop "
          f"stall {beat.longest * 1000:.0f} ms; CPU: {cpu_model()}")
    viewer.close()


if __name__ == "__main__":
    main()
