"""Longitudinal space: rebaseline choice, and a follow-up T1 reaching the rebaseline FLAIR through
its own visit's FLAIR (composed transform) matches the database's reference chain."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from pmlseg.errors import PmlsegError
from pmlseg.registration.longitudinal import build_longitudinal_space, choose_rebaseline
from pmlseg.registration.preprocess import normalise_intensity


def test_rebaseline_choice():
    visits = {"ses-02": {"FLAIR": "b", "T1w": "c"}, "ses-01": {"T1w": "a"}, "ses-03": {"FLAIR": "d"}}
    assert choose_rebaseline(visits) == "ses-02"  # earliest visit *with a FLAIR*
    assert choose_rebaseline(visits, "ses-03") == "ses-03"  # named by the clinical table
    with pytest.raises(PmlsegError, match="no FLAIR"):
        choose_rebaseline(visits, "ses-01")
    with pytest.raises(PmlsegError, match="no visit has a FLAIR"):
        choose_rebaseline({"ses-01": {"T1w": "a"}})


def test_normalisation_ignores_lesion_load():
    rng = np.random.default_rng(0)
    a = rng.normal(100, 8, (20, 64, 64)).astype(np.float32)
    mask = np.zeros_like(a, np.uint8)
    mask[2:18, 8:56, 8:56] = 1
    img, m = sitk.GetImageFromArray(a), sitk.GetImageFromArray(mask)
    clean = normalise_intensity(img, m)
    lesioned = a.copy()
    lesioned[5:12, 10:30, 10:30] = 250  # ~8 % of the brain very bright
    les = normalise_intensity(sitk.GetImageFromArray(lesioned), m)
    scale_clean = float(sitk.GetArrayViewFromImage(clean)[0, 0, 0] / a[0, 0, 0])
    scale_les = float(sitk.GetArrayViewFromImage(les)[0, 0, 0] / a[0, 0, 0])
    assert abs(scale_clean * 100 - 1) < 0.05 and abs(scale_les / scale_clean - 1) < 0.03
    # a mean-based scaling would have moved by > 10 %
    assert lesioned[mask > 0].mean() / a[mask > 0].mean() > 1.1


@pytest.mark.slow
@pytest.mark.shared
def test_followup_t1_composes_through_visit_flair(shared_data, tmp_path):
    c = shared_data / "ljubljana-longitudinal" / "patient01"
    visits = {"ses-01": {"FLAIR": c / "study1_FLAIR.nii.gz"},
              "ses-02": {"FLAIR": c / "study2_FLAIR.nii.gz", "T1w": c / "study2_T1W.nii.gz"}}
    space = build_longitudinal_space(visits, out_dir=tmp_path)
    assert space.rebaseline == "ses-01" and space.passed, space.qc
    assert (tmp_path / "registration_qc.tsv").read_text().count("\n") == 4  # header + 3 steps
    tx = sitk.ReadTransform(str(tmp_path / "ses-02_T1w_to_rebaseline.tfm"))
    ref = sitk.CompositeTransform(3)
    ref.AddTransform(sitk.ReadTransform(str(c / "study2_T1W_intrastudy_to_FLAIR.txt")))
    ref.AddTransform(sitk.ReadTransform(str(c / "study2_FLAIR_to_common_space.txt")))
    ref.AddTransform(sitk.ReadTransform(str(c / "study1_FLAIR_to_common_space.txt")).GetInverse())
    f = sitk.ReadImage(str(c / "study1_FLAIR.nii.gz"))
    m = sitk.GetArrayFromImage(sitk.OtsuThreshold(f, 0, 1)).astype(bool)
    pts = [f.TransformContinuousIndexToPhysicalPoint(i[::-1].astype(float).tolist()) for i in np.argwhere(m)[::97]]
    err = [np.linalg.norm(np.subtract(tx.TransformPoint(p), ref.TransformPoint(p))) for p in pts]
    # measured 2.6 mm median (target 0.5 mm, issue 3): this bound catches regressions, not the target
    assert np.median(err) < 4.0, np.median(err)
