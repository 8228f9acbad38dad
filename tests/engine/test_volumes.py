"""NIfTI volumes and case folders: orientation, geometry kept through read -> write, channels, bad input.

Synthetic volumes hold their own world coordinates as intensities, so the right orientation is known without
trusting the code under test: along the engine's axes (Z, H, W) the RAS+ coordinates must move superior, posterior
and to the patient's left.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import warnings
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
from nibabel.affines import apply_affine

from napari_lgg_unet.engine.errors import InputError, InputWarning
from napari_lgg_unet.engine.io import find_scans, load_scan, write_mask
from nifti_headers import assert_same_placement

SHAPE = (6, 7, 5)


def _rotation(columns: list[tuple[int, int]], spacing, origin) -> np.ndarray:
    """Affine whose voxel axis i runs along RAS axis columns[i][0] with sign columns[i][1]."""
    affine = np.eye(4)
    affine[:3, :3] = 0
    for axis, ((world, sign), size) in enumerate(zip(columns, spacing)):
        affine[world, axis] = sign * size
    affine[:3, 3] = origin
    return affine


GEOMETRIES = {
    "RAS, 1 mm": _rotation([(0, 1), (1, 1), (2, 1)], (1, 1, 1), (0, 0, 0)),
    "flipped like BraTS (LPS)": _rotation([(0, -1), (1, -1), (2, 1)], (1, 1, 1), (0, 239, 0)),
    "permuted (coronal storage)": _rotation([(0, 1), (2, 1), (1, -1)], (1, 1, 1), (3, -2, 5)),
    "anisotropic, shifted origin": _rotation([(1, -1), (0, 1), (2, -1)], (0.5, 0.8, 3.0), (-90.0, 126.0, -72.0)),
}


def _world(shape, affine) -> np.ndarray:
    """RAS+ coordinates (..., 3) of every voxel, computed with nibabel alone."""
    return apply_affine(affine, np.stack(np.indices(shape), axis=-1))


def _save(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


@pytest.mark.parametrize("name", GEOMETRIES)
def test_volumes_come_out_as_axial_slices_anterior_up_right_on_the_left(tmp_path, name):
    affine = GEOMETRIES[name]
    world = _world(SHAPE, affine).astype(np.float32)
    for axis, direction in ((0, "x"), (1, "y"), (2, "z")):
        scan = load_scan(_save(tmp_path / f"{direction}.nii.gz", np.ascontiguousarray(world[..., axis]), affine))
        z, h, w = scan.spacing
        steps = {"x": (0, 0, -w), "y": (0, -h, 0), "z": (z, 0, 0)}[direction]  # left, posterior, superior
        for engine_axis, step in enumerate(steps):
            np.testing.assert_allclose(np.diff(scan.image, axis=engine_axis), step, atol=1e-4)
        assert scan.rgb is False and scan.mask is None
    # Z, H and W run along world z, y and x: each takes the voxel size of the source axis lying along that line.
    voxel = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    expected = [voxel[np.argmax(np.abs(affine[world, :3]))] for world in (2, 1, 0)]
    np.testing.assert_allclose(scan.spacing, expected, rtol=1e-6)
    assert scan.image.shape == tuple(SHAPE[np.argmax(np.abs(affine[world, :3]))] for world in (2, 1, 0))


@pytest.mark.parametrize("name", GEOMETRIES)
def test_masks_written_back_keep_the_source_shape_affine_and_voxels(tmp_path, name):
    affine = GEOMETRIES[name]
    world = _world(SHAPE, affine)
    flair = _save(tmp_path / "case_flair.nii.gz", world[..., 0].astype(np.float32), affine)
    truth = (world[..., 0] > np.median(world[..., 0])) & (world[..., 2] > np.median(world[..., 2]))
    scan = load_scan(flair)
    # The mask a model would give, made in the engine's layout from the engine image itself.
    engine_mask = scan.image > np.median(scan.image)
    engine_mask &= np.arange(scan.image.shape[0])[:, None, None] * scan.spacing[0] > np.median(
        np.arange(scan.image.shape[0]) * scan.spacing[0])
    for suffix in (".nii.gz", ".nii"):
        write_mask(tmp_path / suffix / f"m{suffix}", engine_mask, scan)
        written = nib.load(tmp_path / suffix / f"m{suffix}")
        assert written.shape == SHAPE and written.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(written.affine, nib.load(flair).affine)
        np.testing.assert_array_equal(np.asanyarray(written.dataobj) > 0, truth)
    assert load_scan(tmp_path / ".nii" / "m.nii").image.shape == scan.image.shape  # re-read: same layout


@pytest.mark.parametrize("extra", [(1,), (1, 1), (1, 1, 1)])
def test_a_volume_with_trailing_axes_of_one_reads_as_its_3d_volume_and_its_mask_lands_on_it(tmp_path, extra):
    """Some tools write a 3D scan as (X, Y, Z, 1, 1): the same voxels as the 3D file. Its mask is written 3D, the
    mask's natural shape, with the scan's affine, so it overlays the scan in any viewer."""
    affine = GEOMETRIES["anisotropic, shifted origin"]
    voxels = _world(SHAPE, affine)[..., 0].astype(np.float32)
    plain = load_scan(_save(tmp_path / "plain_flair.nii.gz", voxels, affine))
    padded = _save(tmp_path / "padded_flair.nii.gz", voxels.reshape(*SHAPE, *extra), affine)
    assert nib.load(padded).shape == (*SHAPE, *extra)
    scan = load_scan(padded)
    np.testing.assert_array_equal(scan.image, plain.image)
    assert scan.rgb is False and scan.spacing == plain.spacing
    write_mask(tmp_path / "mask.nii.gz", scan.image > np.median(scan.image), scan)
    written = nib.load(tmp_path / "mask.nii.gz")
    assert written.shape == SHAPE
    np.testing.assert_array_equal(written.affine, nib.load(padded).affine)
    np.testing.assert_array_equal(np.asanyarray(written.dataobj) > 0, voxels > np.median(voxels))


@pytest.mark.parametrize("extra", [(1,), (1, 1)])
def test_labels_with_trailing_axes_of_one_read_as_their_3d_mask(tmp_path, extra):
    """A mask written as (X, Y, Z, 1) or (X, Y, Z, 1, 1), as its scan may be, is the same 3D mask: it was refused as
    'a label volume must be 3D' while its scan of that shape was read."""
    affine = GEOMETRIES["anisotropic, shifted origin"]
    seg = np.zeros(SHAPE, np.uint8)
    seg[1, 2, 3] = seg[2, 3, 4] = 1
    masks = {}
    for name, stored in (("plain", seg), ("padded", seg.reshape(*SHAPE, *extra))):
        (tmp_path / name).mkdir()
        _save(tmp_path / name / "case_flair.nii.gz", _world(SHAPE, affine)[..., 0].astype(np.float32), affine)
        _save(tmp_path / name / "case_seg.nii.gz", stored, affine)
        masks[name] = load_scan(tmp_path / name, require_mask=True).mask
    np.testing.assert_array_equal(masks["padded"], masks["plain"])
    assert masks["padded"].sum() == 2


def test_brats_style_case_folder_stacks_t1_flair_t1ce_and_reads_seg_as_whole_tumour(tmp_path):
    affine = GEOMETRIES["flipped like BraTS (LPS)"]
    case = tmp_path / "Brats_X"
    case.mkdir()
    for value, sequence in enumerate(("t1", "flair", "t1ce", "t2"), start=1):
        _save(case / f"Brats_X_{sequence}.nii.gz", np.full(SHAPE, value, np.int16), affine)
    seg = np.zeros(SHAPE, np.uint8)
    seg[1, 2, 3], seg[2, 3, 4] = 2, 4
    _save(case / "Brats_X_seg.nii.gz", seg, affine)
    scan = load_scan(case, require_mask=True)
    assert scan.name == "Brats_X" and scan.rgb and scan.image.dtype == np.int16
    assert [int(scan.image[..., c].max()) for c in range(3)] == [1, 2, 3]  # (pre-contrast, FLAIR, post-contrast)
    assert scan.mask.sum() == 2 and scan.image.shape[:3] == scan.mask.shape
    assert [s.name for s in find_scans(tmp_path)] == ["Brats_X"]


def test_brats_2023_names_and_missing_contrast_are_filled_with_flair(tmp_path):
    affine = GEOMETRIES["RAS, 1 mm"]
    _save(tmp_path / "BraTS-GLI-00001-000-t2f.nii.gz", np.full(SHAPE, 7, np.int16), affine)
    _save(tmp_path / "BraTS-GLI-00001-000-t1n.nii.gz", np.full(SHAPE, 1, np.int16), affine)
    scan = load_scan(tmp_path)
    assert scan.name == "BraTS-GLI-00001-000" and scan.rgb
    assert [int(scan.image[..., c].max()) for c in range(3)] == [1, 7, 7]


def test_sequences_on_a_coarser_grid_are_resampled_onto_flair(tmp_path):
    fine = GEOMETRIES["RAS, 1 mm"]
    coarse = _rotation([(0, 1), (1, 1), (2, 1)], (2, 2, 2), (0, 0, 0))
    _save(tmp_path / "flair.nii.gz", np.zeros(SHAPE, np.float32), fine)
    coarse_shape = tuple(n // 2 + 1 for n in SHAPE)
    _save(tmp_path / "t1.nii.gz", _world(coarse_shape, coarse)[..., 2].astype(np.float32), coarse)
    scan = load_scan(tmp_path)
    # The T1 channel now holds, on FLAIR's grid, its own world z (linear interpolation is exact for a ramp).
    expected = load_scan(_save(tmp_path / "z.nii.gz", _world(SHAPE, fine)[..., 2].astype(np.float32), fine)).image
    np.testing.assert_allclose(scan.image[..., 0], expected, atol=1e-4)


def test_4d_files_split_into_channels_by_dataset_json_or_by_the_model_order(tmp_path):
    affine = GEOMETRIES["RAS, 1 mm"]
    images = tmp_path / "Task01" / "imagesTr"
    images.mkdir(parents=True)
    four = np.stack([np.full(SHAPE, v, np.float32) for v in (10, 20, 30, 40)], axis=-1)
    _save(images / "BRATS_001.nii.gz", four, affine)
    (tmp_path / "Task01" / "dataset.json").write_text(json.dumps(
        {"modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}}))
    (tmp_path / "Task01" / "labelsTr").mkdir()
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:4, 1:3, 1:3] = 1
    _save(tmp_path / "Task01" / "labelsTr" / "BRATS_001.nii.gz", labels, affine)
    [case] = find_scans(tmp_path / "Task01")
    scan = load_scan(case, require_mask=True)
    assert [int(scan.image[..., c].max()) for c in range(3)] == [20, 10, 30] and scan.mask.sum() == labels.sum()
    three = _save(tmp_path / "three.nii.gz", four[..., :3], affine)
    assert [int(load_scan(three).image[..., c].max()) for c in range(3)] == [10, 20, 30]


def test_nnunet_ignore_label_voxels_are_refused_as_ground_truth_and_left_out_where_none_is_needed(tmp_path):
    """nnU-Net v2's sparse annotations: label 2 marks voxels nobody labelled. Read as > 0 they were tumour."""
    affine = GEOMETRIES["RAS, 1 mm"]
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    (tmp_path / "dataset.json").write_text(json.dumps(
        {"channel_names": {"0": "FLAIR"}, "labels": {"background": 0, "tumour": 1, "ignore": 2}}))
    _save(tmp_path / "imagesTr" / "c1_0000.nii.gz", np.ones(SHAPE, np.int16), affine)
    labels = np.full(SHAPE, 2, np.uint8)
    labels[1:3, 1:3, 1], labels[4:, 4:] = 1, 0
    _save(tmp_path / "labelsTr" / "c1.nii.gz", labels, affine)
    [case] = find_scans(tmp_path, require_masks=True)
    with pytest.raises(InputError, match="c1.nii.gz marks voxels with dataset.json's ignore label 2"):
        load_scan(case, require_mask=True)
    with pytest.warns(InputWarning, match="c1 is read without its manual mask .* ignore label 2"):
        scan = load_scan(case)  # segmenting and viewing read no ground truth: not these labels, whose 2s were tumour
    assert scan.mask is None and scan.image.shape[:3] == (SHAPE[2], SHAPE[1], SHAPE[0])


def test_nnunet_channel_files_follow_the_channel_names_of_dataset_json(tmp_path):
    affine = GEOMETRIES["RAS, 1 mm"]
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    (tmp_path / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T1", "1": "T1c", "2": "FLAIR"}}))
    for case in ("c1", "c2"):
        for channel, value in enumerate((1, 3, 2)):
            _save(tmp_path / "imagesTr" / f"{case}_{channel:04d}.nii.gz", np.full(SHAPE, value, np.int16), affine)
        _save(tmp_path / "labelsTr" / f"{case}.nii.gz", np.eye(SHAPE[0], SHAPE[1], dtype=np.uint8)[..., None]
              .repeat(SHAPE[2], 2) * 2, affine)
    cases = find_scans(tmp_path)
    assert [c.name for c in cases] == ["c1", "c2"]
    scan = load_scan(cases[1], require_mask=True)
    assert ([int(scan.image[..., c].max()) for c in range(3)] == [1, 2, 3]
            and scan.mask.sum() == min(SHAPE[:2]) * SHAPE[2])
    assert load_scan(tmp_path / "imagesTr" / "c1_0001.nii.gz").name == "c1"  # a channel file brings its case


def _truncated(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    return path


@pytest.mark.parametrize("problem, make, message", [
    ("2D", lambda d: _save(d / "flat.nii", np.zeros((8, 8), np.float32), np.eye(4)), "2D image"),
    ("5D", lambda d: _save(d / "five.nii", np.zeros((4, 4, 4, 2, 2), np.float32), np.eye(4)), "5 dimensions"),
    ("5D, one channel of two", lambda d: _save(d / "five.nii", np.zeros((4, 4, 4, 1, 2), np.float32), np.eye(4)),
     "5 dimensions"),
    ("header lies", lambda d: _truncated(_save(d / "short.nii", np.zeros((8, 8, 8), np.float32), np.eye(4))),
     "cannot read"),
    ("no FLAIR", lambda d: [_save(d / f"{s}.nii.gz", np.zeros(SHAPE, np.int16), np.eye(4)) for s in ("t1", "t2")]
     and d, "no FLAIR"),
    ("4 unnamed channels", lambda d: _save(d / "four.nii", np.zeros((*SHAPE, 4), np.float32), np.eye(4)),
     "no dataset.json"),
])
def test_bad_volumes_are_one_line_input_errors(tmp_path, problem, make, message):
    with pytest.raises(InputError, match=message) as error:
        load_scan(make(tmp_path))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("description, message", [
    ([1, 2, 3], "dataset.json is no nnU-Net dataset description: it holds an array, not an object"),
    ("FLAIR", "dataset.json is no nnU-Net dataset description: it holds a string"),
    ({"channel_names": ["FLAIR", "T1"]}, "dataset.json: its channel_names is an array, not an object of channel"),
    ({"modality": "FLAIR"}, "dataset.json: its modality is a string, not an object"),
    ({"channel_names": None}, "dataset.json: its channel_names is null"),
    (
        {"channel_names": {"flair": "FLAIR", "1": "T1"}},
        'its channel_names must be keyed by channel numbers .* "flair"$',
    ),
])
def test_a_dataset_json_of_the_wrong_shape_is_one_line_naming_the_file_and_the_fault(tmp_path, description, message):
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "dataset.json").write_text(json.dumps(description))
    _save(tmp_path / "imagesTr" / "c_0000.nii.gz", np.zeros(SHAPE, np.int16), np.eye(4))
    with pytest.raises(InputError, match=message) as error:
        find_scans(tmp_path)
    assert str(error.value).startswith(str(tmp_path / "dataset.json")) and "\n" not in str(error.value)


def _header_with(qform: np.ndarray | None, qform_code: int, sform: np.ndarray | None, sform_code: int,
                 zooms=(0.9, 1.2, 3.0), units: str = "mm") -> nib.Nifti1Image:
    image = nib.Nifti1Image(np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE), None)
    image.header.set_zooms(zooms)
    image.set_qform(qform, code=qform_code)
    image.set_sform(sform, code=sform_code)
    image.header.set_xyzt_units(units)
    return image


QFORM = _rotation([(0, -1), (1, 1), (2, 1)], (1.0, 1.0, 2.0), (50.0, 2.0, 3.0))
SFORM = _rotation([(0, 1), (1, 1), (2, 1)], (1.0, 1.0, 2.0), (1.0, 2.0, 3.0))
HEADERS = {  # ITK-based viewers (ITK-SNAP, 3D Slicer) read the qform of the first, and pixdim alone for the last
    "qform differs from the sform": lambda: _header_with(QFORM, 1, SFORM, 2),
    "qform only": lambda: _header_with(QFORM, 1, None, 0),
    # sform rows that no tool reads (code 0), as a converter that wrote both and unset one leaves them
    "qform only, unused sform rows stored": lambda: _header_with(QFORM, 1, SFORM, 0),
    "sform only": lambda: _header_with(None, 0, SFORM, 1),
    "neither: pixdim places the voxels": lambda: _header_with(None, 0, None, 0),
    # ITK scales a NIfTI in metres or microns to mm (nibabel does not): a mask in "mm" lay 1000 times off in ITK-SNAP
    "in metres": lambda: _header_with(QFORM / [[1000], [1000], [1000], [1]], 1, None, 0, units="meter"),
    "in microns": lambda: _header_with(None, 0, SFORM * [[1000], [1000], [1000], [1]], 1, units="micron"),
}


@pytest.mark.parametrize("name", HEADERS)
@pytest.mark.filterwarnings("ignore::napari_lgg_unet.engine.errors.InputWarning")  # "neither": see the next test
def test_a_mask_keeps_its_scans_qform_sform_and_pixdim_so_every_viewer_overlays_it(tmp_path, name):
    import SimpleITK as sitk

    nib.save(HEADERS[name](), tmp_path / "scan.nii.gz")
    scan = load_scan(tmp_path / "scan.nii.gz")
    write_mask(tmp_path / "out" / "m.nii.gz", scan.image > 0, scan)
    assert_same_placement(nib.load(tmp_path / "out" / "m.nii.gz"), nib.load(tmp_path / "scan.nii.gz"))
    by_itk = [sitk.ReadImage(str(path)) for path in (tmp_path / "scan.nii.gz", tmp_path / "out" / "m.nii.gz")]
    for read in ("GetOrigin", "GetDirection", "GetSpacing"):
        np.testing.assert_allclose(getattr(by_itk[1], read)(), getattr(by_itk[0], read)(), atol=1e-4, err_msg=read)


_SHEAR = np.array([[1.0, 0.2, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
ITK_HEADERS = HEADERS | {"sheared sform": lambda: _header_with(None, 0, SFORM @ _SHEAR, 1),
                         "sform only, pixdim alike": lambda: _header_with(None, 0, SFORM, 1, zooms=(1.0, 1.0, 2.0))}
# ITK reads the others otherwise: it follows the qform, or reads pixdim (0.9 x 1.2 x 3 mm) as the voxel size
ITK_PLACES_ALIKE = ("qform only", "qform only, unused sform rows stored", "in metres", "sform only, pixdim alike")


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
@pytest.mark.parametrize("name", ITK_HEADERS)
@pytest.mark.filterwarnings("ignore::napari_lgg_unet.engine.errors.InputWarning")  # "neither": no orientation
def test_an_nrrd_or_mha_mask_lands_where_itk_places_its_nifti_scan_or_is_refused(tmp_path, name, suffix):
    """An NRRD or MHA mask holds one placement, nibabel's. Where ITK-based viewers (3D Slicer, ITK-SNAP) place the
    NIfTI scan otherwise (a qform beside a different sform; no codes, pixdim read as LPS; pixdim's voxel size beside
    another sform's; a shear ITK cannot follow), the mask was written anyway and landed rotated, scaled or mirrored
    front to back on its scan there: it is refused, with .nii.gz advised, which keeps the scan's header and so
    overlays it in every tool."""
    import SimpleITK as sitk

    nib.save(ITK_HEADERS[name](), tmp_path / "scan.nii.gz")
    scan = load_scan(tmp_path / "scan.nii.gz")
    target = tmp_path / f"m{suffix}"
    if name not in ITK_PLACES_ALIKE:
        with pytest.raises(InputError, match=rf"^cannot write m{re.escape(suffix)}: its scan's NIfTI header .+; save "
                                             r"the mask as \.nii\.gz, which keeps the scan's header as it is$"):
            write_mask(target, scan.image > 0, scan)
        assert not target.exists()
        return
    write_mask(target, scan.image > 0, scan)
    by_itk = [sitk.ReadImage(str(path)) for path in (tmp_path / "scan.nii.gz", target)]
    for read in ("GetOrigin", "GetDirection", "GetSpacing"):
        np.testing.assert_allclose(getattr(by_itk[1], read)(), getattr(by_itk[0], read)(), atol=1e-4, err_msg=read)


def test_a_nifti_without_orientation_is_read_with_one_warning_that_says_what_was_assumed(tmp_path):
    """qform_code and sform_code 0: nibabel places the voxels by pixdim, ITK by its own default, so where the patient
    lies is a guess. The file is read (not refused), and the user is told, once, what the guess was and what the
    mask keeps."""
    scan_path = tmp_path / "case" / "scan.nii.gz"
    scan_path.parent.mkdir()
    nib.save(HEADERS["neither: pixdim places the voxels"](), scan_path)
    with pytest.warns(InputWarning) as told:
        scan = load_scan(scan_path)
    assert [str(w.message) for w in told] == [
        f"{scan_path} has no orientation (its qform_code and sform_code are 0): it is shown and segmented as if its "
        "voxel axes ran right to left, posterior to anterior and inferior to superior (nibabel's reading; ITK-based "
        "viewers read it otherwise), so check that the brain looks upright; its mask keeps the scan's voxel grid and "
        "header, codes 0 included, so any tool overlays the two alike"]
    assert nib.aff2axcodes(scan.geometry.matrix) == ("L", "A", "S")  # the guess the message names
    write_mask(tmp_path / "m.nii.gz", scan.image > 0, scan)
    mask = nib.load(tmp_path / "m.nii.gz")
    assert (int(mask.header["qform_code"]), int(mask.header["sform_code"])) == (0, 0)


@pytest.mark.parametrize("name", [name for name in HEADERS if name != "neither: pixdim places the voxels"])
def test_a_nifti_with_a_qform_or_sform_code_is_read_without_a_warning(tmp_path, name):
    nib.save(HEADERS[name](), tmp_path / "scan.nii.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        load_scan(tmp_path / "scan.nii.gz")


@pytest.mark.parametrize("written, named", [("scan.nii", "scan.nii.gz"), ("scan.nii.gz", "scan.nii")])
def test_a_nifti_named_against_its_compression_is_read_by_its_content_as_itk_reads_it(tmp_path, written, named):
    """A `.nii.gz` never compressed, or a compressed `.nii`, was refused (the second in three lines, nibabel's warning
    among them) although ITK-SNAP and FSL open both."""
    image = _header_with(QFORM, 1, SFORM, 2)
    nib.save(image, tmp_path / "reference.nii.gz")
    (tmp_path / "misnamed").mkdir()
    nib.save(image, tmp_path / written)
    (tmp_path / written).rename(tmp_path / "misnamed" / named)
    scan = load_scan(tmp_path / "misnamed" / named)
    np.testing.assert_array_equal(scan.image, load_scan(tmp_path / "reference.nii.gz").image)
    np.testing.assert_allclose(scan.geometry.matrix, SFORM)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_a_mask_of_a_nifti_in_metres_lands_on_it_as_nrrd_too_and_its_layer_is_scaled_in_mm(tmp_path, suffix):
    import SimpleITK as sitk

    nib.save(HEADERS["in metres"](), tmp_path / "scan.nii.gz")
    scan = load_scan(tmp_path / "scan.nii.gz")
    assert sorted(scan.spacing) == pytest.approx([1.0, 1.0, 2.0])  # napari's scale, the summary's mm^3
    write_mask(tmp_path / f"m{suffix}", scan.image > 0, scan)
    by_itk = [sitk.ReadImage(str(path)) for path in (tmp_path / "scan.nii.gz", tmp_path / f"m{suffix}")]
    for read in ("GetOrigin", "GetDirection", "GetSpacing"):
        np.testing.assert_allclose(getattr(by_itk[1], read)(), getattr(by_itk[0], read)(), atol=1e-4, err_msg=read)


@pytest.mark.parametrize("labels", [".nrrd", ".mha", "nibabel's default header"])
def test_the_labels_of_a_nifti_in_metres_read_back_onto_it_in_either_tools_units(tmp_path, labels):
    """Our .nrrd / .mha mask of a NIfTI scan in metres is in ITK's mm, and a mask nibabel-based tools write with the
    scan's affine has their default unit: each is its scan's grid to the tool that wrote it. The first was refused as
    the case's labels ('covers 0% of the FLAIR's field of view'): the check compared mm with metres."""
    nib.save(HEADERS["in metres"](), tmp_path / "case_flair.nii.gz")
    scan = load_scan(tmp_path / "case_flair.nii.gz")
    mask = scan.image > np.median(scan.image)
    if labels.startswith("."):
        write_mask(tmp_path / f"case_seg{labels}", mask, scan)
    else:
        scan_file = nib.load(tmp_path / "case_flair.nii.gz")
        _save(tmp_path / "case_seg.nii.gz", (np.asanyarray(scan_file.dataobj) > np.median(scan.image)).astype(np.uint8),
              scan_file.affine)
        assert nib.load(tmp_path / "case_seg.nii.gz").header.get_xyzt_units()[0] == "unknown"
    np.testing.assert_array_equal(load_scan(tmp_path, require_mask=True).mask, mask)


@pytest.mark.parametrize("change, message", [
    ({"units": "inch"}, "its spatial unit 'inch' is none of mm, unknown, meter, micron"),
    ({"affine": np.eye(4)[:3].tolist()}, "its affine is 3 x 4, not 4 x 4"),
    ({"affine": np.eye(4)[:, :3].tolist()}, "its affine is 4 x 3, not 4 x 4"),
    ({"shape": [6, 7]}, r"its grid \[6, 7\] is not three voxel counts"),
    ({"shape": [6, 0, 5]}, r"its grid \[6, 0, 5\] is not three voxel counts"),
    ({"sform": np.eye(4)[:3].tolist()}, "its sform is 3 x 4, not 4 x 4"),
    ({"nifti_version": 3}, "its NIfTI version 3 is neither 1 nor 2"),
    ({"sform": np.full((4, 4), np.nan).tolist()}, "its voxel-to-mm geometry holds NaN or infinite values"),
])
def test_a_layers_geometry_of_the_wrong_shape_is_refused_where_it_is_read(change, message):
    from napari_lgg_unet.engine.volumes import Geometry

    geometry = Geometry.of(SHAPE, GEOMETRIES["permuted (coronal storage)"])
    stored = geometry.to_dict()
    assert Geometry.from_dict(stored) == geometry
    with pytest.raises(InputError, match=f"^the layer's scan geometry \\(its metadata\\): {message}"):
        Geometry.from_dict({**stored, **change})


def test_unused_sform_rows_holding_nan_are_not_kept_so_cli_and_napari_both_save_the_mask_with_finite_rows(tmp_path):
    """A scan placed by its qform (sform_code 0) whose unused srow_* hold NaN: `predict` copied the NaN rows into its
    mask, while a napari layer of it was refused as holding NaN. Both now give the mask finite rows (the affine's)."""
    from napari_lgg_unet.engine.volumes import Geometry

    image = _header_with(QFORM, 1, SFORM, 0)
    for row in ("srow_x", "srow_y", "srow_z"):
        image.header[row] = np.nan
    nib.save(image, tmp_path / "scan.nii.gz")
    scan = load_scan(tmp_path / "scan.nii.gz")
    assert Geometry.from_dict(scan.geometry.to_dict()) == scan.geometry  # what the napari writer reads back
    write_mask(tmp_path / "out" / "m.nii.gz", scan.image > 0, scan)
    mask = nib.load(tmp_path / "out" / "m.nii.gz")
    assert int(mask.header["sform_code"]) == 0 and np.isfinite(mask.header.get_sform()).all()
    stored = nib.load(tmp_path / "scan.nii.gz")
    np.testing.assert_allclose(mask.header.get_qform(), stored.header.get_qform(), atol=1e-5)  # placed as its scan
    np.testing.assert_allclose(mask.affine, stored.affine, atol=1e-5)


@contextmanager
def _files_limited_to(size: int):
    """Writes past `size` bytes fail with "File too large", as writes to a full disk fail: a real writer failure."""
    resource = pytest.importorskip("resource")  # POSIX only
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of the process being killed
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_a_mask_that_cannot_be_written_whole_is_our_error_and_the_old_mask_stays(tmp_path, suffix):
    scan = load_scan(_save(tmp_path / "s.nii.gz", np.zeros((64, 64, 32), np.int16), np.eye(4)))
    target = tmp_path / f"m{suffix}"
    write_mask(target, np.zeros(scan.image.shape[:3], np.uint8), scan)
    old = target.read_bytes()
    noise = np.random.default_rng(0).random(scan.image.shape[:3]) > 0.5  # compresses to far more than 1 kB
    with pytest.raises(InputError, match=rf"^cannot write {re.escape(str(target))}: ") as error:
        with _files_limited_to(1024):
            write_mask(target, noise, scan)
    assert "\n" not in str(error.value) and f".{target.name}." not in str(error.value)  # not our temporary file
    assert target.read_bytes() == old and sorted(p.name for p in tmp_path.iterdir()) == [target.name, "s.nii.gz"]


def test_a_dataset_json_without_flair_is_refused(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T1", "1": "T2"}}))
    _save(tmp_path / "imagesTr" / "c_0000.nii.gz", np.zeros(SHAPE, np.int16), np.eye(4))
    with pytest.raises(InputError, match="names no FLAIR channel"):
        find_scans(tmp_path)


def test_real_brats_cases_load_as_axial_slices_with_whole_tumour_masks(brats_case, tmp_path):
    assert [s.name for s in find_scans(brats_case.parent)] == ["Brats18_TCIA10_628_1", "Brats18_TCIA13_623_1"]
    scan = load_scan(brats_case, require_mask=True)
    flair = nib.load(brats_case / f"{brats_case.name}_flair.nii.gz")
    seg = np.asanyarray(nib.load(brats_case / f"{brats_case.name}_seg.nii.gz").dataobj)
    # (L, P, S) on disk -> (S, P, L): the axes reverse, no flips.
    np.testing.assert_array_equal(scan.image[..., 1], np.asanyarray(flair.dataobj).transpose(2, 1, 0))
    np.testing.assert_array_equal(scan.mask, (seg > 0).transpose(2, 1, 0))
    assert scan.image.shape == (155, 240, 240, 3) and scan.spacing == (1.0, 1.0, 1.0)
    write_mask(tmp_path / "m.nii.gz", scan.mask, scan)
    written = nib.load(tmp_path / "m.nii.gz")
    np.testing.assert_array_equal(written.affine, flair.affine)
    np.testing.assert_array_equal(np.asanyarray(written.dataobj) > 0, seg > 0)


@pytest.mark.parametrize("labels", ["the FLAIR", "all 255"])
def test_a_flair_or_a_filled_volume_saved_as_the_labels_is_refused_not_read_as_tumour(brats_case, tmp_path, labels):
    """The case's FLAIR copied as its `_seg` (1036 grey values): read as labels, every voxel of the head was tumour
    (16 % of the volume, 9 times the real tumour) and evaluate's Dice meaningless; a volume of 255 was all tumour."""
    case = tmp_path / brats_case.name
    case.mkdir()
    flair = nib.load(brats_case / f"{brats_case.name}_flair.nii.gz")
    nib.save(flair, case / f"{case.name}_flair.nii.gz")
    data = np.asanyarray(flair.dataobj) if labels == "the FLAIR" else np.full(flair.shape, 255, np.uint8)
    nib.save(nib.Nifti1Image(data, flair.affine, flair.header), case / f"{case.name}_seg.nii.gz")
    refusal = (r"holds 1036 distinct values; a tumour mask holds at most 16" if labels == "the FLAIR"
               else r"holds no 0 \(background\)")
    with pytest.raises(InputError, match=f"{case.name}_seg.nii.gz {refusal}"):
        load_scan(case, require_mask=True)


@pytest.mark.parametrize("names", [
    ("flair", "t1", "flair_seg"), ("flair", "t1", "t2_mask"), ("P_flair", "P_t1", "P_flair_seg"),
    ("P_t1_flair", "P_t1_t1ce", "P_t1_seg"),  # t1 a time point, part of the case's name: the labels keep it
    ("flair", "t1", "mask_flair"), ("P_flair", "P_t1", "P_seg_flair"), ("P_flair", "P_t1", "P-mask-t1"),
    ("P_flair", "P_t1", "P_tumor_mask"), ("flair", "t1", "lesion_seg"), ("flair", "t1", "Segmentation-label"),
    ("P_flair", "P_t1", "P_flair_tumour_seg"), ("MRHead", "MRHead_t1", "Segmentation-label"),
])
def test_labels_named_after_the_sequence_they_were_drawn_on_are_that_cases_labels(brats_case, tmp_path, names):
    """`flair_seg.nii.gz` beside `flair.nii.gz`, as ITK-SNAP users save labels, was split at its last word only: a case
    `flair` of labels alone (no FLAIR: training and evaluate refused it) beside a case without labels, or, given as one
    case folder, "holds 2 scans". Named the other way round (`mask_flair`), it was the FLAIR of a case `mask`; with a
    word between case and labels word (`P_tumor_mask`, 3D Slicer's `Segmentation-label`), a case of labels alone."""
    case = tmp_path / "case"
    case.mkdir()
    for name, sequence in zip(names, ("flair", "t1", "seg")):
        shutil.copy(brats_case / f"{brats_case.name}_{sequence}.nii.gz", case / f"{name}.nii.gz")
    [found] = find_scans(tmp_path)
    assert found.labels is not None and found.labels.path.name == f"{names[2]}.nii.gz"
    seg = np.asanyarray(nib.load(brats_case / f"{brats_case.name}_seg.nii.gz").dataobj)
    for source in (case, case / f"{names[0]}.nii.gz", case / f"{names[2]}.nii.gz"):
        np.testing.assert_array_equal(load_scan(source, require_mask=True).mask, (seg > 0).transpose(2, 1, 0))


def test_write_mask_never_replaces_a_file_that_fed_the_scan(tmp_path):
    case = tmp_path / "P1"
    case.mkdir()
    for sequence in ("flair", "t1"):
        nib.save(nib.Nifti1Image(np.arange(2 * 8 * 6, dtype=np.int16).reshape(8, 6, 2), np.eye(4)),
                 case / f"P1_{sequence}.nii.gz")
    scan = load_scan(case / "P1_flair.nii.gz")
    before = {p: p.read_bytes() for p in case.iterdir()}
    mask = np.ones(scan.image.shape[:3], np.uint8)
    for onto in ("P1_flair.nii.gz", "P1_t1.nii.gz"):  # the scan's FLAIR, and its pre-contrast T1
        with pytest.raises(InputError, match=f"{onto} is a file of the scan P1 itself"):
            write_mask(case / onto, mask, scan)
    assert {p: p.read_bytes() for p in case.iterdir()} == before
    write_mask(tmp_path / "P1_mask.nii.gz", mask, scan)  # beside the case, under its own name, as predict writes it


def test_write_mask_never_replaces_the_labels_a_scan_was_read_with_nor_its_tiff_stack(tmp_path):
    """The check covered the sequence files only: a script writing the predicted mask onto the case's labels (as
    `<case>_mask.nii.gz`, the name mask_file_name gives, may be) replaced the expert's segmentation."""
    case = tmp_path / "P1"
    case.mkdir()
    nib.save(
        nib.Nifti1Image(np.arange(2 * 8 * 6, dtype=np.int16).reshape(8, 6, 2), np.eye(4)), case / "P1_flair.nii.gz"
    )
    nib.save(nib.Nifti1Image(np.eye(8, 6, dtype=np.uint8)[..., None].repeat(2, 2), np.eye(4)), case / "P1_mask.nii.gz")
    scan = load_scan(case)
    assert scan.mask is not None
    before = {p: p.read_bytes() for p in case.iterdir()}
    with pytest.raises(InputError, match="P1_mask.nii.gz is a file of the scan P1 itself"):
        write_mask(case / "P1_mask.nii.gz", np.zeros(scan.image.shape[:3], np.uint8), scan)
    assert {p: p.read_bytes() for p in case.iterdir()} == before
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.arange(3 * 8 * 6, dtype=np.uint8).reshape(3, 8, 6))
    scan = load_scan(stack)
    with pytest.raises(InputError, match="stack.tif is a file of the scan stack itself"):
        write_mask(stack, np.zeros((3, 8, 6), np.uint8), scan)
    assert tifffile.imread(stack).max() == 3 * 8 * 6 - 1


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_a_nifti_2_scans_mask_is_nifti_2_with_its_64_bit_transforms_exact(tmp_path, suffix):
    """A NIfTI-2 scan stores its sform and qform in 64-bit floats; its mask was NIfTI-1, whose 32-bit fields moved the
    origin by 2 micrometres (-90.123456789 became -90.12345886): not the scan's affine, to a tool that compares."""
    affine = _rotation([(0, -1), (1, 1), (2, 1)], (0.9, 1.123456789, 3.0), (-90.123456789, 12.987654321, -7.5))
    data = np.zeros(SHAPE, np.int16)
    data[1, 2, 3] = 100
    nib.save(nib.Nifti2Image(data, affine), tmp_path / f"scan{suffix}")
    scan = load_scan(tmp_path / f"scan{suffix}")
    write_mask(tmp_path / "out" / f"m{suffix}", scan.image == 100, scan)
    source, mask = nib.load(tmp_path / f"scan{suffix}"), nib.load(tmp_path / "out" / f"m{suffix}")
    assert type(mask) is nib.Nifti2Image
    for field in ("srow_x", "srow_y", "srow_z", "quatern_b", "quatern_c", "quatern_d", "qoffset_x", "pixdim"):
        np.testing.assert_array_equal(mask.header[field], source.header[field], err_msg=field)
    assert np.argwhere(np.asanyarray(mask.dataobj)).tolist() == [[1, 2, 3]]


def test_a_mask_whose_grid_nifti_1_cannot_hold_is_written_as_nifti_2(tmp_path):
    """NIfTI-1 stores each grid size in 16 bits: a mask of 33000 voxels along one axis failed with nibabel's
    HeaderDataError (a traceback, nothing written); NIfTI-2 holds it."""
    from napari_lgg_unet.engine.io import Scan

    scan = Scan("long", np.zeros((2, 3, 33000), np.float32), rgb=False)
    mask = np.zeros(scan.image.shape, bool)
    mask[1, 2, 32999] = True
    write_mask(tmp_path / "m.nii.gz", mask, scan)
    written = nib.load(tmp_path / "m.nii.gz")
    assert type(written) is nib.Nifti2Image and written.shape == (2, 3, 33000)
    assert np.argwhere(np.asanyarray(written.dataobj)).tolist() == [[1, 2, 32999]]


def _nrrd(path: Path, space: str, directions: list[tuple[float, float, float]], origin: tuple[float, ...]) -> None:
    """A raw NRRD written by hand, so its `space` field is whatever 3D Slicer or another tool may write (ITK writes
    left-posterior-superior only); voxel (1, 2, 3) holds 100."""
    data = np.zeros(SHAPE[::-1], "<i2")  # NRRD's fastest axis first: numpy (z, y, x)
    data[3, 2, 1] = 100
    vectors = " ".join("(" + ",".join(repr(v) for v in d) + ")" for d in directions)
    header = (f"NRRD0004\ntype: short\ndimension: 3\nspace: {space}\nsizes: {' '.join(map(str, SHAPE))}\n"
              f"space directions: {vectors}\nkinds: domain domain domain\nendian: little\nencoding: raw\n"
              f"space origin: ({','.join(repr(o) for o in origin)})\n\n")
    path.write_bytes(header.encode() + data.tobytes())


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
@pytest.mark.parametrize("space", ["right-anterior-superior", "left-posterior-superior"])
def test_an_nrrd_scans_mask_has_its_grid_to_the_last_bit_and_its_voxels_in_their_stored_order(tmp_path, space, suffix):
    """Whichever space the NRRD's header names (ITK turns RAS into LPS as it reads), its NRRD or MHA mask is on
    its grid as ITK reads both, to 64 bits (an oblique, flipped grid, an origin no 32-bit float holds), so ITK
    filters take the pair as one physical space; the voxel marked in the scan is the mask's."""
    import SimpleITK as sitk

    _nrrd(tmp_path / "scan.nrrd", space, [(0.0, 1.0, 0.0), (-0.9, 0.0, 0.0), (0.0, 0.0, -3.0)],
          (-90.123456789, 12.987654321, -7.5))
    scan = load_scan(tmp_path / "scan.nrrd")
    write_mask(tmp_path / "out" / f"m{suffix}", scan.image == 100, scan)
    source, mask = (sitk.ReadImage(str(p)) for p in (tmp_path / "scan.nrrd", tmp_path / "out" / f"m{suffix}"))
    for read in ("GetSize", "GetOrigin", "GetSpacing", "GetDirection"):
        assert getattr(mask, read)() == getattr(source, read)(), read
    assert np.argwhere(sitk.GetArrayFromImage(mask)).tolist() == [[3, 2, 1]]
    statistics = sitk.LabelStatisticsImageFilter()
    statistics.Execute(source, mask)  # raises where ITK finds the two in different physical spaces
    assert statistics.GetMaximum(1) == 100
