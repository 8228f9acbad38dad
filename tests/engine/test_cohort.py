"""cohort: scans loaded in order (optionally read ahead on a thread), each segmented, timed and named in errors."""

import numpy as np
import pytest
import tifffile

from napari_lgg_unet.engine.cohort import loaded_scans, segment_scan, segment_scans
from napari_lgg_unet.engine.errors import InputError
from napari_lgg_unet.engine.io import Scan
from napari_lgg_unet.engine.model import load_model
from napari_lgg_unet.engine.predict import SegmentOptions


def _stacks(folder, count: int = 3):
    paths = []
    for number in range(count):
        paths.append(folder / f"scan{number}.tif")
        tifffile.imwrite(paths[-1], np.full((2, 40, 40, 3), number, np.uint8))
    return paths


@pytest.mark.parametrize("ahead", [0, 2])
def test_scans_come_in_order_whether_or_not_they_are_read_ahead(tmp_path, ahead):
    paths = _stacks(tmp_path)
    assert [int(scan.image.max()) for scan in loaded_scans(paths, False, ahead)] == [0, 1, 2]


@pytest.mark.parametrize("ahead", [0, 2])
def test_a_scan_that_cannot_be_read_fails_at_its_turn_not_before(tmp_path, ahead):
    paths = _stacks(tmp_path, 2)
    paths.insert(1, tmp_path / "missing.tif")
    scans = loaded_scans(paths, False, ahead)
    assert int(next(scans).image.max()) == 0
    with pytest.raises(InputError, match="missing.tif"):
        next(scans)


def test_each_scan_is_segmented_and_timed_and_a_refusal_names_the_scan(tmp_path, tiny_model_dir):
    model = load_model(tiny_model_dir)
    done = list(segment_scans(model, _stacks(tmp_path, 2), SegmentOptions()))
    assert [d.scan.image.shape[:3] == d.result.mask.shape for d in done] == [True, True]
    assert all(d.seconds > 0 for d in done)
    with pytest.raises(InputError, match="^broken: .*NaN"):
        segment_scan(model, Scan("broken", np.full((1, 40, 40, 3), np.nan, np.float32)), SegmentOptions())
