"""DICOM folders: their image series, which series is which MRI sequence, and each series as one volume.

SimpleITK (GDCM) groups files by series and sorts the slices of a series by their position along the slice normal;
ITK then places slice k at the first slice's position plus k steps of one averaged spacing along the normal. A series
that this regular grid misplaces is refused, not repaired: several files at one position (a copied file, or a scan
repeated into one series), a gap where slices are missing, uneven steps that add up, slices not stacked along their
normal (a tilted gantry), slices of different sizes, pixel spacings or orientations, and multi-frame (enhanced) files,
whose frames' positions ITK does not show. Which copy, repeat, gap or spacing is right is for the user to say. So is
a series of several echo times (a dual-echo series, or two acquisitions exported as one), whose contrasts one volume
would mix. Colour series (RGB, YBR, a palette: screenshots, secondary captures) are refused as colour NIfTI is: they
are no MRI sequence.
A folder with one series is that scan; a folder with several (a study) is read as a case when their descriptions
name a FLAIR series (and pre-/post-contrast T1 ones); otherwise the user is told which series it holds.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError, InputWarning, few_names
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
_THICKNESS = "0018|0050"  # SliceThickness
_SPACING = "0018|0088"  # SpacingBetweenSlices: GDCM's depth for a one-slice series (1 mm where it is not given)
_DEPTH_TOLERANCE = 0.01  # a one-slice depth within 1 % of its SliceThickness is that thickness
_ONE_POSITION_FRACTION = 0.1  # slices closer than a tenth of their thickness are at one position
_APART_FRACTION = 0.5  # ... where each position's files span less than half the gap to the next position
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
    """Refuse a slice without a position, several files at one slice position, or a gap where slices are missing: ITK
    would stack them anyway, at an averaged spacing, with every slice after the gap misplaced. GDCM puts a slice
    without ImagePositionPatient at 0 mm, which read as a duplicate or a gap, and sent the user deleting slices."""
    if len(headers) > 1 and (unplaced := [f for h, f in zip(headers, series.files) if not h.HasMetaDataKey(_POSITION)]):
        raise InputError(f"{series}: {Path(unplaced[0]).name} has no slice position (ImagePositionPatient)"
                         f"{f', nor have {len(unplaced) - 1} other files' if len(unplaced) > 1 else ''}, so where "
                         "its slice lies in the volume is unknown; export the series again with its positions")
    normal = np.array(headers[0].GetDirection()).reshape(3, 3)[:, 2]
    placed = sorted((float(np.dot(h.GetOrigin(), normal)), Path(f).name) for h, f in zip(headers, series.files))
    thickness = _thickness_mm(headers[0])
    positions = _by_position(placed, thickness)
    if any(len(files) > 1 for files in positions):
        raise _shared_positions(series, headers, positions)
    _check_no_gap(series, [files[0] for files in positions], thickness)


def _thickness_mm(header: sitk.ImageFileReader) -> float:
    """The slice's SliceThickness in mm; 0 where it is not given (or no number)."""
    try:
        return float(header.GetMetaData(_THICKNESS)) if header.HasMetaDataKey(_THICKNESS) else 0.0
    except ValueError:
        return 0.0


def _by_position(placed: list[tuple[float, str]], thickness: float) -> list[list[tuple[float, str]]]:
    """`placed` (position along the normal in mm, file name; sorted) as the files at each slice position.

    Slices overlapping by nine tenths of their `thickness` (mm; 0: unknown) image the same tissue: a repeated scan a
    little off its first one's positions. But a series' own slices overlap that much where its step is under a tenth
    of the thickness (10 mm slabs every 0.9 mm: a thick-slab reformat, or a wrong SliceThickness), and were refused
    as repeating their slices. A repeat's files lie much closer to each other than to the next position; a regular
    series' neighbours lie as far apart as the next ones. So slices are one position by their thickness only where
    each position's files span less than half the narrowest gap between positions; otherwise, and without a
    SliceThickness, only where their positions coincide but for scanners' rounding (1 µm)."""
    by_thickness = _grouped(placed, max(_SAME_POSITION_MM, _ONE_POSITION_FRACTION * thickness))
    gaps = [after[0][0] - before[-1][0] for before, after in zip(by_thickness, by_thickness[1:])]
    widest = max(files[-1][0] - files[0][0] for files in by_thickness)
    # one group leaves no gap to compare with (a regular series within a tenth of a wrong SliceThickness): read
    # as coinciding positions only
    return by_thickness if gaps and widest < _APART_FRACTION * min(gaps) else _grouped(placed, _SAME_POSITION_MM)


def _grouped(placed: list[tuple[float, str]], within: float) -> list[list[tuple[float, str]]]:
    """`placed` (mm, file name; sorted) in groups of the files within `within` mm of their group's lowest file."""
    positions: list[list[tuple[float, str]]] = []
    for at, name in placed:
        if positions and at - positions[-1][0][0] < within:
            positions[-1].append((at, name))
        else:
            positions.append([(at, name)])
    return positions


def _check_no_gap(series: Series, placed: list[tuple[float, str]], thickness: float) -> None:
    """Refuse a step between neighbouring slice positions (`placed`: mm, file name; sorted) wider than the
    narrowest: a slice missing there, or steps too uneven for one spacing. Where the narrowest step overlaps its
    slices by more than half their `thickness` (mm; 0: unknown), more than an MR series' slices do (a 3D scan's
    interpolated slices overlap by half), the wider steps more likely lie between the slices of a second stack (a scan
    repeated into the series a little off the first one's positions) than where slices are missing: it was told
    "about 6 slice files missing"."""
    steps = np.diff([position for position, _ in placed])
    usual = float(steps.min()) if len(steps) else 0.0  # a missing slice only ever widens a step
    for step, (at, _), (after, _) in zip(steps, placed, placed[1:]):
        if step > (1 + _SPACING_TOLERANCE) * usual:
            missing = round(step / usual) - 1  # none: a step too short to hold a slice, so the spacing is uneven
            why = (f"about {missing} slice {'file' if missing == 1 else 'files'} missing, or an irregular series"
                   if missing else "the series' slice spacing is uneven, not a missing slice")
            advice = "export the series again"
            if usual < (1 - _SPACING_TOLERANCE) * thickness / 2:
                why = (f"slices {usual:.2f} mm apart overlap by most of their {thickness:.2f} mm thickness: two "
                       "stacks of slices interleaved (a scan repeated into one series), or overlapping slices with "
                       "some missing")
                advice = "export the acquisition to segment as a series of its own, or the series again"
            raise InputError(f"{series}: the slices at {at:.2f} and {after:.2f} mm are {step:.2f} mm apart where "
                             f"others are {usual:.2f} mm: {why}; {advice}")


def _shared_positions(series: Series, headers: list[sitk.ImageFileReader],
                      positions: list[list[tuple[float, str]]]) -> InputError:
    """The refusal of `series`, some of whose slice `positions` (each: its files, as mm and file name) hold several
    files: copies of one file, to remove, or several acquisitions of the slices (a repeated scan, the time points of
    a dynamic one, two stacks at one set of positions), which no rule can split without guessing which the user
    wants (a repeat and a scanner's concatenations differ alike in AcquisitionTime and InstanceNumber), so the user
    is told how many files share each position and to export the acquisition to segment as a series of its own."""
    shared = [files for files in positions if len(files) > 1]
    names = [name for _, name in shared[0]]
    lowest, highest = shared[0][0][0], shared[0][-1][0]
    where = f"{lowest:.2f}" + (f" to {highest:.2f}" if f"{highest:.2f}" != f"{lowest:.2f}" else "")
    both = f"{few_names(names)} are {'both' if len(names) == 2 else 'all'} at slice position {where} mm"
    if all(_same_images(series.folder, [name for _, name in files]) for files in shared):
        elsewhere = sum(len(files) - 1 for files in shared[1:])  # copies beyond those named, at other positions
        more = f" ({elsewhere} more {'copy' if elsewhere == 1 else 'copies'} at other positions)" if elsewhere else ""
        plural = elsewhere or len(names) > 2
        return InputError(f"{series}: {both} and hold the same image{more}; remove the duplicate "
                          f"{'files' if plural else 'file'}")
    numbers = _acquisition_numbers(series, headers, names)
    acquisitions = f", from acquisitions {few_names(numbers)}" if len(set(numbers)) == len(numbers) > 1 else ""
    return InputError(f"{series}: {_sharing(shared, len(positions))} ({both}{acquisitions}): the series repeats its "
                      "slices (a repeated scan, time points, or two stacks at one set of positions), which one volume "
                      "cannot hold; export the acquisition to segment as a series of its own, in a folder of its own")


def _sharing(shared: list[list[tuple[float, str]]], positions: int) -> str:
    """How many files share the slice positions that hold several (`shared`) of a series' `positions`."""
    counts = sorted({len(files) for files in shared})
    files = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    if len(shared) == positions:
        return f"{files} files at each of its {positions} slice positions"
    return f"{len(shared)} of its {positions} slice positions hold {files} files each"


def _acquisition_numbers(series: Series, headers: list[sitk.ImageFileReader], names: list[str]) -> list[str]:
    """The AcquisitionNumber of each of `series`' files `names` ("" where it has none)."""
    numbers = {Path(f).name: h.GetMetaData(_ACQUISITION).strip() if h.HasMetaDataKey(_ACQUISITION) else ""
               for h, f in zip(headers, series.files)}
    return [numbers[name] for name in names]


def _same_images(folder: Path, names: list[str]) -> bool:
    """Whether the files `names` in `folder` hold one image (copies of one file), read only to word a refusal."""
    try:
        with itk_warnings_off():
            images = [sitk.GetArrayFromImage(sitk.ReadImage(str(folder / name))) for name in names]
    except RuntimeError:
        return False
    return all(image.shape == images[0].shape and np.array_equal(image, images[0]) for image in images[1:])


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


def _warn_of_one_slice_depth(series: Series, headers: list[sitk.ImageFileReader], volume: Volume) -> None:
    """Warn where a one-slice series' depth (SpacingBetweenSlices, or GDCM's 1 mm without it) is not its
    SliceThickness: the grid is kept as ITK reads it, so a mask fits the slice, but its mm³ figures assume that
    depth."""
    if len(headers) != 1:
        return
    depth = float(np.linalg.norm(volume.geometry.matrix[:3, 2]))
    thickness = _thickness_mm(headers[0])
    if thickness and abs(depth - thickness) <= _DEPTH_TOLERANCE * thickness:
        return
    if not thickness and headers[0].HasMetaDataKey(_SPACING):
        return  # no thickness to compare with, and a depth its header gives
    told = f"its SliceThickness is {thickness:g} mm" if thickness else "it gives no SliceThickness"
    source = "its SpacingBetweenSlices" if headers[0].HasMetaDataKey(_SPACING) else "ITK's guess, no spacing"
    warnings.warn(InputWarning(f"{series}: one slice, read {depth:g} mm deep ({source}) while {told}; its mm³ "
                               "figures (tumour_mm3, volume readouts) assume that depth"), stacklevel=1)


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
    _warn_of_one_slice_depth(series, headers, volume)
    if not headers[0].HasMetaDataKey(_ORIENTATION):  # same in every file: _check_same_kind
        warnings.warn(InputWarning(no_orientation(
            series, "has no orientation (its files have no ImageOrientationPatient)",
            "right to left, anterior to posterior and inferior to superior, as in axial slices (ITK's reading)",
            "that assumed placement")), stacklevel=1)
    return volume
