"""What listing a DICOM study costs `lgg-unet predict` before any scan is read: `find_scans`, then `is_one_scan`, in
one listing, on a synthetic 4-series study of 600 files (150 slices of 32x32 each, written with pydicom).

Run by hand: `PYTHONPATH=src:tests python benchmarks/dicom_listing.py`; to count the opens of the study's files,
`PYTHONPATH=src:tests strace -f -e trace=openat -o trace python benchmarks/dicom_listing.py` and
`grep 'study/IM' trace | grep -v O_WRONLY | grep -c '= [0-9]'` (reads only). Results in docs/benchmarks.md.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK  # noqa: F401  (imported before the clock starts, as the CLI has it by then)

from dicom_files import write_slice
from napari_lgg_unet.engine.io import find_scans, is_one_scan
from napari_lgg_unet.engine.listing import listing

SERIES = ("AX FLAIR", "AX T1", "AX T1 POST GD", "AX T2")
SLICES = 150


def main() -> None:
    with tempfile.TemporaryDirectory() as temporary:
        study = Path(temporary) / "study"
        study.mkdir()
        for number, description in enumerate(SERIES):
            for k in range(SLICES):
                write_slice(study, f"IM{number}_{k:03d}.dcm", f"1.2.3.{number + 1}", description, 2.5 * k,
                            np.full((32, 32), k, np.int16))
        started = time.perf_counter()
        with listing():
            scans = find_scans(study)
            one = is_one_scan(study)
        print(f"{len(SERIES) * SLICES} files: {len(scans)} scan (one scan: {one}) listed in "
              f"{time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
