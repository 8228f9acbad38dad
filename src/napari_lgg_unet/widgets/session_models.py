"""Models trained in this napari session, shared by the Train widget (adds) and the Segment widget (lists).

Also the model choices both widgets offer, so "Default (pretrained)", session models and "a folder" read the same.
"""

from __future__ import annotations

from pathlib import Path

from psygnal import Signal

DEFAULT_CHOICE = ("Default (pretrained)", "default")
FOLDER_CHOICE = ("Model folder...", "folder")
SCRATCH = "scratch"  # not None: magicgui says nothing when a box that is not nullable is set to None
SCRATCH_CHOICE = ("Scratch (untrained)", SCRATCH)


class SessionModels:
    """An ordered name -> folder registry; `changed` fires after every addition."""

    changed = Signal()

    def __init__(self) -> None:
        self._models: dict[str, Path] = {}

    def add(self, name: str, folder: str | Path) -> None:
        self._models[name] = Path(folder)
        self.changed.emit()

    def items(self) -> list[tuple[str, Path]]:
        return list(self._models.items())

    def clear(self) -> None:
        self._models.clear()
        self.changed.emit()


session_models = SessionModels()


def model_choices(scratch: bool = False) -> list[tuple[str, str]]:
    """(label, value) pairs: value is 'default', a folder path as text, 'folder' (ask for one) or SCRATCH."""
    choices = [SCRATCH_CHOICE] if scratch else []
    choices.append(DEFAULT_CHOICE)
    choices += [(f"Trained: {name}", str(folder)) for name, folder in session_models.items()]
    choices.append(FOLDER_CHOICE)
    return choices
