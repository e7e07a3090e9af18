"""`pmlseg preprocess` (the workflow's per-visit stage) on a real clinical FLAIR, and on bad input."""

from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest


@pytest.mark.slow
@pytest.mark.shared
def test_preprocess_real_flair(shared_data, tmp_path):
    flair = shared_data / "ljubljana-longitudinal" / "patient01" / "study1_FLAIR.nii.gz"
    img, mask = tmp_path / "pre.nii.gz", tmp_path / "mask.nii.gz"
    p = subprocess.run([sys.executable, "-m", "pmlseg", "preprocess", str(flair), str(img), str(mask)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    raw = nib.load(flair)
    m = np.asarray(nib.load(mask).dataobj) > 0
    a = np.asarray(nib.load(img).dataobj, dtype=np.float32)
    assert m.shape == raw.shape and np.allclose(nib.load(img).affine, raw.affine, atol=1e-4)
    brain_ml = m.sum() * np.prod(raw.header.get_zooms()[:3]) / 1000
    assert 800 < brain_ml < 2000, brain_ml  # an adult brain (partial coverage of a 2D FLAIR slab)
    # normalised: the brain's most common intensity is ~1 (normal-appearing tissue)
    hist, edges = np.histogram(a[m], bins=200, range=np.percentile(a[m], [2, 98]))
    mode = edges[np.argmax(np.convolve(hist, np.ones(5) / 5, mode="same"))]
    assert 0.8 < mode < 1.2, mode


def test_preprocess_bad_input_is_one_line(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    p = subprocess.run([sys.executable, "-m", "pmlseg", "preprocess", str(bad), str(tmp_path / "o.nii.gz"),
                        str(tmp_path / "m.nii.gz")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 65  # EXIT_BAD_INPUT
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "broken.nii.gz" in lines[0], p.stderr
    assert not (tmp_path / "o.nii.gz").exists() and not (tmp_path / "m.nii.gz").exists()
