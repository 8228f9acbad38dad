"""Small pieces both widgets use: the device picker and the model picker."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from magicgui.widgets import ComboBox, FileEdit, Label

from ..engine.device import auto_device, describe_device
from ..engine.errors import LggUnetError, ModelError
from ..engine.model import CONFIG_FILE, WEIGHTS_FILE, ModelConfig, not_a_model_folder, saved_config
from ..engine.settings import DEVICE_CHOICES, PRECISION_CHOICES
from . import notify
from .session_models import SCRATCH, model_choices, session_models


def device_widgets() -> tuple[ComboBox, Label]:
    """The device choice and a note saying what 'auto' picks on this machine."""
    return (
        ComboBox(name="device", label="Device", choices=list(DEVICE_CHOICES), value="auto"),
        Label(name="device_note", label="", value=f"auto picks {describe_device(auto_device())}"),
    )


def precision_widget() -> ComboBox:
    """Number format: 'auto' measures once per machine what is fastest here (engine/precision.py)."""
    return ComboBox(name="precision", label="Precision", choices=list(PRECISION_CHOICES), value="auto")


Choice = tuple[str, str]  # a model picker's choice and its folder field's text (`ModelPicker.picked`)


class ModelPicker:
    """A model choice (see `session_models.model_choices`) and a folder field shown only for 'Model folder...', which
    checks a model when it is picked: its config.json and the header of its weights, as the loader reads them
    (`saved_config`, about 1 ms; the tensors are read when the model is used).

    A model that fails the check is a notification, and the picker goes back to the last model that passed it: it
    kept the broken folder, and every Segment or Train failed on it again (Train only once its worker had started). A
    folder chosen with the button or set by a script is checked at once; one typed in the field, when the typing ends
    (Enter or leaving the field): checked at every keystroke, the folders on the way to the one meant ('/', '/data')
    were each refused, and the picker set back under the user's typing. A folder not chosen yet or missing is left to
    the widget's button (`chosen`): it may be made meanwhile.

    `on_checked` gets the config of a model that passed (a widget shows what it takes from it); an exception it raises
    fails the check, and it must then leave the widget as it was. Call `check` once the widget is built, for the first
    choice.
    """

    def __init__(self, label: str, scratch: bool = False, name: str = "model",
                 on_checked: Callable[[ModelConfig], None] = lambda _: None) -> None:
        self.combo = ComboBox(name=name, label=label, choices=lambda _: model_choices(scratch))
        self.folder = FileEdit(name="model_folder", label="Model folder", mode="d", visible=False)
        self.checked: Choice | None = None  # the last choice that passed the check
        self._on_checked = on_checked
        self._setting = False  # the picker is being set by `set_choice`, not by the user
        self.combo.changed.connect(lambda value: self.folder.show() if value == "folder" else self.folder.hide())
        self.combo.changed.connect(self.check)
        self.folder.changed.connect(self._folder_changed)
        self.folder.line_edit.native.editingFinished.connect(self._folder_typed)

    def connections(self) -> list[tuple[Any, Callable]]:
        """For `connect_while_docked`: the choices follow the models trained in this session as they are added."""
        return [(session_models.changed, self.combo.reset_choices)]

    def chosen(self) -> str | None:
        """'default', a folder path, or None (scratch); a missing folder is a ModelError the user can act on."""
        if self.combo.value != "folder":
            return None if self.combo.value == SCRATCH else self.combo.value
        path = optional_path(self.folder)
        if path is None:
            raise ModelError(f"choose a model folder (one holding {CONFIG_FILE} and {WEIGHTS_FILE})")
        if not path.is_dir():
            raise ModelError(not_a_model_folder(path))
        return str(path)

    def check(self) -> None:
        """Check the model picked (see the class docstring); one that fails sends the picker back to `checked`."""
        if self._setting:
            return
        try:
            source = self.chosen()
        except LggUnetError:
            return
        if source is not None:
            try:
                self._on_checked(saved_config(source))
            except Exception as error:  # a user's model folder: whatever is wrong in it must end as a notification
                message = notify.describe_error(error)
                if not isinstance(error, LggUnetError):
                    message = f"the settings in the config.json of {source} cannot be used ({message})"
                self.set_choice(self.checked, check=False)
                notify.show_error(f"{message}; {self.describe()}")
                return
        self.checked = self.picked()

    def picked(self) -> Choice:
        """The picker as it is: the choice and the folder field's text (empty when none was chosen)."""
        return self.combo.value, self.folder.line_edit.value

    def set_choice(self, choice: Choice | None, check: bool) -> None:
        """Set the picker to `choice` (None: a model folder, none chosen yet), checking it or not (`check` False: it
        passed already)."""
        model, folder = ("folder", "") if choice is None else choice
        self._setting = True
        try:  # the picker's own signals run: they show the folder field for 'Model folder...' only
            self.folder.line_edit.value = folder
            self.combo.value = model
        finally:
            self._setting = False
        if check:
            self.check()

    def describe(self) -> str:
        """What the picker now shows, for a notification."""
        model, folder = self.picked()
        if model != "folder":
            return f"the model is {self.combo.current_choice}"
        return f"the model is the folder {folder}" if folder else "choose another model"

    def _folder_changed(self) -> None:
        if not self.folder.line_edit.native.isModified():  # Qt sets it for the user's edits only
            self.check()

    def _folder_typed(self) -> None:
        """Enter pressed in the folder field, or the field left: the folder typed there is checked."""
        field = self.folder.line_edit.native
        if field.isModified():
            field.setModified(False)
            self.check()


def optional_path(edit: FileEdit) -> Path | None:
    """A FileEdit's path, made absolute, or None when the user left it empty. A typed '~' is the home folder, as in a
    shell: a Path keeps it as a folder named '~', so an output folder typed '~/models' was made inside the folder
    napari was started from, and the notice 'model saved in ~/models/run-...' sent the user to look for it in their
    home. A relative path is taken from that folder too, which the user cannot see in napari: made absolute when the
    widget reads it (at the button's press), the notices name the folder the files went to ('model saved in
    /home/me/napari/models/run-...', not 'models/run-...')."""
    value = edit.value
    return None if value is None or str(value) in ("", ".") else Path(os.path.expanduser(value)).absolute()

