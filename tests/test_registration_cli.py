"""`pmlseg register` as a user runs it: readable .tfm that round-trips, QC failure and bad input
give exit status 1 with one line naming the file(s)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

pytestmark = pytest.mark.shared


def _run(*args):
    return subprocess.run([sys.executable, "-m", "pmlseg", "register", *map(str, args)], capture_output=True, text=True)


def _small(path, out, factor=2):
    """A half-resolution in-plane copy: keeps the test fast, same anatomy and geometry."""
    img = sitk.ReadImage(str(path))
    sitk.WriteImage(sitk.Shrink(img, [factor, factor, 1]), str(out))
    return out


@pytest.fixture(scope="module")
def pair(shared_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("reg")
    c = shared_data / "ljubljana-longitudinal" / "patient01"
    return _small(c / "study1_FLAIR.nii.gz", d / "fixed.nii.gz"), _small(c / "study2_FLAIR.nii.gz", d / "moving.nii.gz"), d


def test_cli_writes_transform_that_round_trips(pair):
    fixed, moving, d = pair
    tfm, moved = d / "out.tfm", d / "moved.nii.gz"
    r = _run(fixed, moving, "--transform", tfm, "--output", moved)
    assert r.returncode == 0, r.stderr
    tx = sitk.ReadTransform(str(tfm))
    assert tfm.read_text().startswith("#Insight Transform File")
    # the written image is MOVING resampled through the written transform onto FIXED's grid
    f, m, out = sitk.ReadImage(str(fixed)), sitk.ReadImage(str(moving)), sitk.ReadImage(str(moved))
    again = sitk.Resample(m, f, tx, sitk.sitkLinear, 0.0, m.GetPixelID())
    assert out.GetSize() == f.GetSize()
    assert np.allclose(sitk.GetArrayViewFromImage(out), sitk.GetArrayViewFromImage(again), atol=1)
    # and it is a real alignment: correlation with FIXED inside the head rises well above identity
    fa = sitk.GetArrayFromImage(f).astype(float)
    ident = sitk.GetArrayFromImage(sitk.Resample(m, f, sitk.Transform(), sitk.sitkLinear, 0.0)).astype(float)
    sel = fa > np.percentile(fa, 60)
    assert np.corrcoef(fa[sel], sitk.GetArrayFromImage(out)[sel])[0, 1] > np.corrcoef(fa[sel], ident[sel])[0, 1] + 0.2


def test_cli_wrong_patient_fails_qc_naming_both(pair, shared_data):
    fixed, _, d = pair
    other = _small(shared_data / "ljubljana-longitudinal" / "patient03" / "study2_FLAIR.nii.gz", d / "other.nii.gz")
    r = _run(fixed, other, "--transform", d / "wrong.tfm", "--no-brain-mask")
    assert r.returncode == 65  # EXIT_BAD_INPUT
    last = r.stderr.strip().splitlines()[-1]
    assert "failed QC" in last and str(fixed) in last and str(other) in last, r.stderr
    assert not (d / "wrong.tfm").exists()


def test_cli_bad_inputs_one_line(pair, tmp_path):
    fixed, moving, _ = pair
    flat = tmp_path / "flat.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(fixed))[:, :, 3], str(flat))
    nan = tmp_path / "nan.nii.gz"
    img = sitk.Cast(sitk.ReadImage(str(moving)), sitk.sitkFloat32) * float("nan")
    sitk.WriteImage(img, str(nan))
    mask = tmp_path / "mask.nii.gz"
    sitk.WriteImage(sitk.Image(20, 20, 20, sitk.sitkUInt8) + 1, str(mask))
    cases = [((fixed, flat), "flat.nii.gz"), ((fixed, nan), "nan.nii.gz"),
             ((fixed, moving, "--fixed-mask", mask), "mask.nii.gz"),
             ((fixed, tmp_path / "missing.nii.gz"), "missing.nii.gz")]
    for args, name in cases:
        r = subprocess.run([sys.executable, "-m", "pmlseg", "--log-level", "ERROR", "register", *map(str, args),
                            "--transform", str(tmp_path / "x.tfm")], capture_output=True, text=True)
        assert r.returncode == 65, (args, r.stderr)
        errors = [ln for ln in r.stderr.splitlines() if "ERROR" in ln]
        assert len(errors) == 1 and name in errors[0] and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "x.tfm").exists()
