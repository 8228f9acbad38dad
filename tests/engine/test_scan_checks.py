"""scan_checks: a file's header is checked before its voxels are trusted, and the pixel types the engine keeps."""

import gzip
import io

import numpy as np
import pytest

from napari_lgg_unet.engine import scan_checks
from napari_lgg_unet.engine.errors import InputError


def test_a_gzip_file_cannot_claim_more_than_deflate_can_expand(tmp_path):
    scan_checks.check_claimed_size("ok", (1000, 1000), np.uint8, file_bytes=1000, compressed=True)
    with pytest.raises(InputError, match="but the file is only 100 bytes"):
        scan_checks.check_claimed_size("x.nii.gz", (1000, 1000), np.uint8, file_bytes=100, compressed=True)


def test_a_header_that_claims_more_than_the_file_or_free_memory_holds_is_refused(monkeypatch):
    scan_checks.check_claimed_size("ok", (10, 10), np.int16, file_bytes=200 + 352, data_offset=352)
    with pytest.raises(InputError, match="truncated"):
        scan_checks.check_claimed_size("s.nii", (10, 10), np.int16, file_bytes=199 + 352, data_offset=352)
    monkeypatch.setattr(scan_checks, "available_memory", lambda: 10 * 10 * 2 * scan_checks.MEMORY_HEADROOM - 1)
    with pytest.raises(InputError, match="of memory free"):
        scan_checks.check_claimed_size("s.nii", (10, 10), np.int16)


def test_colour_and_complex_voxels_are_refused_and_other_numbers_kept_or_made_float32():
    rgb = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])
    for dtype, words in ((rgb, "RGB colour"), (np.complex64, "unsupported pixel type")):
        with pytest.raises(InputError, match=words):
            scan_checks.check_pixel_type("scan.nii", dtype)
    scan_checks.check_pixel_type("scan.nii", np.float64)
    for dtype in scan_checks.KEPT_DTYPES:
        assert scan_checks.kept_pixels(np.zeros(2, dtype)).dtype == dtype
    assert scan_checks.kept_pixels(np.zeros(2, bool)).dtype == np.uint8
    assert scan_checks.kept_pixels(np.zeros(2, np.float64)).dtype == np.float32
    assert scan_checks.common_dtype([np.zeros(1, np.uint8), np.zeros(1, np.int16)]) == np.int16
    assert scan_checks.common_dtype([np.zeros(1, np.uint16), np.zeros(1, np.int16)]) == np.float32


def test_a_damaged_gzip_stream_is_refused_and_a_whole_one_passes(tmp_path):
    packed = gzip.compress(bytes(range(256)) * 64)
    scan_checks.check_gzip_end(gzip.GzipFile(fileobj=io.BytesIO(packed)), tmp_path / "ok.nii.gz")
    damaged = packed[:-8] + bytes(8)  # CRC and length zeroed
    with pytest.raises(InputError, match="bad.nii.gz is damaged"):
        scan_checks.check_gzip_end(gzip.GzipFile(fileobj=io.BytesIO(damaged)), tmp_path / "bad.nii.gz")


@pytest.mark.parametrize("change", ["nan", "zero voxel", "same axes"])
def test_an_affine_that_places_voxels_nowhere_is_refused(change):
    scan_checks.check_affine("ok", np.diag([0.5, 0.5, 3.0, 1.0]))
    affine = np.eye(4)
    if change == "nan":
        affine[0, 3] = np.nan
    elif change == "zero voxel":
        affine[1, 1] = 0
    else:
        affine[:3, 1] = affine[:3, 0]
    with pytest.raises(InputError, match="geometry"):
        scan_checks.check_affine("bad", affine)


@pytest.mark.parametrize("values", [(0, 255), (0, 1), (0, 1, 2, 4), (0, 1, 2, 3), tuple(range(16))])
def test_a_label_map_of_up_to_16_values_is_read_as_the_tumour_wherever_a_label_is_above_0(values):
    labels = np.repeat(np.array(values, np.uint8), 4)
    assert (scan_checks.tumour_of_labels("labels", labels) == (labels > 0)).all()


@pytest.mark.parametrize("classes", [16, 20, 132])  # 17 values, a 20-class atlas, a whole-brain parcellation
def test_a_multi_class_label_map_beyond_the_limit_is_refused_saying_what_is_accepted_and_what_to_give(classes):
    """An atlas of 20 structures is a label map, not "an image"; "give the mask drawn on the scan, not the scan" told
    its user nothing. The message says how many values are read, how they are read, and what to give instead."""
    atlas = np.repeat(np.arange(classes + 1, dtype=np.uint16), 4)
    with pytest.raises(InputError) as refused:
        scan_checks.tumour_of_labels("atlas_seg.nii.gz", atlas)
    message = str(refused.value)
    assert message.startswith(f"atlas_seg.nii.gz holds {classes + 1} distinct values; a tumour mask holds at most 16")
    assert "every label above 0 is read as tumour" in message and "BraTS 0/1/2/4" in message
    assert "a label map of many structures (an atlas)" in message and "the tumour's labels alone" in message
    assert "an image saved as a mask" in message
