"""Thin napari front ends over `napari_lgg_unet.engine`: every computation happens in the engine, in a worker thread.

Importing the widgets loads Qt, so the package's guard against torch loading triton inside a Qt process (see
`napari_lgg_unet/__init__.py`) applies even when the package itself was imported before Qt (as in a test run).
"""

import qtpy  # noqa: F401  (loads the Qt binding)

from .. import _keep_triton_out_of_qt_processes

_keep_triton_out_of_qt_processes()
