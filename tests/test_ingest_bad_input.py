"""Bad and hostile input built from a real series: failed with a reason, never a wrong volume or a leak."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import generate_uid

from pmlseg.ingest.convert import dcm2niix_path
from pmlseg.ingest.deidentify import source_ref
from pmlseg.tables import read_tsv

pytestmark = pytest.mark.shared

HOSTILE_ID = "../../x"
HOSTILE_NAME = "Evil\x1b[31m^Na\tme\n/etc/passwd"
HOSTILE_DESC = "../../" + "A" * 3000 + "\t\n\r/"
BIDS_FILE = re.compile(r"^sub-\d{3}_ses-\d{2}(_ce-gadolinium)?(_run-\d+)?_(T1w|T2w|FLAIR|dwi)\.(nii\.gz|json|bval|bvec)$")


def _load(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(f) for f in sorted(folder.iterdir())]


def _sorted_by_position(datasets):
    normal = np.cross(*np.reshape(np.asarray(datasets[0].ImageOrientationPatient, float), (2, 3)))
    return sorted(datasets, key=lambda d: float(np.dot(np.asarray(d.ImagePositionPatient, float), normal))), normal


def _write_series(datasets, folder: Path, number: int, **changes) -> None:
    """Save datasets as a new series (new UIDs) under ``folder``, with tag changes applied to all."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    for i, ds in enumerate(datasets):
        ds = copy.deepcopy(ds)
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = number
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        for key, value in changes.items():
            setattr(ds, key, value)
        ds.save_as(folder / f"IM{i:05d}", enforce_file_format=True)


@pytest.fixture(scope="module")
def bad_run(shared_data, tmp_path_factory):
    base = tmp_path_factory.mktemp("bad")
    src = base / "src"
    t1 = _load(shared_data / "dicom" / "ge-mr750-t1-mprage")
    dwi = _load(shared_data / "dicom" / "ge-dwi-tensor")
    t1_sorted, normal = _sorted_by_position(t1)

    # 101: a middle slice missing.
    _write_series(t1_sorted[:60] + t1_sorted[61:], src / "a" / "b", 101)
    # 102: one slice duplicated (another SOP instance at the same position).
    _write_series(t1_sorted + [t1_sorted[40]], src / "c", 102)
    # 103: one slice moved by 40% of the spacing.
    moved = [copy.deepcopy(d) for d in t1_sorted]
    step = float(np.dot(np.asarray(t1_sorted[1].ImagePositionPatient, float)
                        - np.asarray(t1_sorted[0].ImagePositionPatient, float), normal))
    pos = np.asarray(moved[70].ImagePositionPatient, float) + 0.4 * step * normal
    moved[70].ImagePositionPatient = [f"{x:.6f}" for x in pos]
    _write_series(moved, src / "d", 103)
    # 104: mixed dimensions (one image downsampled to 128 x 128).
    mixed = [copy.deepcopy(d) for d in dwi]
    small = mixed[3]
    small.PixelData = np.ascontiguousarray(small.pixel_array[::2, ::2]).tobytes()
    small.Rows, small.Columns = 128, 128
    small.PixelSpacing = [float(x) * 2 for x in small.PixelSpacing]
    _write_series(mixed, src / "e", 104)
    # 107: a good T1 given after gadolinium: converted with the ce-gadolinium entity.
    _write_series(t1, src / "h", 107, ContrastBolusAgent="Gadobutrol 7.5 ml")
    # 106: DWI where one volume lost a slice and another volume has that slice twice (counts still even).
    dwi_sorted, _ = _sorted_by_position(dwi)
    b0_first = next(d for d in dwi_sorted if int(d[0x0043, 0x1039].value[0]) % 1000000000 == 0)
    b1000_same_pos = next(d for d in dwi_sorted if d is not b0_first and int(d[0x0043, 0x1039].value[0]) > 0
                          and list(d.ImagePositionPatient) == list(b0_first.ImagePositionPatient))
    swapped = [d for d in dwi if d is not b0_first] + [b1000_same_pos]
    _write_series(swapped, src / "g", 106)
    # 105: a good DWI of a hostile "patient": its ID would be a path, its name has control characters.
    _write_series(dwi, src / "f" / "deep" / "er", 105, PatientID=HOSTILE_ID, PatientName=HOSTILE_NAME,
                  StudyInstanceUID=generate_uid(), SeriesDescription=HOSTILE_DESC, AccessionNumber="ACC998877",
                  InstitutionName="Hospital Of Secrets")
    # Old exports: some files without the 128-byte preamble, some bare implicit-VR data sets.
    for i, f in enumerate(sorted((src / "f" / "deep" / "er").iterdir())):
        if i % 3 == 1:
            f.write_bytes(f.read_bytes()[132:])
        elif i % 3 == 2:
            ds = pydicom.dcmread(f)
            ds.file_meta, ds.preamble = FileMetaDataset(), None
            dcmwrite(f, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    # The same image twice (PACS exports do that): ignored as a duplicate, not a failure.
    first = sorted((src / "f" / "deep" / "er").iterdir())[0]
    shutil.copy(first, src / "f" / "copy of first image")
    # Junk: non-DICOM text, empty file, truncated DICOM, random bytes with a .dcm name.
    (src / "notes.txt").write_text("PACS export manifest\nnothing to see\n")
    (src / "empty.dcm").write_bytes(b"")
    raw = (shared_data / "dicom" / "ge-dwi-tensor" / sorted(p.name for p in (shared_data / "dicom" / "ge-dwi-tensor").iterdir())[0]).read_bytes()
    (src / "trunc").write_bytes(raw[: len(raw) // 2])
    (src / "trunc_header").write_bytes(raw[:1000])
    (src / "junk.dcm").write_bytes(np.random.default_rng(0).bytes(5000))

    out = base / "out"
    proc = subprocess.run([sys.executable, "-m", "pmlseg", "ingest", str(src), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = {int(r["series_number"]): r for r in read_tsv(out / "series.tsv")}
    return src, out, rows, proc.stderr


@pytest.mark.parametrize("number, words", [(101, "missing slice"), (102, "duplicate or missing slices"),
                                           (103, "inconsistent slice spacing"), (104, "mixed image sizes"),
                                           (106, "missing or duplicate slice in some volume")])
def test_broken_series_fail_with_reason(bad_run, number, words):
    _, out, rows, log = bad_run
    row = rows[number]
    assert row["status"] == "failed" and words in row["reason"] and row["path"] == ""
    assert f"series {number}: {words}" in log
    assert all(r["path"] == "" for r in rows.values() if r["status"] != "converted")


def test_hostile_patient_converted_safely(bad_run, shared_data, tmp_path):
    _, out, rows, log = bad_run
    row = rows[105]
    assert row["status"] == "converted" and row["classification"] == "dwi"
    # Preamble-less and bare files were read: the volume equals dcm2niix on the original files.
    subprocess.run([dcm2niix_path(), "-z", "y", "-f", "ref", "-o", str(tmp_path),
                    str(shared_data / "dicom" / "ge-dwi-tensor")], check=True, capture_output=True)
    ours, ref = nib.load(out / row["path"]), nib.load(tmp_path / "ref.nii.gz")
    assert ours.shape == ref.shape and np.allclose(ours.affine, ref.affine, atol=0.01)
    assert np.array_equal(np.asarray(ours.dataobj), np.asarray(ref.dataobj))
    assert "1 duplicate file" in row["reason"]
    for path in out.rglob("*"):
        rel = path.relative_to(out)
        assert ".." not in rel.parts
        if path.is_file() and path.parent != out:
            assert BIDS_FILE.match(path.name), path.name
    assert not (out.parent / "x").exists() and not list(out.parent.glob("**/x"))
    # One line per row, description cleaned and bounded.
    lines = (out / "series.tsv").read_text().splitlines()
    assert len(lines) == 1 + len(rows)
    assert all(line.count("\t") == 9 for line in lines)
    assert "\x1b" not in (out / "series.tsv").read_text() and len(row["series_description"]) <= 200
    ident = read_tsv(out / "identity.tsv")
    assert any(r["patient_id"] == HOSTILE_ID for r in ident)
    assert all(line.count("\t") == 5 for line in (out / "identity.tsv").read_text().splitlines())
    for secret in ("ACC998877", "Hospital Of Secrets", "Evil", HOSTILE_ID):
        assert secret not in log
        for path in out.rglob("*"):
            if path.is_file() and path.name not in ("identity.tsv",) and not path.name.endswith(".gz"):
                assert secret.encode() not in path.read_bytes(), path


def test_junk_files_one_warning_each(bad_run):
    src, out, rows, log = bad_run
    for name, why in [("notes.txt", "not a DICOM file"), ("empty.dcm", "empty file"), ("trunc", "truncated"),
                      ("trunc_header", "truncated"), ("junk.dcm", "not a DICOM file")]:
        ref = source_ref(name)  # named by a hash of its path, never the path (it may name the patient)
        lines = [line for line in log.splitlines() if f"skipped {ref}:" in line]
        assert len(lines) == 1, (name, lines)
        assert why in lines[0]
        if "." in name:  # the file's name appears nowhere in the log
            assert name not in log
        p = subprocess.run([sys.executable, "-m", "pmlseg", "ingest", str(src), "--locate", ref],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0 and p.stdout.split() == [name], p.stderr


def test_no_leftovers(bad_run):
    _, out, _, _ = bad_run
    assert not list(out.glob(".pmlseg-tmp*"))
    assert [p.name for p in out.rglob(".*")] == [".bidsignore"]


def test_post_contrast_t1_named_with_ce_entity(bad_run):
    _, out, rows, _ = bad_run
    row = rows[107]
    assert (row["classification"], row["status"]) == ("T1w-ce", "converted")
    assert row["path"].endswith("/anat/" + row["subject"] + "_ses-01_ce-gadolinium_T1w.nii.gz")
    sidecar = (out / row["path"].replace(".nii.gz", ".json")).read_text()
    assert "RepetitionTime" in sidecar and "AcquisitionTime" not in sidecar and "SeriesInstanceUID" not in sidecar

