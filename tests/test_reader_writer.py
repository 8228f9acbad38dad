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
