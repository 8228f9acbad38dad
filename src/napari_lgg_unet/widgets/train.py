"""The "Train U-Net" dock widget: train or fine-tune on (image, labels) layer pairs and/or a Kaggle-style folder.

An image is one layer (grey FLAIR or multi-channel) or a FLAIR layer plus optional T1 / T1c layers. Training runs in
a worker consuming the engine's event generator; the one button reads Train, then Stop. Stop asks the engine to end
between steps; the best model stays on disk and is offered at once in the Segment widget. The settings start at
`TrainConfig`'s defaults, so the widget, the CLI and the API agree.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Callable

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, ProgressBar, PushButton, SpinBox,
)
from napari.layers import Image, Labels, Layer
from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QWidget
from scipy import ndimage

from ..engine.dataset import check_patient_names
from ..engine.device import pick_device
from ..engine.errors import InputError, InputWarning, LggUnetError
from ..engine.events import EpochEnd, Finished, Prepared, Step, TrainingEvent
from ..engine.run_folder import RunFolder
from ..engine.sequences import FLAIR
from ..engine.settings import AugmentConfig, TrainConfig, settings_of
from . import notify
from .common import ModelPicker, device_widgets, optional_path, precision_widget
from .job import JobRunner
from .layers import (
    LayerPicker, as_shown, check_one_scale, image_choices, in_memory, labels_as_tumour, labels_choices, placement_fix,
    scan_name, shown_elsewhere, shown_later, stand_in,
)
from .loss_plot import LossPlot
from .sequences import (
    deferred_input, flair_layer, input_shape, pick_named_sequences, says_sequence, sequence_pickers,
)
from .session_models import session_models
from .tooltips import explain
from .undock import choices_follow_layers, connect_while_docked
from .workers import LayerPair, training_job

DEFAULT_OUTPUT = Path.home() / "lgg-unet-models"
DEFAULTS = TrainConfig()
_ACROSS_SLICES = 5  # a plane painted across the slices spans this many at least (`_painted_across_slices`)
_OUTLINED = 0.25  # a tumour is outlined when this part of what its strokes enclose on its slices is unpainted at least
_NAMED_RUN_FOLDERS: set[Path] = set()  # every run folder a Train widget of this session named (`_run_folder`)


class PairRow(Container):
    """One training pair: an image (or a FLAIR plus optional T1 / T1c layers) and the labels painted on it."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.image_layer = LayerPicker(name="image", label="Image or FLAIR", nullable=True,
                                       choices=lambda _: image_choices(viewer))
        self.pre_contrast, self.post_contrast = sequence_pickers(viewer)
        self.labels_layer = LayerPicker(name="labels", label="Labels", nullable=True,
                                        choices=lambda _: labels_choices(viewer))
        super().__init__(labels=True, widgets=[self.image_layer, self.pre_contrast, self.post_contrast,
                                               self.labels_layer])
        self._viewer = viewer
        self._had_layer = {self.image_layer.name: False, self.labels_layer.name: False}
        self._own_pick: Image | None = None  # the image this row picked by itself, until the user picks another
        self.image_layer.changed.connect(self._image_changed)
        explain(self)

    def reset_choices(self, *_) -> None:
        """Keep the user's choice (a deleted layer leaves (none), see LayerPicker); a box that never held a layer
        picks up the first that appears (e.g. a just-opened scan; for the image, a layer named FLAIR first), one whose
        layer was deleted stays (none). An image the row picked itself gives way to the FLAIR of its case when that
        appears: our reader opens a case's sequences T2 first, and the pair trained on T2 as if it were FLAIR (and
        without T1 and T1c), where Segment picks FLAIR, T1 and T1c."""
        super().reset_choices()
        image = self.image_layer.value
        if image is not None and image is self._own_pick and not says_sequence(image, FLAIR):
            self._pick(self.image_layer, flair_layer(self._viewer, case_of=image))
        self._pick_first(self.image_layer, flair_layer(self._viewer))
        self._pick_first(self.labels_layer)

    def _pick_first(self, combo: LayerPicker, preferred: Layer | None = None) -> None:
        layers = [choice for choice in combo.choices if choice is not None]
        if combo.value is None and layers and not self._had_layer[combo.name]:
            self._pick(combo, preferred or layers[0])
        self._had_layer[combo.name] |= combo.value is not None

    def _pick(self, combo: LayerPicker, layer: Layer | None) -> None:
        if layer is not None:
            if combo is self.image_layer:
                self._own_pick = layer
            combo.value = layer

    def _image_changed(self, image: Image | None) -> None:
        """A FLAIR-named image brings its T1 and T1c layers, as in Segment; an image the user picked is theirs."""
        if image is not self._own_pick:
            self._own_pick = None
        pick_named_sequences(self._viewer, self.image_layer, self.pre_contrast, self.post_contrast)


def setting_control(name: str, label: str, kind: type = SpinBox, **options) -> SpinBox | FloatSpinBox:
    """A spin box for a TrainConfig setting: its default, and its declared range (an open end moved in by a step)."""
    declared, default = settings_of(TrainConfig)[name], getattr(DEFAULTS, name)
    step = options.get("step", 1)
    low = declared.low + (step if declared.low_open else 0)
    high = declared.high - (step if declared.high_open else 0)
    return kind(name=name, label=label, min=low, max=high, value=default, **options)


class SettingControls(Container):
    """The training settings a napari user chooses; the rest keep TrainConfig's defaults."""

    def __init__(self) -> None:
        # Painted layers usually have labels on a few slices only, so skipping the rest is the sensible default here.
        self.skip_unlabelled = CheckBox(name="skip_unlabelled", text="Skip slices without labels (else: background)",
                                        value=True)
        self.epochs = setting_control("epochs", "Epochs")
        self.batch_size = setting_control("batch_size", "Batch size")
        self.lr = setting_control("lr", "Learning rate", FloatSpinBox, step=1e-6)
        self.val_fraction = setting_control("val_fraction", "Validation fraction", FloatSpinBox, step=0.05)
        self.augment = CheckBox(name="augment", text="Augment (flips, rotations, intensity)",
                                value=DEFAULTS.augment.enabled)
        sizes = sorted({64, 128, 192, 256, 320, 384, 512, DEFAULTS.image_size})
        self.image_size = ComboBox(name="image_size", label="Image size", choices=sizes, value=DEFAULTS.image_size)
        super().__init__(labels=True, widgets=[self.skip_unlabelled, self.epochs, self.batch_size, self.lr,
                                               self.val_fraction, self.augment, self.image_size])
        self.margins = (0, 0, 0, 0)

    def config(self, **run_options) -> TrainConfig:
        """These settings plus how and where to run (device, precision, init, ...); TrainConfig checks them all."""
        return TrainConfig(
            epochs=self.epochs.value, batch_size=self.batch_size.value, lr=self.lr.value,
            val_fraction=self.val_fraction.value, image_size=self.image_size.value,
            augment=AugmentConfig(enabled=self.augment.value), skip_unlabelled=self.skip_unlabelled.value,
            **run_options,
        )


class TrainWidget(Container):
    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = viewer
        self.job = JobRunner(self, self._set_running)
        self.model_dir: Path | None = None
        self.outcome: Finished | None = None  # the last run's end; None while it runs, and after it failed
        self.steps_per_epoch: int | None = None  # None: one pass over the training slices; tests use a few steps
        self.extend([*self._data_controls(), *self._run_controls(), *self._progress_controls()])
        self.plot = LossPlot()
        self.native.layout().addWidget(self.plot)
        explain(self)
        self.start_model.check()
        connect_while_docked(self.native, [*choices_follow_layers(viewer, self), *self.start_model.connections()])

    def _data_controls(self) -> list:
        """The (image, labels) pairs and an optional Kaggle folder: what `training_pairs` and `train` read."""
        self.pairs = Container(label="Training pairs", labels=False, widgets=[PairRow(self.viewer)])
        self.add_pair = PushButton(name="add_pair", text="Add pair")
        self.remove_pair = PushButton(name="remove_pair", text="Remove last pair")
        self.folder = FileEdit(name="folder", label="Kaggle folder (optional)", mode="d")
        self.add_pair.clicked.connect(lambda: self.pairs.append(PairRow(self.viewer)))
        self.remove_pair.clicked.connect(self._remove_pair)
        return [self.pairs, self.add_pair, self.remove_pair, self.folder]

    def _run_controls(self) -> list:
        """The settings, where and from what to train, where to write: what `train_config` reads."""
        self.settings = SettingControls()
        self.device, self.device_note = device_widgets()
        self.precision = precision_widget()
        self.start_model = ModelPicker("Start from", scratch=True, name="start_from")
        self.start_from, self.start_folder = self.start_model.combo, self.start_model.folder
        self.output = FileEdit(name="output", label="Output folder", mode="d", value=DEFAULT_OUTPUT)
        return [self.settings, self.device, self.device_note, self.precision, self.start_from, self.start_folder,
                self.output]

    def _progress_controls(self) -> list:
        self.train_button = PushButton(name="train_button", text="Train")
        _NoDoubleClicks(self.train_button.native)
        self.status = Label(name="status", label="Status", value="")
        self.epoch_progress = ProgressBar(name="epoch_progress", label="Epochs", min=0, max=1, value=0)
        self.step_progress = ProgressBar(name="step_progress", label="Steps", min=0, max=1, value=0)
        self.train_button.clicked.connect(self._train_or_stop)
        return [self.train_button, self.status, self.epoch_progress, self.step_progress]

    @property
    def running(self) -> bool:
        return self.job.running

    def _remove_pair(self) -> None:
        if len(self.pairs) > 1:
            self.pairs.pop()

    def _train_or_stop(self) -> None:
        self.stop() if self.running else self.train()

    def train(self) -> None:
        """Validate everything the user chose (no layer is touched), then train in a worker."""
        if self.running:
            notify.show_warning("training is already running: press Stop to end it before starting another")
            return
        try:
            pairs = self.training_pairs()
            folder = optional_path(self.folder)
            if folder is not None and not folder.is_dir():
                raise InputError(f"training folder not found: {folder}")
            if not pairs and folder is None:
                raise InputError("nothing to train on: choose an (image, labels) pair or a Kaggle-style folder")
            config = self.train_config()
            pick_device(config.device)
            model_dir = self._run_folder()
            # the folder the user chose, named as they chose it: a file there failed only in the worker, naming a
            # run folder inside it ("cannot create .../file/run-...: Not a directory")
            RunFolder(model_dir.parent).check_writable()  # e.g. not the installed package's weights folder
        except LggUnetError as error:
            notify.show_error(str(error))
            return
        self.model_dir, self.outcome = model_dir, None
        self.plot.plot([])
        self.epoch_progress.value = self.step_progress.value = 0  # not the last run's end, while this one prepares
        self.status.value = "preparing..."
        self.job.start(
            training_job, pairs, folder, config, self.model_dir, on_item=self._on_event, on_done=self._on_finished
        )

    def stop(self) -> None:
        """Ask the engine to stop after the current step or validation batch (`train.train_model`); the best model so
        far stays in the output folder. With no
        run going (a script's call after the run ended) it does nothing: the button said "Stopping..." for good,
        disabled, and no run could be started again."""
        if not self.running:
            return
        self.job.stop()
        self.train_button.text = "Stopping..."
        self.train_button.enabled = False

    def training_pairs(self) -> list[LayerPair]:
        """The chosen pairs, checked from the layers' shapes and placement; images and labels are read as
        `layers.shown_later` reads them: data in memory is copied now (painting during training is safe) and labels in
        memory checked now, a lazy layer read (and its labels checked) in the worker (`_labels_of`). Raises InputError.

        Each pair's scan is named for the model's record as `_patient_names` says, and two of one name are refused here
        as the engine refuses them (`check_patient_names`), which it did only once the run had started and the layers
        were read: a layer made in napari named 'P1' beside one opened from a file or folder named 'P1'. An image in
        two pairs is refused first, in words that name the pairs, then a labels layer in two pairs: labels are painted
        on one scan, and a new pair starts with the first labels layer, so a pair whose image alone was changed
        trained that scan on another scan's tumour without a word. A scan of the Kaggle folder picked as a layer too is
        refused by `training_job`, which lists the folder off the viewer's thread."""
        found, pair_of = [], {}  # layer id -> the first pair that trains on it (image) or learns from it (labels)
        for number, row in enumerate(self.pairs, start=1):
            image, labels = row.image_layer.value, row.labels_layer.value
            if image is None and labels is None:
                continue
            if image is None or labels is None:
                raise InputError(f"pair {number}: choose both an image layer and a labels layer")
            if (first := pair_of.setdefault(id(image), number)) != number:
                raise InputError(f"pairs {first} and {number} both train on '{image.name}': a scan is trained on "
                                 "once, so paint all its tumour in one labels layer and remove the other pair")
            if (first := pair_of.setdefault(id(labels), number)) != number:
                raise InputError(f"pairs {first} and {number} both use the labels '{labels.name}': labels are painted "
                                 "on one scan, so pick the labels painted on each pair's image (a new pair starts "
                                 "with the first labels layer)")
            read, rgb = deferred_input(image, row.pre_contrast.value, row.post_contrast.value)
            found.append((image, read, rgb, _labels_of(labels, image, input_shape(image))))
        patients = _patient_names([image for image, *_ in found])
        check_patient_names(patients)  # a layer made here named like a file opened as another pair's
        return [LayerPair(image.name, patient, read, rgb, mask)
                for (image, read, rgb, mask), patient in zip(found, patients)]

    def train_config(self) -> TrainConfig:
        return self.settings.config(
            device=self.device.value,
            precision=self.precision.value,
            init=self.start_model.chosen(),
            workers=0,  # loader processes do not mix with the GUI's threads
            steps_per_epoch=self.steps_per_epoch,
        )

    def _run_folder(self) -> Path:
        """A new folder per run inside the output folder, so no earlier model is overwritten, and none named for
        another run of this session: a run's worker makes its folder only once its scans are listed (minutes for a
        folder of DICOM studies), and two Train widgets (two viewers) pressed within that second named one folder. The
        later run was refused as the folder was in use, or, its model saved meanwhile, took the other's model for its
        own ("model saved in ...")."""
        base = optional_path(self.output) or DEFAULT_OUTPUT
        stamp = time.strftime("%Y%m%d-%H%M%S")
        folder, n = base / f"run-{stamp}", 1
        while folder.exists() or folder in _NAMED_RUN_FOLDERS:
            n += 1
            folder = base / f"run-{stamp}-{n}"
        _NAMED_RUN_FOLDERS.add(folder)
        return folder

    def _set_running(self, running: bool) -> None:
        self.train_button.text = "Stop" if running else "Train"
        self.train_button.enabled = True

    def _on_event(self, event: TrainingEvent) -> None:
        match event:
            case Prepared():
                self.status.value = event.message
                self.epoch_progress.max, self.step_progress.max = event.epochs, max(event.steps, 1)
            case Step():
                self.epoch_progress.value, self.step_progress.value = event.epoch - 1, event.step
                self.status.value = (f"epoch {event.epoch}/{event.epochs}, step {event.step}/{event.steps}, "
                                     f"loss {event.loss:.3f}, about {_duration(event.eta_seconds)} left")
            case EpochEnd():
                self.epoch_progress.value = event.epoch
                self.plot.plot(event.history)
            case Finished():
                self.outcome = event
                self.status.value = ("stopped: " if event.stopped else "finished: ") + event.message

    def _on_finished(self) -> None:
        """Runs after success, stop or error: offer whatever best model reached the disk. After an error (shown as a
        notification) the status says so, instead of the last progress ("preparing...", "about 2 min left")."""
        saved = self.model_dir is not None and RunFolder(self.model_dir).holds_model()
        if self.outcome is None:
            self.status.value = "failed (see the error message)" + ("; the best model so far is kept" if saved else "")
        if saved:
            session_models.add(self.model_dir.name, self.model_dir)
            notify.show_info(f"model saved in {self.model_dir}; it is now a choice in Segment tumour")


class _NoDoubleClicks(QObject):
    """Swallows a button's double-click events, owned by the button. The window system reports a double-click as a
    click, then a double-click event that Qt turns into a second press: on the Train button, which its first click
    makes Stop, a double-clicked Train started a run and stopped it before its first step."""

    def __init__(self, button: QWidget) -> None:
        super().__init__(button)
        button.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        return event.type() == QEvent.Type.MouseButtonDblClick


def _patient_names(images: list[Image]) -> list[str]:
    """The names the pairs' scans train under, which the model's config and history record as its patients: the name
    of the file or folder each image was opened from (`layers.scan_name`), which says which scan it was where its
    layer name does not (our reader names two cases' FLAIR layers 'FLAIR' and 'FLAIR [1]'); the layer name for an
    image made in the session. Images opened from files of one name (a file opened twice, two sequences of a case)
    get their layer names after it: names identify patients in the split, one each."""
    names = [scan_name(image) for image in images]
    return [image.name if name is None else name if names.count(name) == 1 else f"{name} ({image.name})"
            for image, name in zip(images, names)]


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def _labels_of(labels: Labels, image: Image, expected: tuple[int, ...]) -> Callable[[], np.ndarray]:
    """`labels` as a bool tumour mask in the order napari shows it (the model's input order, as the image's data is),
    read when called; raises InputError for labels of another shape than the image's (`expected`, as shown), or of
    its shape but shown elsewhere (moved or scaled away from it): trained voxel by voxel, they would teach one place's
    tumour on another place's anatomy. Those checks read no voxel. Labels in memory are read and checked now
    (`_tumour_of`); a lazy layer's (a dask or zarr array) in the worker that calls the function: read here, they held
    the viewer for as long as a large or remote array takes to load, where the image was already read in the worker."""
    check_one_scale(labels)
    shape = as_shown(labels, stand_in(labels)).shape
    if shape != expected:
        raise InputError(f"'{labels.name}' has shape {shape} but '{image.name}' has spatial shape {expected}: "
                         "pick the labels painted on this image")
    apart = shown_elsewhere(labels, image)
    if apart is not None:
        raise InputError(f"'{labels.name}' has the shape of '{image.name}' but lies elsewhere in the viewer (its "
                         f"voxels up to {apart:.3g} world units, mm for scans, from the image's): pick the labels "
                         f"painted on this image; {placement_fix(labels, image)}")
    read, name = shown_later(labels), labels.name
    if not in_memory(labels):
        return lambda: _tumour_of(name, read(), _warn_from_worker)
    mask = _tumour_of(name, read(), notify.show_warning)
    return lambda: mask


def _tumour_of(name: str, data: np.ndarray, warn: Callable[[str], None]) -> np.ndarray:
    """The labels named `name`, read (`data`), as the tumour to learn: refused when they hold none, and with a
    warning (`warn`) when several label values were merged into it, when it is outlined on its slices, not filled
    (`_enclosed_on_slices`), or when it was painted on planes across the model's slices (`_painted_across_slices`,
    judged on the outlines filled: a small tumour's outline drawn alike on five slices lies in thin runs across them,
    and was taken for a sagittal plane)."""
    mask, merged = labels_as_tumour(name, data)
    if not mask.any():
        raise InputError(f"'{name}' is empty: nothing to learn; paint tumour on at least one slice")
    if merged:
        warn(f"'{name}' has several label values: all values above 0 are merged into tumour")
    enclosed = _enclosed_on_slices(mask)
    unpainted = int(enclosed.sum())
    if unpainted >= _OUTLINED * (unpainted + mask.sum()):
        warn(f"'{name}' looks outlined, not filled: its strokes enclose {unpainted} unpainted voxels on its "
             "slices, which train as background inside the tumour; fill each outline with napari's fill bucket (the "
             "labels layer's fill mode, key F: click inside the outline, on each slice)")
    if _painted_across_slices(mask | enclosed):
        warn(f"'{name}' is painted on planes across the slices the model learns from (e.g. sagittal or coronal "
             "planes, with another axis on the slider): each slice holds a thin line of the tumour, and the tumour "
             "beside it trains as background; paint on the slices along the slider of napari's default axis order")
    return mask


def _painted_across_slices(mask: np.ndarray) -> bool:
    """Whether the tumour of a 3D `mask` (shown order: the model's slices along axis 0) lies in planes across the
    slices: most of its voxels have no tumour beside them along a row or a column, but lie in a run of tumour through
    `_ACROSS_SLICES` slices or more. That is tumour painted with an axis rolled onto napari's slider (a sagittal or
    coronal view of an axial scan), whose strokes are wide across the slices: every slice then teaches a one-voxel line
    of tumour and the rest of the tumour as background, without a word. Painted masks and the LGG and BraTS masks have
    under 1 % of such voxels, a painted plane nearly all of them. A thin stroke painted on the slices touches a few of
    them: a one-voxel line or outline on three neighbouring slices was warned of when a next slice was all it took."""
    if mask.ndim != 3:
        return False
    box = tuple(slice(kept[0], kept[-1] + 1) for kept in
                (np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)))
    tumour = mask[box]
    thin = _alone_along(tumour, 1) | _alone_along(tumour, 2)
    across = ndimage.binary_opening(tumour, np.ones((_ACROSS_SLICES, 1, 1), bool))  # in runs of that many slices
    return (thin & across).sum() > tumour.sum() / 2


def _enclosed_on_slices(mask: np.ndarray) -> np.ndarray:
    """The voxels that `mask`'s tumour encloses on its slices (the last two axes) without holding them: the holes that
    napari's fill bucket fills, one slice at a time. Painted masks and the LGG masks hold under 0.2 % of their tumour
    as such holes; a tumour outlined with a thin brush, its inside left unpainted, several times its painted voxels."""
    in_plane = ndimage.generate_binary_structure(2, 1).reshape((1,) * (mask.ndim - 2) + (3, 3))
    return ndimage.binary_fill_holes(mask, in_plane) & ~mask


def _alone_along(mask: np.ndarray, axis: int) -> np.ndarray:
    """The voxels of `mask` with no voxel of it on either side along `axis`."""
    padded = np.pad(mask, [(1, 1) if a == axis else (0, 0) for a in range(mask.ndim)])
    size = mask.shape[axis]
    before, after = padded.take(range(size), axis=axis), padded.take(range(2, size + 2), axis=axis)
    return mask & ~before & ~after


def _warn_from_worker(text: str) -> None:
    """A warning given in the training's worker: the job's runner shows an InputWarning as a notification."""
    warnings.warn(InputWarning(text), stacklevel=2)
