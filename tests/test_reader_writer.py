"""Reader, writer and sample data: what File > Open, File > Save and File > Open Sample give."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_lgg_unet.engine.errors import InputError
from napari_lgg_unet.reader import get_reader
from napari_lgg_unet import sample_data
from napari_lgg_unet.sample_data import sample_folder, sample_patient
from napari_lgg_unet.writer import write_labels

PATIENT = "TCGA_CS_6665_20010817"


def test_a_patient_folder_opens_as_an_image_and_its_tumour_labels(lgg_root):
    layers = get_reader(str(lgg_root / PATIENT))(str(lgg_root / PATIENT))
    (image, image_meta, image_kind), (mask, mask_meta, mask_kind) = layers
    assert (image_kind, mask_kind) == ("image", "labels")
    assert image.shape == (24, 256, 256, 3) and image_meta["name"] == PATIENT and image_meta["rgb"] is True
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



def test_a_scan_saved_as_a_mask_tiff_is_refused_not_opened_as_all_tumour(tmp_path):
    """The sample's FLAIR saved as `_mask.tif`: opened as labels > 0, 59 % of the patient was tumour, a ground truth
    the Segment widget then scored against; volume label files were refused so, TIFF masks were not checked at all."""
    flair = tifffile.imread(sample_folder() / f"{PATIENT}_image.tif")[..., 1]
    tifffile.imwrite(tmp_path / f"{PATIENT}_mask.tif", flair)
    path = str(tmp_path / f"{PATIENT}_mask.tif")
    with pytest.raises(InputError, match=f"{PATIENT}_mask.tif holds 251 distinct values; a tumour mask holds at "
                                         "most 16"):
        get_reader(path)(path)
    path = str(sample_folder() / f"{PATIENT}_mask.tif")  # the real mask, 0/1, opens as its labels
    [(data, _, kind)] = get_reader(path)(path)
    assert kind == "labels" and set(np.unique(data)) == {0, 1}

def test_sample_data_is_the_real_patient_with_its_mask(lgg_root):
    from napari_lgg_unet.engine.io import load_patient

    (image, meta, _), (mask, _, kind) = sample_patient()
    scan = load_patient(lgg_root / PATIENT)
    assert kind == "labels" and meta["rgb"] is True
    np.testing.assert_array_equal(image, scan.image)
    np.testing.assert_array_equal(mask > 0, scan.mask)


def test_the_packaged_sample_is_never_saved_over(tmp_path, monkeypatch):
    # on a copy of the packaged folder: without the protection this test would overwrite the package's own sample
    folder = shutil.copytree(sample_folder(), tmp_path / "samples")
    monkeypatch.setattr(sample_data, "sample_folder", lambda: folder)
    (image, _, _), (mask, mask_meta, _) = sample_patient()
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    for name in (f"{PATIENT}_image.tif", f"{PATIENT}_mask.tif"):
        with pytest.raises(InputError, match="not saved"):
            write_labels(str(folder / name), mask, mask_meta)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    [written] = write_labels(str(tmp_path / "mine.tif"), mask, mask_meta)  # outside the sample's files is fine
    assert Path(written).is_file()


def test_a_mask_is_not_saved_under_a_name_that_joins_its_loose_scans_case(tmp_path):
    import nibabel as nib

    (tmp_path / "loose").mkdir()
    flair = tmp_path / "loose" / "X_flair.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((5, 6, 4), np.int16), np.eye(4)), str(flair))
    [(_, meta, _)] = get_reader(str(flair))(str(flair))
    labels_meta = {"metadata": meta["metadata"], "scale": meta.get("scale")}
    with pytest.raises(InputError, match="not saved"):
        write_labels(str(tmp_path / "loose" / "X_t1c.nii.gz"), np.zeros((4, 6, 5), np.uint8), labels_meta)
    assert sorted(p.name for p in (tmp_path / "loose").iterdir()) == ["X_flair.nii.gz"]


@pytest.mark.parametrize("name", ["P_mask.tif", "P_seg.tif", "P_label.tiff", "P-labels.tif", "P_SEGMENTATION.TIF"])
def test_a_tiff_named_as_labels_opens_as_labels_as_a_volume_so_named_does(tmp_path, name):
    """The reader promised `_seg` and `_label` TIFFs open as labels, as volumes so named do: only `_mask` did, the
    others opened as grey images, not as the mask they are."""
    mask = np.zeros((2, 8, 8), np.uint8)
    mask[1, 2:4, 2:4] = 255
    tifffile.imwrite(tmp_path / name, mask)
    [(data, meta, kind)] = get_reader(str(tmp_path / name))(str(tmp_path / name))
    assert kind == "labels" and meta["name"] == Path(name).stem
    np.testing.assert_array_equal(data, mask > 0)


def test_a_mask_opened_and_corrected_is_saved_under_another_name_not_over_itself(tmp_path):
    tifffile.imwrite(tmp_path / "P_image.tif", np.zeros((2, 8, 8, 3), np.uint8))
    tifffile.imwrite(tmp_path / "P_mask.tif", np.zeros((2, 8, 8), np.uint8))
    [(data, meta, kind)] = get_reader(str(tmp_path / "P_mask.tif"))(str(tmp_path / "P_mask.tif"))
    assert kind == "labels"
    with pytest.raises(InputError, match="is the file this layer was opened from .* save under another name"):
        write_labels(str(tmp_path / "P_mask.tif"), np.ones_like(data), {"metadata": meta["metadata"]})
    assert not tifffile.imread(tmp_path / "P_mask.tif").any()
    [written] = write_labels(str(tmp_path / "P_mask_corrected.tif"), np.ones_like(data), {"metadata": meta["metadata"]})
    assert tifffile.imread(written).all()


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


def _by_name(layers: list[tuple]) -> dict[str, tuple]:
    return {meta["name"]: (data, meta, kind) for data, meta, kind in layers}


def test_a_nifti_case_opens_with_mm_scale_axis_labels_and_saves_back_on_its_grid(tmp_path):
    import nibabel as nib

    case = _nifti_case(tmp_path / "case", ANISOTROPIC)
    layers = _by_name(get_reader(str(case))(str(case)))
    (image, image_meta, kind), (labels, labels_meta, labels_kind) = layers["FLAIR"], layers["case mask"]
    assert (kind, labels_kind) == ("image", "labels") and image_meta["rgb"] is False
    assert image.shape == labels.shape and image_meta["scale"] == labels_meta["scale"]
    np.testing.assert_allclose(image_meta["scale"], (1.2, 3.0, 0.9), rtol=1e-6)  # (S, P, L) axes, mm
    assert image_meta["units"] == ("mm",) * 3 and len(image_meta["axis_labels"]) == 3
    # Saving the labels layer (its state as napari hands it to the writer) gives the seg's grid back.
    [written] = write_labels(str(tmp_path / "out.nii.gz"), labels, labels_meta)
    source = nib.load(case / "case_seg.nii.gz")
    np.testing.assert_array_equal(nib.load(written).affine, source.affine)
    np.testing.assert_array_equal(np.asanyarray(nib.load(written).dataobj), np.asanyarray(source.dataobj) > 0)


@pytest.mark.parametrize("extra", [(1,), (1, 1)])
def test_a_label_file_with_trailing_axes_of_one_opens_as_its_3d_labels(tmp_path, extra):
    """Some tools write a 3D label map as (X, Y, Z, 1) or (X, Y, Z, 1, 1); it opens as the labels it holds, on its
    own and as its case's mask, not as an error."""
    import nibabel as nib

    case = _nifti_case(tmp_path / "case", ANISOTROPIC)
    seg = case / "case_seg.nii.gz"
    [(plain, plain_meta, _)] = get_reader(str(seg))(str(seg))
    source = nib.load(seg)
    nib.save(nib.Nifti1Image(np.asanyarray(source.dataobj).reshape(*source.shape, *extra), ANISOTROPIC), seg)
    [(labels, meta, kind)] = get_reader(str(seg))(str(seg))
    assert kind == "labels" and meta["scale"] == plain_meta["scale"]
    np.testing.assert_array_equal(labels, plain)
    np.testing.assert_array_equal(_by_name(get_reader(str(case))(str(case)))["case mask"][0], plain)


def test_labels_named_before_their_sequence_open_as_labels_alone_and_as_the_cases_mask(tmp_path):
    """`case_seg_flair.nii.gz` (the labels word first, then the sequence drawn on) opened as a grey FLAIR image, and
    in its folder as the FLAIR of a case `case_seg`, a mask segmented as a scan."""
    case = _nifti_case(tmp_path / "case", ANISOTROPIC)
    seg = case / "case_seg.nii.gz"
    [(plain, _, _)] = get_reader(str(seg))(str(seg))
    renamed = seg.rename(case / "case_seg_flair.nii.gz")
    [(labels, _, kind)] = get_reader(str(renamed))(str(renamed))
    assert kind == "labels"
    np.testing.assert_array_equal(labels, plain)
    layers = _by_name(get_reader(str(case))(str(case)))
    assert list(layers) == ["T1c", "T1", "FLAIR", "case mask"]
    np.testing.assert_array_equal(layers["case mask"][0], plain)


def test_a_case_opens_as_one_grey_layer_per_sequence_flair_visible_on_top(tmp_path):
    case = _nifti_case(tmp_path / "case", ANISOTROPIC)
    layers = get_reader(str(case))(str(case))
    assert [meta["name"] for _, meta, _ in layers] == ["T1c", "T1", "FLAIR", "case mask"]  # the last drawn on top
    assert [meta.get("visible", True) for _, meta, _ in layers] == [False, False, True, True]
    assert all(meta["rgb"] is False for _, meta, kind in layers if kind == "image")
    # Each layer is the file of its sequence, opened on its own.
    for name, sequence in (("T1c", "t1ce"), ("T1", "t1"), ("FLAIR", "flair")):
        path = str(case / f"case_{sequence}.nii.gz")
        [(alone, _, _)] = get_reader(path)(path)
        np.testing.assert_array_equal(_by_name(layers)[name][0], alone)


def test_the_layers_translate_and_scale_put_each_voxel_where_the_affine_says(tmp_path):
    import nibabel as nib

    shape = (5, 6, 4)
    nib.save(nib.Nifti1Image(np.arange(np.prod(shape), dtype=np.int16).reshape(shape), ANISOTROPIC),
             tmp_path / "scan_flair.nii.gz")
    [(data, meta, _)] = get_reader(str(tmp_path / "scan_flair.nii.gz"))(str(tmp_path / "scan_flair.nii.gz"))
    for index in np.ndindex(data.shape):
        source = np.unravel_index(int(data[index]), shape)
        right, anterior, superior = (ANISOTROPIC @ [*source, 1])[:3]
        world = np.asarray(meta["translate"]) + np.asarray(meta["scale"]) * index
        np.testing.assert_allclose(world, (superior, -anterior, -right), atol=1e-9)  # napari's (S, P, L) axes


def test_a_brats_case_opens_as_flair_t1_t1c_t2_on_one_grid(brats_case):
    from napari_lgg_unet.engine.io import load_scan

    layers = _by_name(get_reader(str(brats_case))(str(brats_case)))
    assert set(layers) == {"FLAIR", "T1", "T1c", "T2", f"{brats_case.name} mask"}
    scan = load_scan(brats_case)
    for name, channel in (("T1", 0), ("FLAIR", 1), ("T1c", 2)):
        np.testing.assert_array_equal(layers[name][0], scan.image[..., channel])
    assert {tuple(meta["translate"]) for _, meta, _ in layers.values()} == {scan.geometry.origin}
    assert layers["T2"][0].shape == scan.image.shape[:3]


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


@pytest.mark.parametrize("name", ["case_flair", "case_flair.nii.gz", "case_seg.nii.gz", "case_t1.nii.gz"])
def test_a_mask_is_never_saved_onto_a_file_of_the_scan_it_came_from(tmp_path, name):
    from napari_lgg_unet.engine.errors import InputError

    case = _nifti_case(tmp_path / "case", ANISOTROPIC)
    files = {p: p.read_bytes() for p in case.iterdir()}
    image, meta, _ = _by_name(get_reader(str(case))(str(case)))["FLAIR"]
    with pytest.raises(InputError, match="the scan this layer comes from"):
        write_labels(str(case / name), (image > image.mean()).astype(np.uint8), meta)
    assert {p: p.read_bytes() for p in case.iterdir()} == files


def test_a_name_with_an_unknown_suffix_gets_the_mask_suffix_added_not_swapped(tmp_path):
    scan = tmp_path / "P_12.tif"
    tifffile.imwrite(scan, np.full((8, 8), 7, np.uint8))
    [written] = write_labels(str(tmp_path / "P_12.edited"), np.ones((8, 8), np.uint8), {})
    assert Path(written).name == "P_12.edited.tif" and (tifffile.imread(scan) == 7).all()


def test_a_file_the_added_mask_suffix_names_is_not_replaced_unasked(tmp_path):
    # napari's save dialog asked about `P_12.edited`, which does not exist; `P_12.edited.tif` is the user's
    earlier = tmp_path / "P_12.edited.tif"
    tifffile.imwrite(earlier, np.full((8, 8), 255, np.uint8))
    with pytest.raises(InputError, match="P_12.edited.tif exists .*no mask suffix"):
        write_labels(str(tmp_path / "P_12.edited"), np.zeros((8, 8), np.uint8), {})
    assert (tifffile.imread(earlier) == 255).all()
    [written] = write_labels(str(earlier), np.zeros((8, 8), np.uint8), {})  # named in full: replaced, as asked
    assert not tifffile.imread(written).any()


@pytest.mark.parametrize("name, data, meta, message", [
    ("m.tif", np.zeros(5, np.uint8), {}, "2 or 3 dimensions"),
    ("m.nii.gz", np.zeros((3, 4, 5), np.uint8), {"scale": (0.0, 1.0, 1.0)}, "not a voxel size"),
    ("m.nii.gz", np.zeros((3, 4, 5), np.uint8), {"scale": (np.nan, 1.0, 1.0)}, "not a voxel size"),
    ("m.nii.gz", np.zeros((3, 4, 5), np.uint8), {"scale": (1e308, 1e308, 1e308)}, "not a voxel size"),
    ("m.tif", np.array([[None, 1], [2, 3]], dtype=object), {}, "type object"),
    ("m.tif", np.zeros((4, 4), np.uint8), {"metadata": "not a dict"}, "metadata is a str"),
    ("m.tif", np.zeros((4, 4), np.uint8), {"metadata": {"lgg_unet_source": 5}}, "names its scan as 5"),
    # a tumour painted with -1 was saved as background: an empty mask file
    ("m.tif", np.array([[0, -1], [1, 0]], np.int8), {}, r"this layer holds values below 0 \(such as -1\)"),
    ("m.nii.gz", np.full((3, 4, 5), -1, np.int32), {}, "this layer holds values below 0"),
    # saved, a file no reader here opens again ("holds no voxels"; for TIFF, one tifffile calls nonconformant)
    ("m.tif", np.zeros((0, 8, 8), np.uint8), {}, r"shape \(0, 8, 8\): it holds no voxels"),
    ("m.nii.gz", np.zeros((3, 0, 5), np.uint8), {}, r"shape \(3, 0, 5\): it holds no voxels"),
])
def test_a_layer_that_cannot_be_a_mask_file_is_refused_and_nothing_is_written(tmp_path, name, data, meta, message):
    from napari_lgg_unet.engine.errors import InputError

    with pytest.raises(InputError, match=message):
        write_labels(str(tmp_path / name), data, meta)
    assert not list(tmp_path.iterdir())


def _small_tiffs(folder: Path) -> dict[str, Path]:
    """A TIFF scan with its manual mask, named as the packaged sample is, and a Kaggle patient folder of 2 slices."""
    patient = folder / "TCGA_XX_0001_20000101"
    patient.mkdir(parents=True)
    files = {"scan": folder / f"{PATIENT}_image.tif", "manual mask": folder / f"{PATIENT}_mask.tif",
             "patient": patient, "slice": patient / f"{patient.name}_2.tif"}
    tifffile.imwrite(files["scan"], np.full((2, 8, 8), 7, np.uint8))
    tifffile.imwrite(files["manual mask"], np.eye(8, dtype=np.uint8)[None].repeat(2, 0) * 255)
    for number in (1, 2):
        tifffile.imwrite(patient / f"{patient.name}_{number}.tif", np.full((8, 8, 3), number, np.uint8))
        tifffile.imwrite(patient / f"{patient.name}_{number}_mask.tif", np.zeros((8, 8), np.uint8))
    return files


def _contents(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("opened, target", [
    ("scan", f"{PATIENT}_image.tif"), ("scan", f"{PATIENT}_mask.tif"), ("manual mask", f"{PATIENT}_mask.tif"),
    ("patient", "TCGA_XX_0001_20000101/TCGA_XX_0001_20000101_1.tif"),
    ("patient", "TCGA_XX_0001_20000101/TCGA_XX_0001_20000101_2_mask.tif"),
    ("patient", "TCGA_XX_0001_20000101/my_edit.tif"),
    ("slice", "TCGA_XX_0001_20000101/TCGA_XX_0001_20000101_2.tif"),
    ("slice", "TCGA_XX_0001_20000101/TCGA_XX_0001_20000101_2_mask.tif"),
])
def test_a_layer_read_from_a_tiff_scan_is_never_saved_onto_or_into_that_scan(tmp_path, opened, target):
    from napari_lgg_unet.engine.errors import InputError

    path = str(_small_tiffs(tmp_path)[opened])
    files = _contents(tmp_path)
    for data, meta, _ in get_reader(path)(path):
        with pytest.raises(InputError, match="the scan this layer comes from"):
            write_labels(str(tmp_path / target), (np.asarray(data) > 0).any(axis=-1) if data.ndim == 4 else data, meta)
    assert _contents(tmp_path) == files
    assert Path(write_labels(str(tmp_path / "edited_mask.tif"), np.ones((2, 8, 8), np.uint8), meta)[0]).is_file()


@pytest.mark.parametrize("opened", ["case", "case/case_flair.nii.gz"])
@pytest.mark.parametrize("name", ["my_edit.nii.gz", "case_t1c.nii.gz"])
def test_a_mask_is_never_saved_into_the_case_folder_of_its_scan(tmp_path, opened, name):
    """A new file in a case folder would become one of the case's files (a second case, or a second post-contrast
    T1 that makes the case unreadable)."""
    from napari_lgg_unet.engine.errors import InputError

    case = _nifti_case(tmp_path / "case", ANISOTROPIC)
    files = _contents(case)
    image, meta, _ = get_reader(str(tmp_path / opened))(str(tmp_path / opened))[0]
    with pytest.raises(InputError, match="the scan this layer comes from"):
        write_labels(str(case / name), (image > image.mean()).astype(np.uint8), meta)
    assert _contents(case) == files


def test_a_case_that_no_longer_reads_still_saves_elsewhere_and_stays_protected(tmp_path):
    import shutil

    from napari_lgg_unet.engine.errors import InputError

    case = _nifti_case(tmp_path / "case", ANISOTROPIC)
    path = str(case / "case_flair.nii.gz")
    image, meta, _ = get_reader(path)(path)[0]
    shutil.copy(case / "case_t1ce.nii.gz", case / "case_t1c.nii.gz")  # two post-contrast T1 files: unreadable
    files = _contents(case)
    mask = (image > image.mean()).astype(np.uint8)
    [written] = write_labels(str(tmp_path / "elsewhere.nii.gz"), mask, meta)
    assert Path(written).is_file()
    with pytest.raises(InputError, match="the scan this layer comes from"):
        write_labels(str(case / "case_flair.nii.gz"), mask, meta)
    assert _contents(case) == files


def test_opening_and_saving_through_napari_never_imports_torch(tmp_path):
    """napari calls the reader and the writer on the viewer's thread: importing torch there (1.2 s on 2 cores)
    froze the viewer for it at the first File > Open of a case or patient folder or a volume, or the first
    File > Save, of a session. A fresh process opens a case folder, a patient folder, a TIFF scan and its mask, and
    saves a mask as NIfTI and as TIFF."""
    import subprocess
    import sys

    case = _nifti_case(tmp_path / "case", ANISOTROPIC)
    tiffs = _small_tiffs(tmp_path / "tiffs")
    opened = [str(path) for path in (case, tiffs["patient"], tiffs["scan"], tiffs["manual mask"])]
    code = (
        "import sys\n"
        "from napari_lgg_unet.reader import get_reader\n"
        "from napari_lgg_unet.writer import write_labels\n"
        f"layers = [layer for path in {opened!r} for layer in get_reader(path)(path)]\n"
        "data, meta, _ = layers[3]\n"  # the case's labels
        f"write_labels({str(tmp_path / 'out.nii.gz')!r}, data, meta)\n"
        f"write_labels({str(tmp_path / 'out.tif')!r}, data, meta)\n"
        "print(len(layers), "
        "sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'segmentation_models_pytorch')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "out.nii.gz").is_file() and (tmp_path / "out.tif").is_file()
    assert out.stdout.strip() == "8 []"


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("unused_sform", [None, np.diag([2.0, 2.0, 2.0, 1.0])], ids=["zeros", "another matrix"])
def test_a_mask_saved_from_a_layer_keeps_its_scans_stored_header_and_voxel_order(tmp_path, unused_sform, version):
    """A NIfTI placed by its qform alone (sform_code 0) whose unused sform rows are zeros, as nibabel writes them, or
    hold another matrix, as a converter that unset one code leaves them: the mask saved from the layer the reader made
    has the scan's header field for field (its sform rows held the qform instead), and the voxel marked in the scan is
    the one marked in the mask. A NIfTI-2 scan's mask is NIfTI-2, as `write_mask` writes it."""
    import nibabel as nib

    from nifti_headers import assert_same_placement

    scan = np.zeros((6, 7, 5), np.int16)
    scan[1, 2, 3] = 100
    image = (nib.Nifti1Image if version == 1 else nib.Nifti2Image)(scan, None)
    image.set_qform(np.array([[0, -1.0, 0, 50], [0.9, 0, 0, 2], [0, 0, 3.0, -4], [0, 0, 0, 1]]), code=1)
    image.set_sform(unused_sform, code=0)
    nib.save(image, tmp_path / "scan.nii.gz")
    [(data, meta, _)] = get_reader(str(tmp_path / "scan.nii.gz"))(str(tmp_path / "scan.nii.gz"))
    [written] = write_labels(str(tmp_path / "out" / "m.nii.gz"), (data == 100).astype(np.uint8), meta)
    mask = nib.load(written)
    assert type(mask) is type(image)
    assert_same_placement(mask, nib.load(tmp_path / "scan.nii.gz"))
    assert np.argwhere(np.asanyarray(mask.dataobj)).tolist() == [[1, 2, 3]]


def test_a_layer_of_an_nrrd_scan_saved_without_a_suffix_is_an_nrrd_mask_on_its_grid(tmp_path):
    """As `predict` names an NRRD scan's mask `.nrrd` (a NIfTI's 32-bit header would move its origin), a layer read
    from one and saved under a name without a suffix gets `.nrrd`, on the scan's grid as ITK reads both."""
    import SimpleITK as sitk

    scan = sitk.GetImageFromArray(np.arange(3 * 6 * 5, dtype=np.int16).reshape(3, 6, 5))
    scan.SetOrigin((-90.123456789, 12.987654321, -7.5))
    sitk.WriteImage(scan, str(tmp_path / "scan.nrrd"))
    [(data, meta, _)] = get_reader(str(tmp_path / "scan.nrrd"))(str(tmp_path / "scan.nrrd"))
    [written] = write_labels(str(tmp_path / "edited"), (data == 7).astype(np.uint8), meta)
    assert written == str(tmp_path / "edited.nrrd")
    mask = sitk.ReadImage(written)
    assert (mask.GetOrigin(), mask.GetSpacing(), mask.GetDirection()) == (
        scan.GetOrigin(), scan.GetSpacing(), scan.GetDirection())
    assert np.argwhere(sitk.GetArrayFromImage(mask)).tolist() == [[0, 1, 2]]


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_a_labels_layer_opened_from_an_nrrd_or_mha_mask_saved_without_a_suffix_keeps_that_format_and_grid(
        tmp_path, suffix):
    """A mask file opened on its own grid, edited and saved without a suffix was written as `.nii.gz`: its geometry
    named no file, so its format fell back to NIfTI, whose 32-bit origin ITK then takes for another physical space."""
    import SimpleITK as sitk

    labels = sitk.GetImageFromArray((np.arange(3 * 6 * 5).reshape(3, 6, 5) % 2).astype(np.uint8))
    labels.SetSpacing((0.9, 1.1, 2.0))
    labels.SetOrigin((-90.123456789, 12.987654321, -7.5))
    sitk.WriteImage(labels, str(tmp_path / f"P1_mask{suffix}"))
    [(data, meta, kind)] = get_reader(str(tmp_path / f"P1_mask{suffix}"))(str(tmp_path / f"P1_mask{suffix}"))
    assert kind == "labels"
    [written] = write_labels(str(tmp_path / "P1_edited"), data, meta)
    assert written == str(tmp_path / f"P1_edited{suffix}")
    mask = sitk.ReadImage(written)
    assert (mask.GetOrigin(), mask.GetSpacing(), mask.GetDirection()) == (
        labels.GetOrigin(), labels.GetSpacing(), labels.GetDirection())
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), sitk.GetArrayFromImage(labels))


def test_a_layer_of_a_loose_nrrd_scan_saved_as_tiff_beside_it_is_refused_and_its_folder_still_reads(tmp_path):
    """A tumour layer saved as `scan_flair.tif` (the scan's name, `.tif`) beside the loose `scan_flair.nrrd` it was
    opened from was written, and the folder no longer read as scans; `scan_mask.nrrd` beside it (the case's mask when
    read again), or the TIFF elsewhere, saves."""
    import SimpleITK as sitk

    from napari_lgg_unet.engine.io import load_scan

    (tmp_path / "scans").mkdir()
    scan = tmp_path / "scans" / "scan_flair.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(3 * 6 * 5, dtype=np.int16).reshape(3, 6, 5)), str(scan))
    [(data, meta, _)] = get_reader(str(scan))(str(scan))
    mask = (data == 7).astype(np.uint8)
    with pytest.raises(InputError, match="not saved: .* is a TIFF beside the volume scan scan_flair.nrrd"):
        write_labels(str(tmp_path / "scans" / "scan_flair.tif"), mask, meta)
    assert [p.name for p in (tmp_path / "scans").iterdir()] == ["scan_flair.nrrd"]
    [written] = write_labels(str(tmp_path / "scans" / "scan_mask"), mask, meta)
    assert written == str(tmp_path / "scans" / "scan_mask.nrrd")
    write_labels(str(tmp_path / "edited.tif"), mask, meta)
    assert load_scan(tmp_path / "scans").mask is not None  # the folder reads, the mask beside it as the case's


def test_the_save_dialog_entry_the_docs_name_is_the_one_napari_lists_for_our_writer():
    """docs/napari.md told users to pick the 'napari-lgg-unet' entry of the save dialog's file-type list, which napari
    titles with the manifest's display name ('LGG U-Net')."""
    from napari.layers import Labels
    from napari.plugins._npe2 import file_extensions_string_for_layers
    from npe2 import PluginManager

    PluginManager.instance().discover()  # as napari does when it starts
    entries, writers = file_extensions_string_for_layers([Labels(np.zeros((2, 2), np.uint8))])
    [ours] = [entry for entry, writer in zip(entries.split(";;"), writers) if writer.command.startswith("napari-lgg")]
    title = ours.split(" (")[0]
    docs = (Path(__file__).parents[1] / "docs" / "napari.md").read_text()
    assert f"**{title}** entry" in docs and "**napari-lgg-unet** entry" not in docs


def test_a_name_without_a_suffix_saved_from_code_gets_napari_s_tif_as_the_docs_say(tmp_path):
    """docs/napari.md: from code, napari (npe2) adds a writer's first suffix, `.tif`, to a name without one, before
    our writer could give it the scan's format; the dialog with our entry picked passes the name as typed."""
    import SimpleITK as sitk
    from napari.layers import Labels
    from npe2 import PluginManager

    PluginManager.instance().discover()
    scan = tmp_path / "scans" / "scan_flair.nrrd"
    scan.parent.mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(3 * 6 * 5, dtype=np.int16).reshape(3, 6, 5)), str(scan))
    [(data, meta, _)] = get_reader(str(scan))(str(scan))
    layer = Labels((data == 7).astype(np.uint8), scale=meta["scale"], metadata=meta["metadata"])
    assert layer.save(str(tmp_path / "edited"), plugin="napari-lgg-unet") == [str(tmp_path / "edited.tif")]


def test_saving_onto_the_manual_mask_beside_the_layer_s_scan_is_refused_in_the_gui_s_words_not_the_cli_s(tmp_path):
    """The refusal said "--overwrite or not", a CLI flag a napari user never sees; napari's save dialog asks instead."""
    import nibabel as nib

    from napari_lgg_unet.engine.errors import InputError

    scan, mask = tmp_path / "a.nii.gz", tmp_path / "a_mask.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 2), np.int16), np.eye(4)), scan)
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 2), np.uint8), np.eye(4)), mask)
    [(image, meta, _)] = get_reader(str(scan))(str(scan))
    before = mask.read_bytes()
    with pytest.raises(InputError, match=r"is the manual mask read with the input \(a_mask.nii.gz") as refused:
        write_labels(str(mask), np.ones(image.shape, np.uint8), meta)
    assert "--overwrite" not in str(refused.value) and "even if you agree to replace it in the save dialog" in str(
        refused.value)
    assert mask.read_bytes() == before
