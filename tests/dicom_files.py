"""DICOM files written with pydicom for tests: small MR slices with just the tags a series reader needs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid


def _mr_file(sop_class: str, series: str, description: str) -> Dataset:
    """An MR file of `sop_class` in study 1.2.3 and `series`, with its file meta; the caller adds the image."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SeriesDescription = "1.2.3", series, description
    ds.Modality, ds.PatientID = "MR", "anon"
    return ds


def write_slice(folder: Path, name: str, series: str, description: str, z: float, pixels: np.ndarray,
                thickness: float = 2.5, corner: tuple[float, float] = (-10.0, -20.0),
                pixel_spacing: tuple[float, float] = (1.0, 1.0),
                orientation: tuple[float, ...] | None = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
                rescale: tuple[float, float] | None = None, echo_time: float | None = None,
                acquisition: int | None = None, spacing: float | None = None) -> None:
    """One MR slice file of `series` whose first pixel lies at (*corner, z) mm (LPS); by default its rows run to the
    patient's left and its columns to posterior (`orientation` None: no ImageOrientationPatient). `pixels` of shape
    (rows, columns, 3) make an RGB colour slice. `rescale` (slope, intercept) stores `pixels` as unsigned numbers that
    its RescaleSlope and RescaleIntercept turn back into `pixels`' values; `echo_time` (ms) is its EchoTime,
    `acquisition` its AcquisitionNumber, `spacing` (mm) its SpacingBetweenSlices."""
    ds = _mr_file(MRImageStorage, series, description)
    if orientation is not None:
        ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.ImagePositionPatient = [*corner, z]
    ds.PixelSpacing, ds.SliceThickness = list(pixel_spacing), thickness
    ds.Rows, ds.Columns = pixels.shape[:2]
    if echo_time is not None:
        ds.EchoTime = echo_time
    if acquisition is not None:
        ds.AcquisitionNumber = acquisition
    if spacing is not None:
        ds.SpacingBetweenSlices = spacing
    if pixels.ndim == 3:
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = pixels.astype(np.uint8).tobytes()
    elif rescale is not None:
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = rescale
        ds.PixelData = np.round((pixels - rescale[1]) / rescale[0]).astype(np.uint16).tobytes()
    else:
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = pixels.astype(np.int16).tobytes()
    ds.save_as(folder / name, enforce_file_format=True)


def write_studies(root: Path, count: int, slices: int = 4) -> list[Path]:
    """`count` study folders in `root`, each a FLAIR series of `slices` small slices: a folder of DICOM studies."""
    studies = [root / f"study{k}" for k in range(count)]
    for study in studies:
        study.mkdir(parents=True)
        series = generate_uid()
        for z in range(slices):
            write_slice(study, f"{z:03d}.dcm", series, "AX FLAIR", 2.5 * z, np.full((6, 8), z))
    return studies


def write_multiframe(path: Path, heights: list[float], shape: tuple[int, int] = (6, 8)) -> None:
    """One enhanced MR file holding a frame per height in `heights` (mm), each frame's position in its own group."""
    ds = _mr_file(EnhancedMRImageStorage, generate_uid(), "AX FLAIR")
    ds.Rows, ds.Columns, ds.NumberOfFrames = *shape, len(heights)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    orientation, measures = Dataset(), Dataset()
    orientation.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    measures.PixelSpacing, measures.SliceThickness = [1.0, 1.0], 2.5
    shared = Dataset()
    shared.PlaneOrientationSequence, shared.PixelMeasuresSequence = Sequence([orientation]), Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for z in heights:
        position, frame = Dataset(), Dataset()
        position.ImagePositionPatient = [-10.0, -20.0, float(z)]
        frame.PlanePositionSequence = Sequence([position])
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = np.zeros((len(heights), *shape), np.int16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def counting_gdcm_scans(monkeypatch) -> Counter:
    """Each of GDCM's folder scans (every file's header read once): the series IDs, and each series' files."""
    from napari_lgg_unet.engine.volumes import sitk

    scans: Counter = Counter()
    reader = sitk.ImageSeriesReader
    ids, names = reader.GetGDCMSeriesIDs, reader.GetGDCMSeriesFileNames

    def series_ids(folder, *args, **kwargs):
        scans[folder] += 1
        return ids(folder, *args, **kwargs)

    def series_files(folder, uid, *args, **kwargs):
        scans[folder, uid] += 1
        return names(folder, uid, *args, **kwargs)

    monkeypatch.setattr(reader, "GetGDCMSeriesIDs", staticmethod(series_ids))
    monkeypatch.setattr(reader, "GetGDCMSeriesFileNames", staticmethod(series_files))
    return scans
