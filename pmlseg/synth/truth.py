"""Ground truth beside the DICOM tree: lesion labels on each visit's FLAIR grid, as dcm2niix writes it.

dcm2niix stores a classic DICOM series with the row order flipped (its first NIfTI row is the
last DICOM row) and an affine to match, and turns 3D acquisitions to the closest RAS orientation;
writing the truth the same way lets anyone compare
ingest outputs and truth voxel by voxel. Template (MNI) space truth is written too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pmlseg import tables
from pmlseg.atomic import write_nifti


def dcm2niix_affine(img) -> np.ndarray:
    """RAS affine dcm2niix gives the series written from SimpleITK image ``img`` (rows flipped)."""
    d = np.asarray(img.GetDirection()).reshape(3, 3) * np.asarray(img.GetSpacing())[None, :]
    origin = np.asarray(img.GetOrigin(), float)
    ny = img.GetSize()[1]
    origin = origin + (ny - 1) * d[:, 1]
    d = d.copy()
    d[:, 1] *= -1
    aff = np.eye(4)
    aff[:3, :3] = d
    aff[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ aff


def as_dcm2niix_nifti(img, dtype=None, acquisition_3d: bool = False):
    """A nibabel image with the voxel order and affine dcm2niix produces for ``img``'s DICOM series.

    dcm2niix (default ``-x n``) also rotates 3D acquisitions (MRAcquisitionType 3D) to the
    orthogonal orientation closest to RAS, which nibabel's ``as_closest_canonical`` reproduces.
    """
    import nibabel as nib
    import SimpleITK as sitk

    arr = np.transpose(sitk.GetArrayFromImage(img), (2, 1, 0))[:, ::-1, :]
    if dtype is not None:
        arr = arr.astype(dtype)
    out = nib.Nifti1Image(np.ascontiguousarray(arr), dcm2niix_affine(img))
    out.set_qform(out.affine, code=1)
    out.set_sform(out.affine, code=1)
    if acquisition_3d:
        out = nib.as_closest_canonical(out)
        out.set_qform(out.affine, code=1)
        out.set_sform(out.affine, code=1)
    return out


def write_tsv(path: Path, rows: list[dict], columns: list[str]) -> None:
    """Ground-truth tables: floats with two decimals."""
    tables.write_tsv(path, rows, columns, cell=lambda v: f"{v:.2f}" if isinstance(v, float) else tables.plain_cell(v))


def write_label_nifti(path: Path, img, dtype=np.int16) -> None:
    write_nifti(path, as_dcm2niix_nifti(img, dtype))
