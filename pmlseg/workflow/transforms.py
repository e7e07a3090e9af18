"""Chain the rebaseline registrations, so detection against the previous visit needs no new registration.

``register REB V`` stores T_v: rebaseline points -> visit V points.  The previous->current mapping is
T_cur o T_prev^-1 (points of the previous visit -> points of the current one), an affine again.
"""

from __future__ import annotations

import numpy as np

from pmlseg.errors import PmlsegError


def _as_matrix(tfm, name: str) -> np.ndarray:
    """4x4 matrix of an affine ITK transform, found from how it moves 5 points (works for any affine type)."""
    pts = np.array([[0, 0, 0], [100, 0, 0], [0, 100, 0], [0, 0, 100], [37, -55, 71]], float)
    mapped = np.array([tfm.TransformPoint(tuple(p)) for p in pts])
    X = np.c_[pts, np.ones(len(pts))]
    sol, *_ = np.linalg.lstsq(X, mapped, rcond=None)
    if np.abs(X @ sol - mapped).max() > 1e-3:
        raise PmlsegError(f"{name}: not an affine transform; cannot chain it")
    m = np.eye(4)
    m[:3, :] = sol.T
    return m


def chain(to_previous: str, to_current: str, out: str) -> None:
    """Write the affine mapping previous-visit points to current-visit points."""
    import SimpleITK as sitk

    from pmlseg.atomic import atomic_path

    mats = []
    for path in (to_previous, to_current):
        try:
            mats.append(_as_matrix(sitk.ReadTransform(str(path)), path))
        except RuntimeError as exc:
            raise PmlsegError(f"{path}: cannot read transform ({str(exc).strip().splitlines()[-1]})") from None
    m = mats[1] @ np.linalg.inv(mats[0])
    aff = sitk.AffineTransform(3)
    aff.SetMatrix(tuple(m[:3, :3].ravel()))
    aff.SetTranslation(tuple(m[:3, 3]))
    with atomic_path(out, suffix=".tfm") as tmp:
        sitk.WriteTransform(aff, str(tmp))
