"""Errors a user can cause and act on; the CLI and widgets show their message as one line."""

from collections.abc import Sequence


class InputWarning(UserWarning):
    """Input the engine uses, but only by a guess a user should know about (a NIfTI without orientation, a cache that
    cannot remember the precision choice), or leaves out where the work does not need it (a manual mask that cannot be
    used, when segmenting or viewing): a Python warning, which napari shows as a notification (the plugin's
    `JobRunner` relays those raised in a widget's job, which napari's worker would drop) and the CLI as one line on
    stderr."""


class LggUnetError(Exception):
    """Base class: the message is written for the user, not for a developer."""


class InputError(LggUnetError):
    """A scan, mask or folder that cannot be used as given."""


class FolderInUse(InputError):
    """A folder another job holds (`folder_lock.held_folder`): it is free again once that job ends."""


class ModelError(LggUnetError):
    """A model folder that is missing, corrupt or does not match its config."""


class DeviceError(LggUnetError):
    """A requested device that this machine does not have, or that ran out of memory."""


class JobError(LggUnetError):
    """Another process of a multi-process (torchrun) job ended, so this one cannot go on."""


def few_names(names: Sequence[str], shown: int = 3) -> str:
    """Names for a one-line message: all of them when they are few ("a, b and c"), else the first `shown` and how many
    more ("a, b and 4 more"), so a folder of hundreds of cases cannot make a message hundreds of names long."""
    if len(names) > shown:
        return f"{', '.join(names[:shown])} and {len(names) - shown} more"
    return f"{', '.join(names[:-1])} and {names[-1]}" if len(names) > 1 else "".join(names)


def describe(error: BaseException) -> str:
    """A foreign exception as one line for our messages: its type, and its text when it has one (a MemoryError
    has none, and "MemoryError: " would read as if something was left out)."""
    text = " ".join(str(error).split())
    return f"{error.__class__.__name__}: {text}" if text else error.__class__.__name__


class TrainingError(LggUnetError):
    """Training that went wrong with these settings although the data was fine (e.g. the loss diverged)."""
