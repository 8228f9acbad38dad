"""Reader, writer and sample data: what File > Open, File > Save and File > Open Sample give."""

from __future__ import annotations

import numpy as np
import tifffile

from napari_lgg_unet.reader import get_reader
from napari_lgg_unet.sample_data import sample_patient
from napari_lgg_unet.writer import write_labels

PATIENT = "TCGA_CS_6665_20010817"


def test_a_patient_folder_opens_as_an_image_and_its_tumour_labels(lgg_root):
    layers = get_reader(str(lgg_root / PATIENT))(str(lgg_root / PATIENT))
    (image, image_meta, image_kind), (mask, mask_meta, mask_kind) = layers
    assert (image_kind, mask_kind) == ("image", "labels")
    assert image.shape == (24, 256, 256, 3) and image_meta == {"name": PATIENT, "rgb": True}
    assert mask.shape == (24, 256, 256) and mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert mask_meta["name"] == f"{PATIENT} mask"


def test_a_tiff_stack_opens_as_an_image_and_other_files_are_left_to_other_readers(tmp_path):
    stack = np.arange(2 * 8 * 8, dtype=np.uint16).reshape(2, 8, 8)
    tifffile.imwrite(tmp_path / "scan.tif", stack)
    [(data, meta, kind)] = get_reader(str(tmp_path / "scan.tif"))(str(tmp_path / "scan.tif"))
    assert kind == "image" and meta["rgb"] is False
    np.testing.assert_array_equal(data, stack)
    (tmp_path / "notes.txt").write_text("x")
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path)) is None  # a folder without slices


def test_labels_written_by_the_writer_read_back_as_the_same_mask(tmp_path):
    labels = np.zeros((3, 16, 16), np.uint8)
    labels[1, 4:9, 2:7] = 1
    labels[2, 0, 0] = 3
    [written] = write_labels(str(tmp_path / "case_mask"), labels, {})
    assert written.endswith("case_mask.tif")
    on_disk = tifffile.imread(written)
    assert on_disk.dtype == np.uint8 and set(np.unique(on_disk)) == {0, 255}
    [(data, _, kind)] = get_reader(written)(written)
    assert kind == "labels"
    np.testing.assert_array_equal(data, labels > 0)


def test_sample_data_is_the_real_patient_with_its_mask(lgg_root):
    from napari_lgg_unet.engine.io import load_patient

    (image, meta, _), (mask, _, kind) = sample_patient()
    scan = load_patient(lgg_root / PATIENT)
    assert kind == "labels" and meta["rgb"] is True
    np.testing.assert_array_equal(image, scan.image)
    np.testing.assert_array_equal(mask > 0, scan.mask)


def _nifti_case(folder, affine):
    import nibabel as nib

    folder.mkdir()
    world = np.indices((5, 6, 4)).sum(axis=0).astype(np.int16)
    for sequence in ("flair", "t1", "t1ce"):
        nib.save(nib.Nifti1Image(world, affine), folder / f"{folder.name}_{sequence}.nii.gz")
    seg = np.zeros((5, 6, 4), np.uint8)
    seg[1:3, 2:4, 1] = 2
    nib.save(nib.Nifti1Image(seg, affine), folder / f"{folder.name}_seg.nii.gz")
    return folder


ANISOTROPIC = np.array([[-0.9, 0, 0, 10], [0, 0, 3.0, -5], [0, 1.2, 0, 7], [0, 0, 0, 1]])


def test_a_nifti_case_opens_with_mm_scale_axis_labels_and_saves_back_on_its_grid(tmp_path):
    import nibabel as nib

    case = _nifti_case(tmp_path / "case", ANISOTROPIC)
    (image, image_meta, kind), (labels, labels_meta, labels_kind) = get_reader(str(case))(str(case))
    assert (kind, labels_kind) == ("image", "labels") and image_meta["rgb"] is True
    assert image.shape[:3] == labels.shape and image_meta["scale"] == labels_meta["scale"]
    np.testing.assert_allclose(image_meta["scale"], (1.2, 3.0, 0.9), rtol=1e-6)  # (S, P, L) axes, mm
    assert image_meta["units"] == ("mm",) * 3 and len(image_meta["axis_labels"]) == 3
    # Saving the labels layer (its state as napari hands it to the writer) gives the seg's grid back.
    [written] = write_labels(str(tmp_path / "out.nii.gz"), labels, labels_meta)
    source = nib.load(case / "case_seg.nii.gz")
    np.testing.assert_array_equal(nib.load(written).affine, source.affine)
    np.testing.assert_array_equal(np.asanyarray(nib.load(written).dataobj), np.asanyarray(source.dataobj) > 0)


def test_separate_sequence_files_open_as_grey_layers_that_stack_into_the_case_image(tmp_path):
    case = _nifti_case(tmp_path / "case", ANISOTROPIC)
    [(case_image, _, _), _] = get_reader(str(case))(str(case))
    layers = {}
    for sequence in ("t1", "flair", "t1ce"):
        path = str(case / f"case_{sequence}.nii.gz")
        [(data, meta, kind)] = get_reader(path)(path)
        assert kind == "image" and meta["rgb"] is False
        layers[sequence] = data
    np.testing.assert_array_equal(np.stack([layers[s] for s in ("t1", "flair", "t1ce")], axis=-1), case_image)
    seg = str(case / "case_seg.nii.gz")
    [(mask, _, kind)] = get_reader(seg)(seg)
    assert kind == "labels" and mask.shape == case_image.shape[:3] and set(np.unique(mask)) == {0, 1}


def test_labels_without_geometry_save_as_nifti_with_their_scale(tmp_path):
    import nibabel as nib

    labels = np.zeros((3, 4, 5), np.uint8)
    labels[1, 2, 3] = 1
    [written] = write_labels(str(tmp_path / "m.nii"), labels, {"scale": (2.0, 0.5, 0.5), "metadata": {}})
    assert nib.load(written).header.get_zooms() == (2.0, 0.5, 0.5)  # stored in the layer's own axis order
    [(data, meta, _)] = get_reader(written)(written)
    np.testing.assert_array_equal(data, labels)
    assert tuple(meta["scale"]) == (2.0, 0.5, 0.5)


def test_the_manifest_in_the_source_tree_offers_nifti_to_the_reader_and_writer():
    from importlib import resources

    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(str(resources.files("napari_lgg_unet") / "napari.yaml"))
    assert "*.nii.gz" in manifest.contributions.readers[0].filename_patterns
    assert ".nii.gz" in manifest.contributions.writers[0].filename_extensions


def test_labels_whose_stored_geometry_holds_nan_are_refused_and_nothing_is_written(tmp_path):
    import pytest

    from napari_lgg_unet.engine.errors import InputError
    from napari_lgg_unet.reader import GEOMETRY_KEY

    affine = np.eye(4)
    affine[0, 0] = np.nan
    stored = {"shape": [4, 4, 2], "affine": affine.tolist()}
    with pytest.raises(InputError, match=r"scan geometry \(its metadata\): its voxel-to-mm geometry holds NaN"):
        write_labels(str(tmp_path / "m.nii.gz"), np.zeros((2, 4, 4), np.uint8), {"metadata": {GEOMETRY_KEY: stored}})
    assert not list(tmp_path.iterdir())
