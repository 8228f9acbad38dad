"""DICOM folders: their image series, which series is which MRI sequence, and each series as one volume.

SimpleITK (GDCM) groups files by series and sorts the slices of a series by their position along the slice normal;
ITK then places slice k at the first slice's position plus k steps of one averaged spacing along the normal. A series
that this regular grid misplaces is refused, not repaired: two files at one position, a gap where slices are missing,
uneven steps that add up, slices not stacked along their normal (a tilted gantry), slices of different sizes, pixel
spacings or orientations, and multi-frame (enhanced) files, whose frames' positions ITK does not show. Which copy,
gap or spacing is right is for the user to say. So is a series of several echo times (a dual-echo series, or two
acquisitions exported as one), whose contrasts one volume would mix. Colour series (RGB, YBR, a palette:
screenshots, secondary captures) are refused as colour NIfTI is: they are no MRI sequence.
A folder with one series is that scan; a folder with several (a study) is read as a case when their descriptions
name a FLAIR series (and pre-/post-contrast T1 ones); otherwise the user is told which series it holds.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError, InputWarning
from .listing import read_once
from .scan_checks import colour_refusal
from .sequences import FLAIR, MODEL_CHANNELS, sequence_of
from .volumes import LPS_TO_RAS, Volume, itk_warnings_off, no_orientation, read_itk, sitk

_DESCRIPTION = "0008|103e"
_SAME_POSITION_MM = 1e-3
_SPACING_TOLERANCE = 0.1  # a step 10 % wider than the narrowest means a missing slice (or an irregular series)
_PLACEMENT_TOLERANCE = 0.1  # a slice further than 10 % of the slice step from its file's position is misplaced
_ORIENTATION_TOLERANCE = 1e-4  # direction cosines closer than this are one orientation (scanners round them)
_POSITION = "0020|0032"  # ImagePositionPatient
_ORIENTATION = "0020|0037"  # ImageOrientationPatient
_ACQUISITION = "0020|0012"  # AcquisitionNumber
_ECHO_TIME = "0018|0081"
_ECHO_TIME_TOLERANCE_MS = 1e-3  # echo times closer than this are one (scanners round them differently)
_RESCALE = ("0028|1053", "0028|1052")  # RescaleSlope, RescaleIntercept: intensity = stored number * slope + intercept


@dataclass(frozen=True)
class Series:
    folder: Path
    uid: str
    description: str
    files: tuple[str, ...]

    def __str__(self) -> str:
        return f"DICOM series '{self.description or self.uid}' ({len(self.files)} files) in {self.folder}"


def _header(file: str) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(file)
    reader.ReadImageInformation()
    return reader


def list_series(folder: str | Path) -> list[Series]:
    """The image series directly in `folder` (not its subfolders); [] when it holds no DICOM images. GDCM reads
    every file's header once, then once more per series: inside a `listing` block, only on the folder's first
    question (listing.py)."""
    return list(read_once("DICOM series", Path(folder), _read_series_list))


def _read_series_list(folder: Path) -> list[Series]:
    if not folder.is_dir() or not any(entry.is_file() for entry in folder.iterdir()):
        return []  # a folder of folders (a dataset's root) is asked of GDCM, and of SimpleITK, for nothing
    reader = sitk.ImageSeriesReader()
    series = []
    with itk_warnings_off():
        uids = reader.GetGDCMSeriesIDs(str(folder))
    for uid in uids:
        files = tuple(reader.GetGDCMSeriesFileNames(str(folder), uid))
        first = _header(files[0])
        description = first.GetMetaData(_DESCRIPTION).strip() if first.HasMetaDataKey(_DESCRIPTION) else ""
        series.append(Series(folder, uid, description, files))
    return series


def series_by_sequence(folder: str | Path) -> dict[str, Series]:
    """Which series of `folder` feeds which model channel: the only series is FLAIR; otherwise by description."""
    series = list_series(folder)
    if not series:
        raise InputError(f"{folder} holds no DICOM image series")
    if len(series) == 1:
        return {FLAIR: series[0]}
    roles: dict[str, list[Series]] = {}
    for one in series:
        roles.setdefault(sequence_of(one.description), []).append(one)
    if len(roles.get(FLAIR, [])) != 1:
        listed = "; ".join(f"'{s.description or s.uid}' ({len(s.files)} files)" for s in series)
        problem = "none is" if FLAIR not in roles else "several are"
        raise InputError(f"{folder} holds {len(series)} DICOM series and {problem} described as FLAIR ({listed}); "
                         "put the FLAIR series in a folder of its own")
    # Several series of one kind (e.g. an axial and a sagittal T1): the one with the most slices.
    return {role: max(roles[role], key=lambda s: len(s.files)) for role in MODEL_CHANNELS if role in roles}


def _check_one_echo(series: Series, headers: list[sitk.ImageFileReader]) -> None:
    """Refuse slices of different echo times: the echoes of a dual-echo (proton density / T2) series, or two
    acquisitions exported as one series, stacked as one volume would alternate contrasts from slice to slice, or be
    refused as duplicate files where they share positions. Slices without an echo time are not compared."""
    first_at: dict[float, str] = {}
    for header, file in zip(headers, series.files):
        try:
            time = float(header.GetMetaData(_ECHO_TIME)) if header.HasMetaDataKey(_ECHO_TIME) else None
        except ValueError:
            time = None
        if time is not None and all(abs(time - t) > _ECHO_TIME_TOLERANCE_MS for t in first_at):
            first_at[time] = Path(file).name
    if len(first_at) > 1:
        times = "; ".join(f"{t:g} ms: {name}" for t, name in sorted(first_at.items()))
        raise InputError(f"{series} holds slices of {len(first_at)} echo times ({times}): several echoes or "
                         "acquisitions in one series; export each as a series of its own (dcm2niix splits them)")


def _check_slice_positions(series: Series, headers: list[sitk.ImageFileReader]) -> None:
    """Refuse a slice without a position, two files at one slice position, or a gap where slices are missing: ITK
    would stack them anyway, at an averaged spacing, with every slice after the gap misplaced. GDCM puts a slice
    without ImagePositionPatient at 0 mm, which read as a duplicate or a gap, and sent the user deleting slices."""
    if len(headers) > 1 and (unplaced := [f for h, f in zip(headers, series.files) if not h.HasMetaDataKey(_POSITION)]):
        raise InputError(f"{series}: {Path(unplaced[0]).name} has no slice position (ImagePositionPatient)"
                         f"{f', nor have {len(unplaced) - 1} other files' if len(unplaced) > 1 else ''}, so where "
                         "its slice lies in the volume is unknown; export the series again with its positions")
    normal = np.array(headers[0].GetDirection()).reshape(3, 3)[:, 2]
    placed = sorted((float(np.dot(h.GetOrigin(), normal)), Path(f).name) for h, f in zip(headers, series.files))
    steps = np.diff([position for position, _ in placed])
    for step, (at, first), (_, second) in zip(steps, placed, placed[1:]):
        if step < _SAME_POSITION_MM:
            raise _same_position(series, headers, at, first, second)
    usual = float(steps.min()) if len(steps) else 0.0  # a missing slice only ever widens a step
    for step, (at, _), (after, _) in zip(steps, placed, placed[1:]):
        if step > (1 + _SPACING_TOLERANCE) * usual:
            missing = round(step / usual) - 1  # none: a step too short to hold a slice, so the spacing is uneven
            why = (f"about {missing} slice {'file' if missing == 1 else 'files'} missing, or an irregular series"
                   if missing else "the series' slice spacing is uneven, not a missing slice")
            raise InputError(f"{series}: the slices at {at:.2f} and {after:.2f} mm are {step:.2f} mm apart where "
                             f"others are {usual:.2f} mm: {why}; export the series again")


def _same_position(series: Series, headers: list[sitk.ImageFileReader], at: float, first: str,
                   second: str) -> InputError:
    """The refusal of the files `first` and `second` of `series`, both at slice position `at` mm: a copy of one file,
    or, where their AcquisitionNumbers differ, a series that repeats its slices (time points of a dynamic scan, a
    repeated acquisition), whose files are no copies to remove."""
    numbers = {Path(f).name: h.GetMetaData(_ACQUISITION).strip() if h.HasMetaDataKey(_ACQUISITION) else ""
               for h, f in zip(headers, series.files)}
    both = f"{series}: {first} and {second} are both at slice position {at:.2f} mm"
    if numbers[first] and numbers[second] and numbers[first] != numbers[second]:
        return InputError(f"{both}, from acquisitions {numbers[first]} and {numbers[second]}: the series repeats its "
                          "slices (time points or repeated acquisitions); export the acquisition to segment as a "
                          "series of its own")
    return InputError(f"{both}; remove the duplicate file")


def _check_single_frames(series: Series, headers: list[sitk.ImageFileReader]) -> None:
    """Refuse a multi-frame (enhanced) DICOM file: ITK stacks its frames at one spacing (1 mm where they are uneven)
    and this reader cannot see each frame's position to check it, so a mask written back could be misplaced."""
    for header, file in zip(headers, series.files):
        if header.GetDimension() > 2 and header.GetSize()[2] > 1:
            raise InputError(f"{series}: {Path(file).name} is a multi-frame (enhanced) DICOM file of "
                             f"{header.GetSize()[2]} frames, whose frame positions cannot be checked here; convert "
                             "it to NIfTI (e.g. with dcm2niix) and give that file")


def _check_same_kind(series: Series, headers: list[sitk.ImageFileReader]) -> None:
    """Refuse slices of different sizes, pixel spacings or orientations: ITK takes the first slice's for all."""
    first = headers[0]
    for header in headers[1:]:
        if (header.GetSize() != first.GetSize()
                or not np.allclose(header.GetSpacing()[:2], first.GetSpacing()[:2], rtol=0, atol=1e-6)
                or not np.allclose(header.GetDirection(), first.GetDirection(), rtol=0, atol=_ORIENTATION_TOLERANCE)):
            raise InputError(f"{series} mixes images of different sizes, pixel spacings or orientations; "
                             "export each stack of parallel slices as its own series")


def _check_placement(series: Series, headers: list[sitk.ImageFileReader], volume: Volume) -> None:
    """Refuse a series whose volume geometry puts a slice elsewhere than its file's ImagePositionPatient says.

    ITK builds one regular grid (the first slice's position, one averaged step along the normal), so steps that are
    each only a little uneven add up, and slices that slide sideways from one to the next (a tilted gantry) are
    stacked straight: a mask written back would miss those slices' voxels. `headers` are in the volume's slice order.
    """
    affine = volume.geometry.matrix
    step = float(np.linalg.norm(affine[:3, 2]))
    placed = [(affine @ [0.0, 0.0, index, 1.0])[:3] for index in range(len(headers))]
    offsets = [float(np.linalg.norm(where - LPS_TO_RAS @ np.array(header.GetOrigin())))
               for where, header in zip(placed, headers)]
    worst = int(np.argmax(offsets))
    if offsets[worst] > _PLACEMENT_TOLERANCE * step:
        raise InputError(f"{series}: {Path(series.files[worst]).name} lies {offsets[worst]:.2f} mm from where a "
                         f"regular stack of {step:.2f} mm steps puts it: its slices are unevenly spaced or not "
                         "stacked along their normal (a tilted gantry); export the series again, or resample it to "
                         "a regular grid")


def _stored_as(header: sitk.ImageFileReader) -> tuple[object, ...]:
    """How a slice's stored numbers become its intensities: the pixel type GDCM gives it, and its rescale."""
    return (header.GetPixelID(), *(header.GetMetaData(key).strip() if header.HasMetaDataKey(key) else ""
                                   for key in _RESCALE))


def read_series(series: Series) -> Volume:
    """One series as a volume; a series that one regular grid of grey slices cannot place exactly (see the module
    docstring) is refused, not guessed at. Slices whose numbers are scaled differently (their own RescaleSlope or
    RescaleIntercept, as some scanners store them) are read as floats: ITK reads a series in its first slice's pixel
    type, in which the others' intensities wrapped round (negative ones became 65000) or lost their fractions."""
    headers = [_header(file) for file in series.files]
    if any(header.GetNumberOfComponents() > 1 for header in headers):
        raise colour_refusal(str(series))
    _check_single_frames(series, headers)
    _check_same_kind(series, headers)
    _check_one_echo(series, headers)
    _check_slice_positions(series, headers)
    volume = read_itk(list(series.files), str(series), as_float=len(set(map(_stored_as, headers))) > 1)
    _check_placement(series, headers, volume)
    if not headers[0].HasMetaDataKey(_ORIENTATION):  # same in every file: _check_same_kind
        warnings.warn(InputWarning(no_orientation(
            series, "has no orientation (its files have no ImageOrientationPatient)",
            "right to left, anterior to posterior and inferior to superior, as in axial slices (ITK's reading)",
            "that assumed placement")), stacklevel=1)
    return volume
