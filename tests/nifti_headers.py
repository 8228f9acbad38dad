"""What a NIfTI mask must copy from its scan's header, checked alike for masks from the engine and the napari writer."""

from __future__ import annotations

import nibabel as nib
import numpy as np

PLACEMENT_FIELDS = ("qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y",
                    "qoffset_z", "srow_x", "srow_y", "srow_z", "pixdim")


def assert_same_placement(mask: nib.Nifti1Image, source: nib.Nifti1Image) -> None:
    """The mask's placement fields are the scan's as stored: both transforms, their codes, the sform's rows even where
    its code is 0 (they held the qform, or nibabel's pixdim guess, instead of the scan's rows), pixdim's voxel size
    and qfac."""
    for field in PLACEMENT_FIELDS:
        np.testing.assert_allclose(np.ravel(mask.header[field])[:4], np.ravel(source.header[field])[:4], atol=1e-5,
                                   err_msg=field)
    np.testing.assert_allclose(mask.affine, source.affine, atol=1e-5)
