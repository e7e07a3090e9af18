"""The same-session rigid recipe (`register_affine(init="identity", rigid_only=True)`: `pmlseg register --init
identity --rigid` and the detector's T1/T2/DWI -> FLAIR registrations) recovers a known head motion between
two contrasts, for a 3D and a thick-slice FLAIR, with and without a brain mask (synthetic: the bundled
ICBM152 template in FLAIR- and T1-like contrast, 2 mm; real pairs: benchmarks/registration_accuracy.py)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from pmlseg.registration.affine import register_affine
from pmlseg.registration.grid import smooth
from pmlseg.registration.preprocess import _template


def _motion():
    tx = sitk.Euler3DTransform()
    tx.SetCenter((0.0, -18.0, 18.0))
    tx.SetRotation(*np.deg2rad([2.0, -1.5, 1.0]))
    tx.SetTranslation((2.5, -3.0, 1.5))
    return tx


def _thick(img: sitk.Image, slice_mm: float = 4.0) -> sitk.Image:
    """``img`` acquired as thick slices: blurred across and resampled to ``slice_mm`` along z."""
    sp, size = img.GetSpacing(), img.GetSize()
    ref = sitk.Image([size[0], size[1], int(size[2] * sp[2] / slice_mm)], sitk.sitkFloat32)
    ref.SetSpacing((sp[0], sp[1], slice_mm))
    ref.SetDirection(img.GetDirection())
    ref.SetOrigin(img.GetOrigin())
    return sitk.Resample(smooth(img, [0.0, 0.0, slice_mm / 2.3548]), ref)


@pytest.mark.parametrize("thick,masked", [(False, False), (True, False), (True, True)])
def test_same_session_recipe_recovers_a_known_motion(thick, masked):
    flair, brain = _template("FLAIR")
    t1, _ = _template("T1w")
    truth = _motion()  # FLAIR points -> T1 points
    moving = sitk.Resample(t1, t1, truth.GetInverse(), sitk.sitkLinear, 0.0)
    fixed = _thick(flair) if thick else flair
    mask = None
    if masked:
        mask = sitk.Cast(sitk.Resample(brain, fixed, sitk.Transform(), sitk.sitkNearestNeighbor, 0), sitk.sitkUInt8)
    res = register_affine(fixed, moving, mask, init="identity", rigid_only=True)
    idx = np.argwhere(sitk.GetArrayViewFromImage(sitk.Resample(brain, fixed, sitk.Transform(),
                                                                sitk.sitkNearestNeighbor, 0)) > 0)[::7]
    pts = [fixed.TransformIndexToPhysicalPoint([int(v) for v in i[::-1]]) for i in idx]
    err = np.array([np.linalg.norm(np.subtract(res.transform.TransformPoint(p), truth.TransformPoint(p))) for p in pts])
    header = np.median([np.linalg.norm(np.subtract(p, truth.TransformPoint(p))) for p in pts])
    assert header > 3.0  # the motion is real: the scanner header alone is off by millimetres
    assert np.median(err) < 0.3 and np.percentile(err, 95) < 0.6, (np.median(err), np.percentile(err, 95))
    m = np.array(res.transform.GetMatrix()).reshape(3, 3)
    assert np.allclose(m @ m.T, np.eye(3), atol=1e-6)  # rigid
