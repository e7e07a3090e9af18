"""Ingest a small synthetic cohort (3 vendors, 2 visits each) end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pmlseg.tables import read_tsv

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    base = tmp_path_factory.mktemp("synth")
    syn = base / "syn"
    proc = subprocess.run([sys.executable, "-m", "pmlseg", "synth", str(syn), "--patients", "3", "--visits", "2",
                           "--seed", "3"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = base / "bids"
    proc = subprocess.run([sys.executable, "-m", "pmlseg", "ingest", str(syn / "dicom"), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return syn, out, proc.stderr


def test_every_session_has_every_suffix(cohort):
    syn, out, _ = cohort
    truth = read_tsv(syn / "ground_truth" / "cohort.tsv")
    ident = read_tsv(out / "identity.tsv")
    assert len(ident) == len(truth) == 6
    assert {t["manufacturer"] for t in truth} == {"SIEMENS", "GE MEDICAL SYSTEMS", "Philips"}
    for r in ident:
        ses = out / r["subject"] / r["session"]
        for rel in ("anat/{p}_FLAIR.nii.gz", "anat/{p}_T1w.nii.gz", "anat/{p}_T2w.nii.gz",
                    "dwi/{p}_dwi.nii.gz", "dwi/{p}_dwi.bval", "dwi/{p}_dwi.bvec", "anat/{p}_FLAIR.json"):
            path = ses / rel.format(p=f"{r['subject']}_{r['session']}")
            assert path.exists(), path
    # ses-01 is each patient's earliest visit.
    by_subject = {}
    for r in ident:
        by_subject.setdefault(r["subject"], []).append((r["session"], r["study_date"]))
    for sessions in by_subject.values():
        assert [s for s, _ in sorted(sessions, key=lambda x: x[1])] == sorted(s for s, _ in sessions)


def test_localizer_and_screenshot_are_other_and_skipped(cohort):
    _, out, _ = cohort
    rows = read_tsv(out / "series.tsv")
    assert len(rows) == 6 * 6
    other = [r for r in rows if r["classification"] == "other"]
    assert len(other) == 12 and all(r["status"] == "skipped" and r["path"] == "" for r in other)
    assert sum("localizer" in r["reason"] for r in other) == 6
    assert all(r["status"] == "converted" for r in rows if r["classification"] != "other")


def test_flair_on_the_ground_truth_grid(cohort):
    """The synthetic truth is defined on the grid dcm2niix gives the FLAIR: ours must be that grid."""
    syn, out, _ = cohort
    truth = read_tsv(syn / "ground_truth" / "cohort.tsv")
    rows = {r["series_uid"]: r for r in read_tsv(out / "series.tsv")}
    for t in truth:
        row = rows[t["flair_series_uid"]]
        assert row["classification"] == "FLAIR"
        ours = nib.load(out / row["path"])
        gt = nib.load(syn / "ground_truth" / t["patient_id"] / f"visit-{t['visit']}" / "lesions.nii.gz")
        assert ours.shape == gt.shape
        assert np.abs(ours.affine - gt.affine).max() < 0.01


def test_no_synthetic_identifier_leaks(cohort):
    syn, out, log = cohort
    truth = read_tsv(syn / "ground_truth" / "cohort.tsv")
    secrets = {t["patient_id"] for t in truth} | {"SYNTH^DEMO", "SYNACC"}
    assert any(s in (out / "identity.tsv").read_text() for s in secrets)
    for path in Path(out).rglob("*"):
        if path.is_file() and path.name != "identity.tsv":
            data = path.read_bytes()
            for s in secrets:
                assert s.encode() not in data, (path, s)
    for s in secrets:
        assert s not in log
