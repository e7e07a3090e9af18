"""`pmlseg ingest` command line: clear errors for a missing/empty SRC, incremental re-runs with stable labels."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from pmlseg.tables import read_tsv
from pmlseg.ingest.pipeline import ingest


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pmlseg", *args], capture_output=True, text=True, timeout=300)


def test_help_explains_outputs():
    proc = _cli("ingest", "--help")
    assert proc.returncode == 0
    for word in ("SRC", "OUT", "identity.tsv", "series.tsv", "ce-gadolinium", "run-2"):
        assert word in proc.stdout


def test_missing_src_is_one_clear_error(tmp_path):
    missing = tmp_path / "no_such_export"
    proc = _cli("ingest", str(missing), str(tmp_path / "out"))
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0] and "does not exist" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.shared
def test_out_that_is_a_file_is_one_clear_error(shared_data, tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("not a folder")
    proc = _cli("ingest", str(shared_data / "dicom" / "ge-dwi-tensor"), str(target))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert str(target) in proc.stderr.strip().splitlines()[-1]


def test_src_without_dicom_is_one_clear_error(tmp_path):
    src = tmp_path / "export"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "readme.txt").write_text("no images here")
    proc = _cli("ingest", str(src), str(tmp_path / "out"))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert str(src) in last and "no DICOM" in last
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _cli("ingest", str(empty), str(tmp_path / "out2"))
    assert proc.returncode != 0 and str(empty) in proc.stderr and "no DICOM" in proc.stderr


def _copy_as_new_study(src_folder: Path, dst: Path, study_date: str, series_number: int) -> None:
    """The series again as a new study (new study/series/SOP UIDs) of the same patient on another date."""
    dst.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    for i, f in enumerate(sorted(src_folder.iterdir())):
        ds = copy.deepcopy(pydicom.dcmread(f))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study_date
        ds.SeriesNumber = series_number
        ds.save_as(dst / f"{i:04d}", enforce_file_format=True)


@pytest.mark.shared
def test_incremental_rerun_converts_only_new_studies(shared_data, tmp_path):
    dwi = shared_data / "dicom" / "ge-dwi-tensor"
    src, out = tmp_path / "src", tmp_path / "out"
    shutil.copytree(dwi, src / "visit_a")
    first = ingest(src, out, show_progress=False)
    assert first["converted"] == 1
    dwi_file = out / "sub-001/ses-01/dwi/sub-001_ses-01_dwi.nii.gz"
    stamp = dwi_file.stat().st_mtime_ns

    again = ingest(src, out, show_progress=False)
    assert again["converted"] == 0 and again["failed"] == 0 and again["already_done"] == 1
    assert dwi_file.stat().st_mtime_ns == stamp

    # A later visit of the same patient and a new patient (the Philips T1) arrive.
    _copy_as_new_study(dwi, src / "visit_b", "20220101", 7)
    shutil.copytree(shared_data / "dicom" / "philips-ingenia-t1-mprage", src / "other_patient")
    third = ingest(src, out, show_progress=False)
    assert third["converted"] == 2 and third["already_done"] == 1
    assert dwi_file.stat().st_mtime_ns == stamp
    assert (out / "sub-001/ses-02/dwi/sub-001_ses-02_dwi.nii.gz").exists()
    assert (out / "sub-002/ses-01/anat/sub-002_ses-01_T1w.nii.gz").exists()

    # An EARLIER visit found later: existing sessions keep their labels, it gets the next number.
    _copy_as_new_study(dwi, src / "visit_0", "20190101", 3)
    fourth = ingest(src, out, show_progress=False)
    assert fourth["converted"] == 1
    ident = {r["study_date"]: r for r in read_tsv(out / "identity.tsv") if r["subject"] == "sub-001"}
    assert ident["20200929"]["session"] == "ses-01" and ident["20220101"]["session"] == "ses-02"
    assert ident["20190101"]["session"] == "ses-03"
    assert dwi_file.stat().st_mtime_ns == stamp
    rows = read_tsv(out / "series.tsv")
    assert len(rows) == 4 and all(r["status"] == "converted" for r in rows)
    assert len({r["path"] for r in rows}) == 4

    # An output deleted by hand is converted again, under the same name.
    t1 = out / "sub-002/ses-01/anat/sub-002_ses-01_T1w.nii.gz"
    t1.unlink()
    fifth = ingest(src, out, show_progress=False)
    assert fifth["converted"] == 1 and t1.exists()
    assert read_tsv(out / "series.tsv") == rows


@pytest.mark.shared
def test_two_series_of_one_kind_get_runs(shared_data, tmp_path):
    """A repeated DWI in the same session: the first (by series number) is the main one, then _run-2."""
    dwi = shared_data / "dicom" / "ge-dwi-tensor"
    src, out = tmp_path / "src", tmp_path / "out"
    shutil.copytree(dwi, src / "one")
    (src / "two").mkdir()
    series = generate_uid()
    for i, f in enumerate(sorted(dwi.iterdir())):
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID, ds.SeriesNumber = series, 9
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(src / "two" / f"{i}", enforce_file_format=True)
    ingest(src, out, show_progress=False)
    rows = read_tsv(out / "series.tsv")
    assert [r["path"].rsplit("/", 1)[-1] for r in rows] == ["sub-001_ses-01_dwi.nii.gz",
                                                             "sub-001_ses-01_run-2_dwi.nii.gz"]
    assert [r["series_number"] for r in rows] == ["1", "9"]
