"""Multi-sequence cases: which files of a folder form one scan, and loading them as the model's channels.

Recognised: BraTS case folders (`<case>_flair/_t1/_t1ce/_t2/_seg`, BraTS 2023 `<case>-t2f/-t1n/-t1c/-t2w/-seg`),
plain folders whose files (or DICOM subfolders) are named flair / t1 / t1ce|t1c|t1gd / t2, flat folders holding
several such cases side by side, nnU-Net / Decathlon folders (`imagesTr/CASE_0000.nii.gz` or 4D files, channel names
from `dataset.json`, labels in `labelsTr`), single volumes (a file no sequence name claims is FLAIR, `<name>_mask` or
`<name>_seg` beside it its labels; labels named after the sequence they were drawn on, `flair_seg` or `<case>_t2_mask`,
are their case's) and DICOM study folders (see dicom.py).

Sequences of a case on different grids are resampled onto FLAIR's (linear; labels nearest neighbour), so the mask
is always on FLAIR's grid; one that covers less than half of FLAIR's field of view is refused by name (it is not in
FLAIR's space, and would give an empty channel or a Dice of 0). Missing pre- or post-contrast T1 is filled with FLAIR,
as the LGG dataset did.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dicom import Series, list_series, read_series, series_by_sequence
from .errors import InputError, InputWarning, few_names
from .formats import file_entry, is_dicom_file, read_volume, strip_volume_suffix, volume_entry, volume_suffix
from .scan_checks import common_dtype, optional_mask, tumour_of_labels
from .sequences import (FLAIR, LABELS, MODEL_CHANNELS, POST, PRE, T2, grouped_by_case, sequence_of, split_file_name,
                        split_sequence)
from .volumes import (UNORIENTED, Geometry, Volume, covered_fraction, no_orientation, resample_onto, same_grid,
                      to_engine)

_CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
SEQUENCE_FOLDERS = (*MODEL_CHANNELS, T2)  # subfolder names that make a folder a case (each a DICOM series)
MIN_COVERED = 0.5  # a sequence or label volume must cover at least this share of FLAIR's field of view
READING_ORDER = (FLAIR, PRE, POST, T2)  # how load_sequences lists a case's sequences


@dataclass(frozen=True)
class Source:
    """One sequence's voxels: a volume file, or a DICOM series."""

    path: Path
    series: Series | None = None

    def __str__(self) -> str:
        return str(self.series) if self.series else str(self.path)

    def read(self) -> Volume:
        return read_series(self.series) if self.series else read_volume(self.path)


@dataclass(frozen=True)
class Case:
    """The files of one scan. `channel_names` names the channels of 4D files (a dataset.json's channel map);
    `ignore_label` is the label value dataset.json declares as not annotated (nnU-Net v2's "ignore")."""

    name: str
    sequences: tuple[tuple[str, Source], ...]
    labels: Source | None = None
    channel_names: tuple[str, ...] = ()
    ignore_label: int | None = None


@dataclass
class CaseVolumes:
    """A case loaded in the engine's layout: image (Z, H, W, 3) or FLAIR alone (Z, H, W), mask bool or None."""

    image: np.ndarray
    mask: np.ndarray | None
    rgb: bool
    geometry: Geometry


def _dataset_json(images: Path) -> dict | None:
    for place in (images, images.parent):
        file = place / "dataset.json"
        if file.is_file():
            try:
                meta = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                raise InputError(f"cannot read {file} ({error})") from None
            if not isinstance(meta, dict):
                raise InputError(f"{file} is no nnU-Net dataset description: it holds {_json_kind(meta)}, not an "
                                 'object such as {"channel_names": {"0": "FLAIR"}}')
            return meta | {"_path": str(file)}
    return None


def _channel_names(meta: dict) -> tuple[str, ...]:
    """The channels' names in channel order, from nnU-Net v2's `channel_names` or the Decathlon's `modality`: an
    object whose keys are channel numbers ("0", "1", ...)."""
    key = "channel_names" if meta.get("channel_names") or "modality" not in meta else "modality"
    names = meta.get(key, {})
    if not isinstance(names, dict):
        raise InputError(f"{meta['_path']}: its {key} is {_json_kind(names)}, not an object of channel numbers and "
                         'names (e.g. {"0": "FLAIR", "1": "T1"})')
    if not_numbers := [number for number in names if not number.isdecimal()]:
        raise InputError(f"{meta['_path']}: its {key} must be keyed by channel numbers (\"0\", \"1\", ...), not "
                         f"{', '.join(map(json.dumps, not_numbers))}")
    ordered = tuple(str(names[number]) for number in sorted(names, key=int))
    if FLAIR not in map(sequence_of, ordered):
        raise InputError(f"{meta['_path']} names no FLAIR channel (channels: {', '.join(ordered) or 'none'}); "
                         "the model needs FLAIR")
    return ordered


def _json_kind(value: object) -> str:
    """What a JSON value other than an object is, in JSON's words (a Python list is an array)."""
    kinds = {list: "an array", str: "a string", bool: "true or false", int: "a number", float: "a number",
             type(None): "null"}
    return kinds[type(value)]


def _ignore_label(meta: dict) -> int | None:
    """The label nnU-Net v2 datasets with sparse annotations declare (`"labels": {..., "ignore": 3}`): its voxels
    were not annotated, so they are neither tumour nor background."""
    labels = meta.get("labels")
    value = labels.get("ignore") if isinstance(labels, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def nnunet_cases(folder: Path) -> list[Case] | None:
    """The cases of an nnU-Net / Decathlon dataset folder or its images folder; None when `folder` is neither."""
    if (folder / "imagesTr").is_dir() and (folder / "dataset.json").is_file():
        folder = folder / "imagesTr"
    if not folder.name.lower().startswith("images") or (meta := _dataset_json(folder)) is None:
        return None
    names, ignore = _channel_names(meta), _ignore_label(meta)
    labels = folder.parent / ("labels" + folder.name[len("images"):])
    channel_files: dict[str, dict[int, Path]] = {}
    cases = []
    for file in sorted(f for f in folder.iterdir() if volume_entry(f)):
        stem = strip_volume_suffix(file.name)
        label = labels / file.name if file_entry(labels / file.name) else None
        if match := _CHANNEL_FILE.match(stem):
            channel_files.setdefault(match["case"], {})[int(match["channel"])] = file
        else:  # one 4D file per case
            cases.append(Case(stem, ((FLAIR, Source(file)),), Source(label) if label else None, names, ignore))
    for name, files in channel_files.items():
        sequences = tuple((str(sequence_of(names[i])), Source(f)) for i, f in sorted(files.items()) if i < len(names))
        label = next((labels / f"{name}{volume_suffix(f)}" for f in files.values()
                      if file_entry(labels / f"{name}{volume_suffix(f)}")), None)
        cases.append(Case(name, sequences, Source(label) if label else None, ignore_label=ignore))
    return sorted(cases, key=lambda c: c.name)


def _entry_names(folder: Path) -> dict[str, tuple[str, str | None]]:
    """(case key, sequence) by the name of each volume file and sequence-named DICOM subfolder of `folder`, names only.

    A labels file named after the sequence it was drawn on (`flair_seg`, `<case>_t2_mask`, as ITK-SNAP users save
    them) belongs to the case whose files carry the name before that sequence's (`flair.nii.gz`, `<case>_flair`):
    split at its last word only, it made a case of its own, without a FLAIR, and left its case without labels. It
    keeps its whole name where files carry it (`<case>_t1_flair` and `<case>_t1_seg`: t1 is then part of the case's
    name, a time point, say). Named the other way round (`seg_flair`), it is labels too (`split_file_name`); so are
    `<case>_tumor_mask`, `lesion_seg` or `Segmentation-label` (words of `LABEL_QUALIFIERS` or labels words before the
    labels word), which made a case of labels alone and, in a case folder, "holds 2 scans"."""
    named = {}
    for entry in sorted(folder.iterdir()):
        if volume_entry(entry):
            named[entry.name] = split_file_name(strip_volume_suffix(entry.name))
        elif entry.is_dir() and (folder_named := split_sequence(entry.name))[1] in SEQUENCE_FOLDERS:
            named[entry.name] = folder_named
    return grouped_by_case(named)


def _named_entries(folder: Path, key: str | None = None) -> list[tuple[str, str | None, Source]]:
    """(case key, sequence, source) for each volume file and sequence-named DICOM subfolder of `folder` (only those
    of case `key` when given, so a file's case never depends on unrelated entries beside it)."""
    entries = []
    for name, (case_key, sequence) in _entry_names(folder).items():
        if key not in (None, case_key):
            continue
        entry = folder / name
        if not entry.is_dir():  # a file, or a link to nothing that reading refuses by name
            entries.append((case_key, sequence, Source(entry)))
            continue
        series = list_series(entry)
        if len(series) > 1:
            raise InputError(f"sequence folder {entry} holds {len(series)} DICOM series; keep one series in it")
        if series:
            entries.append((case_key, sequence, Source(entry, series[0])))
    return entries


def cases_in_folder(folder: str | Path, key: str | None = None, given: Path | None = None) -> list[Case]:
    """The cases formed by the files directly in `folder` (grouped by name, see the module docstring); with `key`,
    only that case's files are looked at. `given` is a file of `folder` the user named: it is read as its sequence
    though other files claim that sequence too (`zero.nii.gz` beside `zero.nii` and `zero.mha`, copies in other
    formats): the user chose it."""
    folder = Path(folder)
    if (found := nnunet_cases(folder)) is not None:
        return found
    entries = [(case_key, sequence or FLAIR, source)  # a volume no sequence name claims is taken as FLAIR
               for case_key, sequence, source in _named_entries(folder, key)]
    chosen = {(case_key, sequence) for case_key, sequence, source in entries if source.path == given}
    groups: dict[str, dict[str, Source]] = {}
    for case_key, sequence, source in entries:
        if (case_key, sequence) not in chosen or source.path == given:  # the user chose that sequence's file
            _place(groups.setdefault(case_key, {}), sequence, source, folder, given)
    if key is None and groups:
        _refuse_dicom_beside_volumes(folder)
    return [Case(case_key or folder.name, tuple((s, src) for s, src in group.items() if s != LABELS),
                 group.get(LABELS)) for case_key, group in groups.items()]


def _place(group: dict[str, Source], sequence: str, source: Source, folder: Path, given: Path | None) -> None:
    """Take `source` as its case's `sequence`; two files of one sequence (`zero.nii`, `zero.mha`) are refused, as
    either could be the one meant. The refusal names the file the user gave (`given`), if any, and its folder in full:
    the folder of `zero.nii.gz` was shown as '.'."""
    if sequence in group:
        files = f"({group[sequence].path.name}, {source.path.name}); keep one"
        if given is None:
            raise InputError(f"{folder}: two {sequence} files for one case {files}")
        raise InputError(f"{given}: its folder {folder.absolute()} holds two {sequence} files for its case {files}")
    group[sequence] = source


def _refuse_dicom_beside_volumes(folder: Path) -> None:
    """A DICOM series among a folder's volume files (dcm2niix writes its NIfTI into the DICOM folder unless told
    otherwise) is refused: the volume files make the folder a case, so the series was left out without a word, and
    a converted T1 or diffusion image no sequence name claims was segmented as the case's FLAIR. Only files that
    start as DICOM files do (`is_dicom_file`) are given to GDCM, which would otherwise read every volume file."""
    if not any(p.is_file() and not volume_suffix(p) and is_dicom_file(p) for p in folder.iterdir()):
        return
    if series := list_series(folder):
        volumes = sorted(p.name for p in folder.iterdir() if p.is_file() and volume_suffix(p))
        named = [f"'{s.description or s.uid}' ({len(s.files)} files)" for s in series]
        raise InputError(f"{folder} holds the DICOM series {few_names(named)} beside the volume files "
                         f"{few_names(volumes)}; only the volume files would be read: give one of them as the scan, "
                         "or move the DICOM files or the volume files into a folder of their own")


def case_of_file(path: Path) -> Case:
    """The one case a volume file belongs to (its sibling sequences and labels)."""
    key = _entry_names(path.parent)[path.name][0]
    cases = [c for c in cases_in_folder(path.parent, key, given=path)
             if path in [s.path for _, s in c.sequences] or (c.labels and c.labels.path == path)]
    if not cases:  # e.g. an nnU-Net channel file beyond dataset.json's channels
        raise InputError(f"{path}: no scan of its folder uses this file")
    return cases[0]


def case_in_folder(folder: Path) -> Case:
    """The one case a case folder holds; a folder of several cases is refused with their names."""
    cases = cases_in_folder(folder)
    if len(cases) == 1:
        return cases[0]
    if cases:
        raise InputError(f"{folder} holds {len(cases)} cases ({', '.join(c.name for c in cases[:3])}, ...); "
                         "give one of them, or give the folder as a folder of cases")
    raise InputError(f"{folder} holds no scan of its own; give it as a folder of cases, or one case inside it")


def dicom_case(folder: str | Path) -> Case:
    """A DICOM folder (one series, or a study whose series descriptions name the sequences) as a case."""
    folder = Path(folder)
    chosen = series_by_sequence(folder)
    return Case(folder.name, tuple((role, Source(folder, series)) for role, series in chosen.items()))


def _split_channels(volume: Volume, names: tuple[str, ...], source: Source,
                    wanted: tuple[str, ...] = MODEL_CHANNELS) -> dict[str, Volume]:
    """The channels of a 4D volume by sequence: named by dataset.json, else 1 = FLAIR and 3 = the model's order."""
    count = volume.data.shape[3]
    if names:
        if len(names) != count:
            raise InputError(f"{source} has {count} channels but dataset.json names {len(names)}")
        roles = [sequence_of(name) for name in names]
    elif count in (1, 3):
        roles = [FLAIR] if count == 1 else list(MODEL_CHANNELS)
    else:
        raise InputError(f"{source} has {count} channels and no dataset.json beside it names them; "
                         "give one file per sequence or a dataset.json with channel_names")
    return {role: Volume(volume.data[..., index], volume.geometry) for index, role in enumerate(roles)
            if role in wanted}


def on_grid(volume: Volume, grid: Geometry, what: str, labels: bool = False) -> np.ndarray:
    """`volume`'s voxels on FLAIR's `grid`: as they are when the grids match, else resampled (nearest neighbour for
    labels). A volume covering less than MIN_COVERED of FLAIR's field of view is refused (`what` names it): the
    sequences are not in one space, and resampling would give a channel (or Dice) of nothing.

    When only one of the two headers says how the patient lies (the other a NIfTI with qform and sform codes 0, as
    `nib.Nifti1Image(mask, None)` writes), nibabel's guess for the other would place it, and a mask made voxel for
    voxel from its FLAIR's array came out mirrored left to right. So such a volume of FLAIR's voxel shape is taken
    voxel for voxel, with a warning, and one of another shape is refused: where its voxels lie is unknown."""
    if same_grid(volume.geometry, grid):
        return volume.data
    if volume.geometry.oriented != grid.oriented:
        lacking, other = (what, "the FLAIR") if grid.oriented else ("the FLAIR", what)
        mismatch = f"{lacking} {UNORIENTED} but {other} has one"
        if volume.geometry.shape == grid.shape:
            warnings.warn(InputWarning(
                f"{mismatch}; {what} has the FLAIR's voxel grid ({' x '.join(map(str, grid.shape))}), so it is read "
                "voxel for voxel on the FLAIR, as a mask made from the FLAIR's array is; save it with the FLAIR's "
                "header (its affine and codes) to place it for certain"), stacklevel=1)
            return volume.data
        raise InputError(f"{mismatch}, and {what} has another voxel grid than the FLAIR: where their voxels lie "
                         f"against each other is unknown, and a guess could mirror them; save {what} with the FLAIR's "
                         "header (its affine and codes)")
    covered = covered_fraction(volume.geometry, grid)
    if covered < MIN_COVERED:
        raise InputError(f"{what} covers {covered:.0%} of the FLAIR's field of view (at least {MIN_COVERED:.0%} "
                         "needed): it is not in the same space as the FLAIR; register it to the FLAIR or leave it out")
    return resample_onto(volume, grid, labels)


def _own_grid(volume: Volume, source: Source) -> Geometry:
    """`volume`'s geometry as the grid a case is shown and segmented on (the FLAIR's, or a labels file's opened on its
    own), with the warning of `volumes.no_orientation` when its header does not say how the patient lies. A file read
    onto such a grid is told of by `on_grid` alone, and only when one of the two has an orientation: a labels file
    without one beside a FLAIR also gave this warning, meant for a scan shown and segmented on its own grid."""
    if not volume.geometry.oriented:
        warnings.warn(InputWarning(no_orientation(source.path)), stacklevel=1)
    return volume.geometry


def _without_one_channel(volume: Volume) -> Volume:
    """`volume` without a trailing channel axis of one (a file of shape (X, Y, Z, 1), or (X, Y, Z, 1, 1) as some tools
    write a 3D scan or mask): the file's own 3D volume, for its sequence or its labels alike."""
    if volume.data.ndim == 4 and volume.data.shape[3] == 1:
        return Volume(volume.data[..., 0], volume.geometry)
    return volume


def load_labels(source: Source, grid: Geometry | None = None,
                ignore: int | None = None) -> tuple[np.ndarray, Geometry]:
    """A label volume as an engine-layout bool mask (any label > 0: the whole tumour, see `tumour_of_labels`) on
    `grid` (default: its own). Voxels of the `ignore` label (not annotated) are refused: read as > 0 they would be
    tumour, and training and evaluate need every voxel labelled. On its own grid, the grid records the file as its
    source (LABELS), so a mask saved from it takes that file's format (`default_mask_suffix`)."""
    labels = _without_one_channel(source.read())
    if labels.data.ndim != 3:
        raise InputError(f"{source} has shape {labels.data.shape}; a label volume must be 3D")
    if ignore is not None and (labels.data == ignore).any():
        raise InputError(f"{source} marks voxels with dataset.json's ignore label {ignore} (not annotated); training "
                         "and evaluate need every voxel labelled: label them, or leave the case out")
    grid = grid or _own_grid(labels, source).with_sources({LABELS: str(source)})
    tumour = Volume(tumour_of_labels(f"the labels {source}", labels.data).astype(np.uint8), labels.geometry)
    return to_engine(on_grid(tumour, grid, f"the labels {source}", labels=True) > 0, grid), grid


def _read_sequences(case: Case, wanted: tuple[str, ...]) -> dict[str, Volume]:
    """The case's `wanted` sequences as read (4D files split into channels); FLAIR is required."""
    volumes: dict[str, Volume] = {}
    for sequence, source in case.sequences:
        if sequence not in wanted:  # e.g. T2 and unnamed channels, which the model does not use
            continue
        volume = _without_one_channel(source.read())
        if volume.data.ndim == 3:
            channels = {sequence: volume}
        elif len(case.sequences) == 1:  # one file holds the case's channels (Decathlon, an RGB series)
            channels = _split_channels(volume, case.channel_names, source, wanted)
        else:  # its channels would silently take the place of the case's other files (its FLAIR, say)
            raise InputError(f"{source} holds {volume.data.shape[3]} volumes, but it is one of {case.name}'s files "
                             "of one sequence each: give each sequence its own 3D file")
        if FLAIR in channels:
            _own_grid(channels[FLAIR], source)
        volumes.update(channels)
    if FLAIR not in volumes:
        found = ", ".join(s for s, _ in case.sequences) or "no sequences"
        raise InputError(f"{case.name}: no FLAIR scan (found {found}); the model needs FLAIR "
                         "(name it *_flair, *-t2f or flair.nii.gz)")
    return volumes


def _case_mask(case: Case, grid: Geometry, require_mask: bool) -> np.ndarray | None:
    """The case's labels as a mask on FLAIR's `grid`, None when it has none; labels that cannot be used (see
    `load_labels`) are refused where ground truth is required, else left out with a warning (`optional_mask`)."""
    if case.labels is None:
        if require_mask:
            raise InputError(f"{case.name}: no labels to score against (a *_seg or *_mask file beside the scan, "
                             "or labelsTr/<case> for nnU-Net)")
        return None
    return optional_mask(case.name, lambda: load_labels(case.labels, grid, case.ignore_label)[0], require_mask)


def load_case(case: Case, require_mask: bool = False) -> CaseVolumes:
    """Read, align and orient a case's sequences into the model's channel layout."""
    volumes = _read_sequences(case, MODEL_CHANNELS)
    grid = volumes[FLAIR].geometry
    if list(volumes) == [FLAIR]:
        image, rgb = volumes[FLAIR].data, False
    else:
        named = dict(case.sequences)
        channels = [
            on_grid(volumes[s], grid, f"{s} {named.get(s, '')}".strip()) if s in volumes else volumes[FLAIR].data
            for s in MODEL_CHANNELS
        ]
        image, rgb = np.stack(channels, axis=-1).astype(common_dtype(channels), copy=False), True
    mask = _case_mask(case, grid, require_mask)
    sources = {sequence: str(source) for sequence, source in case.sequences if sequence in MODEL_CHANNELS}
    return CaseVolumes(to_engine(image, grid), mask, rgb, grid.with_sources(sources))


@dataclass
class CaseSequences:
    """A case's sequences as a radiologist reads them: each (Z, H, W) in the engine's layout on FLAIR's grid, keyed
    by sequence (FLAIR first, then pre-contrast T1, post-contrast T1, T2 when present), and the labels when known."""

    images: dict[str, np.ndarray]
    mask: np.ndarray | None
    geometry: Geometry


def load_sequences(case: Case) -> CaseSequences:
    """Every sequence of `case` the project names (see sequences.py), T2 included, each aligned onto FLAIR's grid,
    so one layer per sequence overlays the others voxel for voxel."""
    volumes = _read_sequences(case, READING_ORDER)
    grid = volumes[FLAIR].geometry
    named = dict(case.sequences)
    images = {s: to_engine(on_grid(volumes[s], grid, f"{s} {named.get(s, '')}".strip()), grid)
              for s in READING_ORDER if s in volumes}
    mask = _case_mask(case, grid, require_mask=False)
    sources = {sequence: str(source) for sequence, source in case.sequences if sequence in images}
    return CaseSequences(images, mask, grid.with_sources(sources))
