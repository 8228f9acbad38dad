"""Turn anything that goes wrong into one napari notification a user can act on; never let it vanish."""

from __future__ import annotations

import logging

from napari.utils.notifications import show_error, show_info, show_warning

__all__ = ["describe_error", "report_error", "show_error", "show_info", "show_warning"]

log = logging.getLogger(__name__)


def describe_error(error: BaseException) -> str:
    """Our own errors as written, out-of-memory with advice, anything else as one line naming its type."""
    from ..engine.device import OOM_ADVICE, is_out_of_memory
    from ..engine.errors import LggUnetError

    if isinstance(error, LggUnetError):
        return str(error)
    if is_out_of_memory(error):
        return OOM_ADVICE
    first_line = (str(error).strip().splitlines() or [""])[0]
    return f"{error.__class__.__name__}: {first_line}" if first_line else error.__class__.__name__


def report_error(error: BaseException) -> None:
    """Show `error` as one notification; an error that is not ours also goes to the log with its traceback."""
    from ..engine.errors import LggUnetError

    if not isinstance(error, LggUnetError):
        log.error("napari-lgg-unet: unexpected error", exc_info=error)
    show_error(describe_error(error))
