"""End-to-end checks of `pmlseg synth`: real DICOM, real dcm2niix, ground truth that lines up."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from pmlseg.synth.cohort import generate_cohort
from pmlseg.synth.dicom import MR_IMAGE_STORAGE, SECONDARY_CAPTURE
from pmlseg.tables import read_tsv

DCM2NIIX = Path(sys.executable).parent / "dcm2niix"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "cohort"
    generate_cohort(out, n_patients=2, n_visits=2, seed=0, show_progress=False)
    return out


def _rows(cohort: Path) -> list[dict]:
    return read_tsv(cohort / "ground_truth" / "cohort.tsv")


def _series_folders(study: Path) -> dict[str, Path]:
    """SeriesInstanceUID -> folder, found by reading one file per folder (names are vendor-specific)."""
    out = {}
    for folder in sorted(p for p in study.iterdir() if p.is_dir()):
        first = sorted(folder.iterdir())[0]
        out[pydicom.dcmread(first, stop_before_pixels=True).SeriesInstanceUID] = folder
    return out


def _dcm2niix(folder: Path, tmp: Path) -> list[Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    res = subprocess.run([str(DCM2NIIX), "-z", "y", "-f", "%s", "-o", str(tmp), str(folder)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    return sorted(tmp.glob("*.nii.gz"))


def test_layout_and_cohort_table(cohort):
    rows = _rows(cohort)
    assert len(rows) == 4
    assert sum(r["pml_patient"] == "yes" for r in rows) == 2  # one patient, two visits
    assert not list((cohort / "dicom").rglob("*.nii*")), "ground truth must not sit inside the DICOM tree"
    for r in rows:
        gt = cohort / "ground_truth" / r["patient_id"] / f"visit-{r['visit']}"
        for name in ("lesions.nii.gz", "new_or_enlarging.nii.gz", "lesions.tsv", "mni/lesions.nii.gz",
                     "mni/new_or_enlarging.nii.gz", "mni/scanner_to_mni.tfm"):
            assert (gt / name).is_file(), gt / name
    # follow-ups 3-6 months apart
    for r in rows:
        if r["visit"] == "2":
            assert 85 <= int(r["days_since_baseline"]) <= 190
    assert not [p for p in cohort.parent.iterdir() if ".partial-" in p.name], "temporary folder left behind"


def test_clinical_table_fills_the_risk_and_schedule(cohort):
    """clinical.tsv (by PatientID, as a clinic would export it): the PML patient is high risk, the other is
    not; the demo passes it to the workflow with a reference date 90 days after the last scan."""
    import datetime as dt

    from pmlseg.commands.demo import demo_config
    from pmlseg.workflow.risk import read_clinical, stratify

    rows = _rows(cohort)
    identity = [{"patient_id": r["patient_id"], "subject": r["patient_id"]} for r in rows]
    clinical = read_clinical(cohort / "clinical.tsv", identity)
    assert set(clinical) == {r["patient_id"] for r in rows}
    last = {r["patient_id"]: dt.date.fromisoformat(r["study_date"]) for r in rows}  # rows are in visit order
    risk = {pid: stratify(c, last[pid]) for pid, c in clinical.items()}
    pml = {r["patient_id"]: r["pml_patient"] == "yes" for r in rows}
    assert all(risk[pid].high_risk == pml[pid] and risk[pid].per_1000 is not None for pid in risk), risk
    assert demo_config(cohort) == [f"clinical={cohort / 'clinical.tsv'}",
                                   f"today={(max(last.values()) + dt.timedelta(days=90)).isoformat()}"]


def test_dicom_is_mr_image_storage_with_fake_identifiers(cohort):
    files = [p for p in (cohort / "dicom").rglob("*") if p.is_file()]
    assert len(files) > 300
    kinds = {"localizer": 0, "derived": 0}
    vendors = set()
    for path in files[::7]:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.SOPClassUID in (MR_IMAGE_STORAGE, SECONDARY_CAPTURE)
        assert pydicom.uid.UID(ds.SOPInstanceUID).is_valid and ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
        assert str(ds.PatientName).startswith("SYNTH^DEMO") and ds.PatientID.startswith("SYN-")
        assert ds.InstitutionName == "Synthetic Hospital" and ds.AccessionNumber and len(ds.PatientBirthDate) == 8
        vendors.add(ds.Manufacturer)
        if ds.SOPClassUID == MR_IMAGE_STORAGE:
            assert ds.MagneticFieldStrength and ds.ManufacturerModelName and ds.SeriesDescription
        if "LOCALIZER" in ds.ImageType:
            kinds["localizer"] += 1
        if ds.ImageType[0] == "DERIVED":
            kinds["derived"] += 1
    assert len(vendors) == 2  # two patients, two vendors
    # every study has a localizer and a derived screen save that ingest must skip
    for study in (cohort / "dicom").iterdir():
        types = [list(pydicom.dcmread(sorted(f.iterdir())[0], stop_before_pixels=True).ImageType)
                 for f in study.iterdir()]
        assert any("LOCALIZER" in t for t in types) and any(t[0] == "DERIVED" for t in types)
        assert len(types) >= 6
    # pixel data decodes and is plausible (not empty, 12-bit)
    ds = pydicom.dcmread(files[len(files) // 2])
    assert 0 <= ds.pixel_array.min() and ds.pixel_array.max() <= 4095


def test_flair_dcm2niix_matches_ground_truth_grid(cohort, tmp_path):
    for r in _rows(cohort):
        folder = _series_folders(cohort / r["dicom_study_dir"])[r["flair_series_uid"]]
        (nii,) = _dcm2niix(folder, tmp_path / r["patient_id"] / r["visit"])
        img = nib.load(nii)
        gt = nib.load(cohort / "ground_truth" / r["patient_id"] / f"visit-{r['visit']}" / "lesions.nii.gz")
        assert img.shape == gt.shape, (r["flair_protocol"], img.shape, gt.shape)
        assert np.abs(img.affine - gt.affine).max() < 0.01, (r["flair_protocol"], img.affine, gt.affine)
        # voxel-by-voxel agreement: lesions are FLAIR-bright where the truth says they are
        flair = np.asarray(img.dataobj, dtype=np.float32)
        labels = np.asarray(gt.dataobj)
        brain = flair > np.percentile(flair, 60)
        assert np.median(flair[labels > 0]) > 1.3 * np.median(flair[brain & (labels == 0)])
    # both FLAIR protocols were checked: 3D (dcm2niix turns it to RAS) and angulated thick-slice 2D
    assert {r["flair_protocol"] for r in _rows(cohort)} == {"3D sag 1 mm", "2D ax 0.7x0.7x3 mm"}


def test_dwi_gives_b0_and_b1000(cohort, tmp_path):
    for r in _rows(cohort)[:3]:
        study = cohort / r["dicom_study_dir"]
        for uid, folder in _series_folders(study).items():
            ds = pydicom.dcmread(sorted(folder.iterdir())[0], stop_before_pixels=True)
            if "DiffusionBValue" not in ds:
                continue
            (nii,) = _dcm2niix(folder, tmp_path / uid[-12:])
            bvals = [float(b) for b in nii.with_name(nii.name.replace(".nii.gz", ".bval")).read_text().split()]
            assert 0 in bvals and 1000 in bvals
            assert nib.load(nii).shape[3] == len(bvals)
            assert nii.with_name(nii.name.replace(".nii.gz", ".bvec")).is_file()
            break
        else:
            pytest.fail(f"no DWI series in {study}")


def test_lesions_lie_in_white_matter(cohort):
    from pmlseg.synth.anatomy import load_template

    wm = load_template().wm
    for r in _rows(cohort):
        lab = np.asarray(nib.load(cohort / "ground_truth" / r["patient_id"] / f"visit-{r['visit']}" / "mni" / "lesions.nii.gz").dataobj)
        assert lab.shape == wm.shape
        inside = wm[lab > 0]
        assert inside.size > 100
        assert np.mean(inside > 0.5) > 0.9


def test_pml_lesion_grows_and_follow_ups_have_new_lesions(cohort):
    rows = _rows(cohort)
    pml = [r for r in rows if r["pml_patient"] == "yes"]
    vols = [float(r["pml_volume_mm3"]) for r in pml]
    assert vols[0] > 500 and vols[1] > 1.5 * vols[0], vols
    assert pml[1]["pml_status"] == "enlarging"
    # on the FLAIR grid too: the PML label covers more mm3 at the follow-up
    pid = pml[0]["patient_id"]
    tables = []
    for v in (1, 2):
        tables.append({int(t["id"]): t for t in read_tsv(cohort / "ground_truth" / pid / f"visit-{v}" / "lesions.tsv")})
    (pml_id,) = [i for i, t in tables[1].items() if t["kind"] == "pml" and t["location"] != "satellite"]
    assert float(tables[1][pml_id]["volume_mm3_flair_grid"]) > 1.5 * float(tables[0][pml_id]["volume_mm3_flair_grid"])
    # ids are stable: every baseline lesion is still there with the same kind
    for i, t in tables[0].items():
        assert tables[1][i]["kind"] == t["kind"]
    for r in rows:
        change = np.asarray(nib.load(cohort / "ground_truth" / r["patient_id"] / f"visit-{r['visit']}" / "new_or_enlarging.nii.gz").dataobj)
        lesions = np.asarray(nib.load(cohort / "ground_truth" / r["patient_id"] / f"visit-{r['visit']}" / "lesions.nii.gz").dataobj)
        if r["visit"] == "1":
            assert change.sum() == 0
        else:
            assert change.sum() > 20 and int(r["n_new"]) >= 1
            assert np.mean(lesions[change > 0] > 0) > 0.95


def _fingerprint(root: Path, patient_id: str) -> str:
    """Hash of one patient's DICOM (paths, UIDs, pixels), truth arrays and cohort.tsv rows."""
    h = hashlib.sha256()
    rows = [r for r in _rows(root) if r["patient_id"] == patient_id]
    for r in rows:
        h.update(repr(sorted(r.items())).encode())
        for path in sorted(p for p in (root / r["dicom_study_dir"]).rglob("*") if p.is_file()):
            ds = pydicom.dcmread(path)
            h.update(str(path.relative_to(root)).encode())
            h.update(ds.SOPInstanceUID.encode())
            h.update(ds.PixelData)
    for path in sorted((root / "ground_truth" / patient_id).rglob("*.nii.gz")):
        h.update(np.asarray(nib.load(path).dataobj).tobytes())
    return h.hexdigest()


def test_same_seed_gives_the_same_patient(cohort, tmp_path):
    """Deterministic for a seed; a patient's data depends only on (seed, patient), not cohort size."""
    again = tmp_path / "again"
    generate_cohort(again, n_patients=1, n_visits=2, seed=0, show_progress=False)
    assert _fingerprint(again, "SYN-0001") == _fingerprint(cohort, "SYN-0001")
    shutil.rmtree(again)


def test_series_table_and_true_visit_to_visit_transform(cohort):
    import SimpleITK as sitk

    series = read_tsv(cohort / "ground_truth" / "series.tsv")
    assert {s["expected"] for s in series} == {"FLAIR", "T1w", "T2w", "dwi", "skip:localizer", "skip:derived"}
    for s in series:
        assert len([p for p in (cohort / s["series_folder"]).iterdir()]) == int(s["n_files"])
    # the stored baseline->follow-up mapping brings the follow-up truth back onto the baseline truth
    for pid in {r["patient_id"] for r in _rows(cohort)}:
        gt = cohort / "ground_truth" / pid
        base = sitk.ReadImage(str(gt / "visit-1" / "lesions.nii.gz"))
        follow = sitk.ReadImage(str(gt / "visit-2" / "lesions.nii.gz"))
        tfm = sitk.ReadTransform(str(gt / "visit-2" / "baseline_to_this_visit.tfm"))
        back = sitk.GetArrayFromImage(sitk.Resample(follow, base, tfm, sitk.sitkNearestNeighbor, 0))
        b = sitk.GetArrayFromImage(base)
        stable = [int(t["id"]) for t in read_tsv(gt / "visit-2" / "lesions.tsv") if t["status"] == "stable"]
        dice = [2 * ((b == i) & (back == i)).sum() / ((b == i).sum() + (back == i).sum())
                for i in stable if (b == i).sum() > 30]
        assert len(dice) >= 3 and np.median(dice) > 0.6, dice
        # and with the identity instead, they do not line up as well (the poses really differ)
        ident = sitk.GetArrayFromImage(sitk.Resample(follow, base, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
        dice_id = [2 * ((b == i) & (ident == i)).sum() / ((b == i).sum() + (ident == i).sum())
                   for i in stable if (b == i).sum() > 30]
        assert np.median(dice_id) < np.median(dice)
