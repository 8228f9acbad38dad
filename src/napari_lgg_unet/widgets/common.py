"""Small pieces both widgets use: the device picker and the model picker."""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import ComboBox, FileEdit, Label

from ..engine.device import auto_device, describe_device
from ..engine.errors import ModelError
from ..engine.model import CONFIG_FILE, WEIGHTS_FILE, not_a_model_folder
from ..engine.settings import DEVICE_CHOICES, PRECISION_CHOICES
from .session_models import SCRATCH, model_choices


def device_widgets() -> tuple[ComboBox, Label]:
    """The device choice and a note saying what 'auto' picks on this machine."""
    return (
        ComboBox(name="device", label="Device", choices=list(DEVICE_CHOICES), value="auto"),
        Label(name="device_note", label="", value=f"auto picks {describe_device(auto_device())}"),
    )


def precision_widget() -> ComboBox:
    """Number format: 'auto' measures once per machine what is fastest here (engine/precision.py)."""
    return ComboBox(name="precision", label="Precision", choices=list(PRECISION_CHOICES), value="auto")


def model_widgets(label: str, scratch: bool = False, name: str = "model") -> tuple[ComboBox, FileEdit]:
    """A model choice (see `session_models.model_choices`) and a folder field shown only for 'Model folder...'."""
    combo = ComboBox(name=name, label=label, choices=lambda _: model_choices(scratch))
    folder = FileEdit(name="model_folder", label="Model folder", mode="d", visible=False)
    combo.changed.connect(lambda value: folder.show() if value == "folder" else folder.hide())
    return combo, folder


def chosen_model(combo: ComboBox, folder: FileEdit) -> str | None:
    """'default', a folder path, or None (scratch); a missing folder is a ModelError the user can act on."""
    if combo.value != "folder":
        return None if combo.value == SCRATCH else combo.value
    path = optional_path(folder)
    if path is None:
        raise ModelError(f"choose a model folder (one holding {CONFIG_FILE} and {WEIGHTS_FILE})")
    if not path.is_dir():
        raise ModelError(not_a_model_folder(path))
    return str(path)


def optional_path(edit: FileEdit) -> Path | None:
    """A FileEdit's path, or None when the user left it empty."""
    value = edit.value
    return None if value is None or str(value) in ("", ".") else Path(value)

