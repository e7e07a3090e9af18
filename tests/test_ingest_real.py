"""`pmlseg ingest` on the real scanner DICOM: same volumes as dcm2niix, right classes, no identifiers."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from pmlseg.tables import read_tsv
from pmlseg.ingest.convert import dcm2niix_path

pytestmark = pytest.mark.shared

SERIES = {  # folder -> expected classification
    "ge-mr750-t1-mprage": "T1w",
    "ge-dwi-tensor": "dwi",
    "philips-ingenia-t1-mprage": "T1w",
}


@pytest.fixture(scope="module")
def ingested(shared_data, tmp_path_factory):
    """One CLI run over the whole real DICOM folder (plus its licence texts, which must be skipped)."""
    src = shared_data / "dicom"
    out = tmp_path_factory.mktemp("ingest_real") / "bids"
    proc = subprocess.run([sys.executable, "-m", "pmlseg", "ingest", str(src), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return src, out, proc.stderr


@pytest.fixture(scope="module")
def reference(shared_data, tmp_path_factory):
    """dcm2niix run directly on each series folder: the reference conversion."""
    ref = {}
    base = tmp_path_factory.mktemp("dcm2niix_ref")
    for folder in SERIES:
        out = base / folder
        out.mkdir()
        subprocess.run([dcm2niix_path(), "-z", "y", "-b", "y", "-ba", "y", "-f", "ref", "-o", str(out),
                        str(shared_data / "dicom" / folder)], check=True, capture_output=True)
        ref[folder] = out
    return ref


def _series_uid(folder: Path) -> str:
    first = sorted(folder.iterdir())[0]
    return str(pydicom.dcmread(first, stop_before_pixels=True).SeriesInstanceUID)


@pytest.mark.parametrize("folder", sorted(SERIES))
def test_every_series_matches_dcm2niix(ingested, reference, folder):
    src, out, _ = ingested
    rows = {r["series_uid"]: r for r in read_tsv(out / "series.tsv")}
    row = rows[_series_uid(src / folder)]
    assert row["classification"] == SERIES[folder]
    assert row["status"] == "converted", row["reason"]
    ours = nib.as_closest_canonical(nib.load(out / row["path"]))
    ref = nib.as_closest_canonical(nib.load(reference[folder] / "ref.nii.gz"))
    assert ours.shape == ref.shape
    assert np.abs(ours.affine - ref.affine).max() < 0.01
    a = np.asarray(ours.dataobj, dtype=np.float64).ravel()
    b = np.asarray(ref.dataobj, dtype=np.float64).ravel()
    assert np.corrcoef(a, b)[0, 1] >= 0.9999
    assert np.array_equal(a, b)  # dcm2niix is run underneath: values must be identical
    sidecar = json.loads((out / row["path"].replace(".nii.gz", ".json")).read_text())
    assert sidecar["RepetitionTime"] > 0 and sidecar["EchoTime"] > 0
    if SERIES[folder] == "dwi":
        assert row["path"].startswith("sub-") and "/dwi/" in row["path"] and row["path"].endswith("_dwi.nii.gz")
        stem = out / row["path"][: -len(".nii.gz")]
        bval = np.loadtxt(f"{stem}.bval")
        bvec = np.loadtxt(f"{stem}.bvec")
        assert np.allclose(bval, np.loadtxt(reference[folder] / "ref.bval"))
        assert np.allclose(bvec, np.loadtxt(reference[folder] / "ref.bvec"))
        assert bval.max() >= 500 and bval.min() == 0 and bvec.shape == (3, ours.shape[3])
    else:
        assert "/anat/" in row["path"] and row["path"].endswith("_T1w.nii.gz")


def _identifiers(src: Path) -> set[bytes]:
    found = set()
    for folder in SERIES:
        for f in sorted((src / folder).iterdir())[:3]:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            for kw in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName"):
                value = str(ds.get(kw) or "").strip()
                if value:
                    found.add(value.encode())
    return found


def test_no_identifier_outside_identity_tsv(ingested):
    src, out, log = ingested
    idents = _identifiers(src)
    assert len(idents) >= 3  # the test is only meaningful if the sources carry identifiers
    identity = (out / "identity.tsv").read_bytes()
    assert any(i in identity for i in idents)  # ... and identity.tsv really links them
    checked = 0
    for path in sorted(out.rglob("*")):
        if not path.is_file() or path.name == "identity.tsv":
            continue
        blobs = [path.read_bytes(), str(path.relative_to(out)).encode()]
        if path.name.endswith(".gz"):
            blobs.append(gzip.decompress(blobs[0]))
        for blob in blobs:
            for ident in idents:
                assert ident not in blob, f"{path}: contains a source identifier"
        checked += 1
    assert checked >= 9  # 3 volumes, 3 sidecars, bval, bvec, series.tsv
    for ident in idents:
        assert ident.decode() not in log
    # dcm2niix's header text (acquisition time) is blanked.
    for nii in out.rglob("*.nii.gz"):
        assert nib.load(nii).header["descrip"].tobytes().strip(b"\0") == b""


def test_non_dicom_files_warned_once_each(ingested):
    _, out, log = ingested
    warned = [line for line in log.splitlines() if "not a DICOM file" in line]
    assert len(warned) == 2 and not any("LICENSE-dcm_qa" in w for w in warned)  # named by ordinal, not by path


def test_labels_and_tables(ingested):
    _, out, _ = ingested
    ident = read_tsv(out / "identity.tsv")
    assert {"patient_id", "subject", "study_uid", "study_date", "session"} <= set(ident[0])
    assert sorted(r["subject"] for r in ident) == ["sub-001", "sub-002"]
    assert all(r["session"] == "ses-01" for r in ident)
    rows = read_tsv(out / "series.tsv")
    assert len(rows) == 3 and all(r["status"] == "converted" for r in rows)
    for r in rows:
        assert (out / r["path"]).exists() and (out / r["path"].replace(".nii.gz", ".json")).exists()
    assert not list(out.glob(".pmlseg-tmp*"))
    assert sorted(p.name for p in out.rglob(".*")) == [".bidsignore"]  # no temp files left
    assert json.loads((out / "dataset_description.json").read_text())["BIDSVersion"]


def test_second_run_converts_nothing(ingested):
    from pmlseg.ingest.pipeline import ingest

    src, out, _ = ingested
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")}
    counts = ingest(src, out, show_progress=False)
    assert counts["converted"] == 0 and counts["failed"] == 0 and counts["already_done"] == 3
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")} == before
