"""What runs off the main thread: loading a model, segmenting, a new clean-up, reading training folders and training.

Each job is a plain generator taking a keyword `stop` callable (tests can iterate it directly); `job.JobRunner` runs
it in a napari thread worker and turns its errors into notifications.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..engine.errors import InputError
from ..engine.io import Scan, ScanSource, find_scans, load_scan
from ..engine.events import TrainingEvent
from ..engine.model import WEIGHTS_FILE, LoadedModel, load_model, resolve_model_path
from ..engine.pieces import Piece, describe_pieces, list_pieces
from ..engine.postprocess import PostprocessConfig, kept_labels
from ..engine.predict import SegmentOptions, SegmentProgress, segment_steps
from ..engine.settings import TrainConfig
from ..engine.stopping import Stopped, unless_stopped
from ..engine.train import stopped_before_training, train_model
from .painting import Painting


class ModelCache:
    """Keeps the last loaded model, so re-running on another image or threshold does not reload it from disk.

    The key includes the weights' modification time, so a model folder rewritten by training is reloaded.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._model: LoadedModel | None = None

    def get(self, source: str, device: str) -> LoadedModel:
        path = resolve_model_path(source)
        weights = path / WEIGHTS_FILE
        key = (str(path), weights.stat().st_mtime_ns if weights.is_file() else None, device)
        with self._lock:
            if key != self._key or self._model is None:
                self._model, self._key = load_model(source, device), key
            return self._model


@dataclass
class LayerResult:
    """Probabilities, mask and its pieces (as `list_pieces` gives them) on a layer's voxel grid, made in a worker so
    that the viewer's thread only shows them: labelling the pieces of a 1 mm scan (155 x 240 x 240) takes 0.15 s for
    one tumour and seconds for a noisy mask, and every step of the threshold slider needs it again. `postprocess` is
    the clean-up the mask was made with: the controls go back to it when a new one fails."""

    probability: np.ndarray
    mask: np.ndarray
    listed: tuple[np.ndarray, list[Piece]]
    postprocess: PostprocessConfig
    unpainted: np.ndarray | None = None  # `mask` before the user's painting was laid over it; None: the same
    painting: Painting | None = None  # the painting laid over `mask` (`painted_over`), as the job started; None: none

    @property
    def network_mask(self) -> np.ndarray:
        """The mask without the user's painting: the widget lays the painting over it again once strokes are
        undone (`segment._list_painting`), which `mask` still holds."""
        return self.mask if self.unpainted is None else self.unpainted


def painted_over(result: LayerResult, painting: Painting | None, voxel_volume: float | None) -> LayerResult:
    """`result` with the user's `painting` (a `Painting.frozen` copy) laid over its mask and the pieces listed from
    that, in the worker that made it: the review list then shows the pieces of the mask the tumour layer gets. The
    network's pieces were shown first, and the painted ones a moment later (0.2 s on the sample), by a listing of
    their own; labelling the painted mask on the viewer's thread instead held it as long."""
    if painting is None or np.array_equal(mask := painting.over(result.mask), result.mask):
        return replace(result, painting=painting)
    return LayerResult(result.probability, mask, list_pieces(result.probability, mask, voxel_volume),
                       result.postprocess, result.mask, painting)


def segment_job(
    cache: ModelCache, source: str, device: str, image: Callable[[], np.ndarray], rgb: bool, options: SegmentOptions,
    to_layer: Callable[[np.ndarray], np.ndarray], voxel_volume: float | None, *, stop: Callable[[], bool],
) -> Iterator[SegmentProgress | LayerResult]:
    """Load (or reuse) the model, read the scan (`image()`: a lazy layer is read here, see
    `sequences.deferred_input`) and segment. Unless stopped, the last progress carries the result (in the model's
    slice order), and a `LayerResult` follows: the result put back on the layer's grid by `to_layer`, its pieces
    listed with one voxel's volume `voxel_volume` (`layers.voxel_volume`)."""
    model = cache.get(source, device)
    for progress in segment_steps(model, image(), options, rgb=rgb, stop=stop):
        yield progress
        if progress.result is not None and not stop():
            probability, mask = to_layer(progress.result.probability), to_layer(progress.result.mask)
            listed = list_pieces(probability, mask, voxel_volume)
            if not stop():  # Cancel pressed while the pieces were listed: nothing is shown
                yield LayerResult(probability, mask, listed, options.postprocess_for(model))


def cleanup_job(
    probability: np.ndarray, config: PostprocessConfig, voxel_volume: float | None, painting: Painting | None, *,
    stop: Callable[[], bool],
) -> Iterator[LayerResult]:
    """Another threshold or clean-up of the same probabilities (on the layer's grid), labelled once: the clean-up's
    own labelling lists the pieces (`kept_labels` numbers them as labelling the mask would), unless the user's
    `painting` changes the mask (`painted_over`)."""
    labels, count = kept_labels(probability, config)
    result = LayerResult(probability, (labels > 0).astype(np.uint8),
                         (labels, describe_pieces(probability, labels, count, voxel_volume)), config)
    yield painted_over(result, painting, voxel_volume)


@dataclass(frozen=True)
class LayerPair:
    """A training pair as the Train widget checked it: the image layer's name, the name its scan trains under and is
    recorded as (`train._patient_names`: the name of the file or folder it was opened from), the model's input from
    it, read when called (in the worker: see `sequences.deferred_input`), whether that input holds channels, and the
    labels as a bool mask, read when called too (a copy taken on the viewer's thread for labels in memory, so that
    painting during training is safe; a lazy layer read in the worker: see `train._labels_of`)."""

    name: str
    patient: str
    image: Callable[[], np.ndarray]
    rgb: bool
    mask: Callable[[], np.ndarray]

    def scan(self) -> Scan:
        return Scan(name=self.patient, image=np.asarray(self.image()), mask=self.mask(), rgb=self.rgb)


def listing_job(probability: np.ndarray, mask: np.ndarray, voxel_volume: float | None,
                *, stop: Callable[[], bool]) -> Iterator[tuple[np.ndarray, list[Piece]]]:
    """The pieces of a mask the user painted on (`list_pieces`), listed off the viewer's thread (see `LayerResult`)."""
    yield list_pieces(probability, mask, voxel_volume)


def training_job(
    pairs: list[LayerPair], folder: Path | None, config: TrainConfig, out_dir: Path, *, stop: Callable[[], bool]
) -> Iterator[TrainingEvent]:
    """Read the pairs' images and the optional Kaggle-style folder (slow disk work: a lazy layer, a remote one, a
    folder of patients; so here and not in the GUI), then train. The folder's scans are listed before any is read, so
    a layer named like one of them is refused within a moment, not after the whole folder has loaded (listing is disk
    work too: it reads a header of every file of a DICOM folder, about a second a study). A stop asked while the
    folder is listed, or while the layers or the folder's scans load, ends the run after the subfolder or scan in
    progress (a lazy layer is read here too, seconds each), with nothing made (`stopped_before_training`)."""
    try:
        sources = [] if folder is None else find_scans(folder, require_masks=True, stop=stop)  # listed once
        _refuse_layers_named_like(pairs, sources, folder)
        reads = [pair.scan for pair in pairs] + [partial(load_scan, source, require_mask=True) for source in sources]
        scans = [read() for read in unless_stopped(reads, stop)]
    except Stopped:
        yield stopped_before_training(out_dir, config)
        return
    yield from train_model(scans, config, out_dir, stop)


def _refuse_layers_named_like(pairs: list[LayerPair], sources: list[ScanSource], folder: Path | None) -> None:
    """A pair's scan is named after the file or folder it was opened from, or its image layer (`train._patient_names`),
    and names identify patients in the split, so the engine refuses a pair named like a scan of the folder (most
    often that very scan, opened as a layer too: one patient twice, perhaps on both sides of the split), but only
    once the whole folder has loaded and in words that know nothing of layers; this says which layer and what to do
    (the first clash, as the widget's check of an image in two pairs does). A folder's sources carry the names their
    scans load with."""
    in_folder = {source.name for source in sources}
    if clash := next((pair for pair in pairs if pair.patient in in_folder), None):
        what = "has" if clash.patient == clash.name else f"was opened from '{clash.patient}', which has"
        raise InputError(f"the image layer '{clash.name}' {what} the name of a scan in {folder}, and names identify "
                         "patients in the training split: rename the layer, or, if it is that patient, train on it "
                         "once (remove its pair or leave the folder out)")

