"""Rehearsal of the workflow acceptance check on the shared real pairs, exported as DICOM.

The acceptance check (docs/workflow.md) runs held-back real patients, exported as DICOM (two visits
each, months apart, one with a PML-like lesion injected), through `pmlseg run` on 2 cores and asks:
exit 0 within 15 minutes, sessions.tsv / lesions.tsv / identity.tsv / index.html and a report per
follow-up, mean lesion-wise F1 >= 0.5 of the new-lesion maps, the injected lesion rated high.
This script does the same with the two shared pairs we have (ljubljana-longitudinal patient01 and
patient03), so the whole chain (DICOM -> ingest -> preprocess -> register -> detect -> track ->
index) is measured the way it will be judged:

  * every raw study NIfTI (FLAIR, and T1W/T2W where the visit has them) is written as a classic
    Siemens-like DICOM series (pmlseg.synth.dicom.write_series: geometry from the image, 12-bit);
    visits are dated the interval the data set states apart (patient01 203 days, patient03 671);
  * patient03's follow-up gets the large frontal PML-like lesion of benchmarks/pml_injection.py,
    injected in the follow-up's OWN raw grid (the lesion's intensity change, made on the rebaseline
    grid, is carried there with the data set's reference transforms), so registration and
    detection see it as they would a real one;
  * `pmlseg run DICOM OUT --cores 2` is timed as a whole process;
  * each follow-up's new-lesion map (sessions.tsv, rebaseline physical space) is scored with the
    evaluation protocol of ../shared/data/README.md against gt_direction == 1 (>= 10 mm3), plus the
    injected lesion for patient03; the lesion overlapping the injected mask most must be rated high.

Run: .venv/bin/python benchmarks/heldback_rehearsal.py [--work DIR] [--cores 2] [--keep]
Prints one line per case and PASS/FAIL per criterion; exit 0 when all pass.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pml_injection import CASES as INJECTIONS  # noqa: E402
from pml_injection import inject, load_case  # noqa: E402

from pmlseg.characterise import location as loc  # noqa: E402
from pmlseg.detect.metrics import lesion_metrics  # noqa: E402
from pmlseg.paths import shared_data_dir  # noqa: E402
from pmlseg.tables import read_tsv  # noqa: E402

CASES = {"patient01": 203, "patient03": 671}     # days between the visits (data set README)
INJECT = "patient03"                              # the case that gets the PML-like lesion
SERIES = {  # file modality -> protocol key of pmlseg.synth.protocols (slice thickness from the image)
    "FLAIR": "FLAIR2D", "T1W": "T12D", "T2W": "T2",
}
LIMIT_S = 15 * 60


def _tfm(path: Path) -> sitk.Transform:
    return sitk.ReadTransform(str(path))


def injected_followup(case: str) -> tuple[sitk.Image, sitk.Image]:
    """(raw follow-up FLAIR with the PML-like lesion, injected-lesion mask on the rebaseline grid)."""
    d = shared_data_dir() / "ljubljana-longitudinal" / case
    plain, labels = load_case(case)
    priors = loc.register_to_template(plain["flair_bl"])
    images, labels, inj_id = inject(plain, labels, priors, INJECTIONS[case], plain["flair_bl"])  # new dict
    delta = sitk.Subtract(images["flair_fu"], plain["flair_fu"])          # on the rebaseline grid
    raw = sitk.ReadImage(str(d / "study2_FLAIR.nii.gz"), sitk.sitkFloat32)
    fu_to_bl = sitk.CompositeTransform([_tfm(d / "study1_FLAIR_to_common_space.txt"),
                                        _tfm(d / "study2_FLAIR_to_common_space.txt").GetInverse()])
    delta_raw = sitk.Resample(delta, raw, fu_to_bl, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    mask = sitk.GetImageFromArray((labels == inj_id).astype(np.uint8))
    mask.CopyInformation(images["flair_bl"])
    return sitk.Add(raw, delta_raw), mask


def export_case(case: str, index: int, dicom_root: Path, followup_flair: sitk.Image | None) -> int:
    """Write both visits of ``case`` as DICOM studies; returns the number of files."""
    from pmlseg.synth import protocols
    from pmlseg.synth.dicom import Volume, uid, write_series

    d = shared_data_dir() / "ljubljana-longitudinal" / case
    first = dt.date(2024, 3, 4)
    n = 0
    for visit, date in ((1, first), (2, first + dt.timedelta(days=CASES[case]))):
        common = {
            "PatientName": f"REHEARSAL^CASE{index:02d}", "PatientID": f"RH-{index:04d}",
            "PatientBirthDate": "19800101", "PatientSex": "F", "BodyPartExamined": "BRAIN",
            "PatientPosition": "HFS", "StudyDescription": "MRI BRAIN MS SURVEILLANCE",
            "StudyInstanceUID": uid("rehearsal", case, visit), "FrameOfReferenceUID": uid("rh-for", case, visit),
            "StudyDate": date.strftime("%Y%m%d"), "SeriesDate": date.strftime("%Y%m%d"),
            "AcquisitionDate": date.strftime("%Y%m%d"), "StudyTime": "090000", "StudyID": str(visit),
            "AccessionNumber": f"RH{index:02d}{visit:02d}", "Manufacturer": "SIEMENS",
            "ManufacturerModelName": "Avanto", "MagneticFieldStrength": "1.5",
        }
        for s_no, (mod, key) in enumerate(SERIES.items(), start=1):
            path = d / f"study{visit}_{mod}.nii.gz"
            if not path.exists():
                continue
            img = followup_flair if (mod == "FLAIR" and visit == 2 and followup_flair is not None) else \
                sitk.ReadImage(str(path), sitk.sitkFloat32)
            img = sitk.Cast(img, sitk.sitkFloat32)
            arr = sitk.GetArrayViewFromImage(img)
            scale = 3000.0 / max(float(np.percentile(arr[arr > 0], 99.9)), 1e-6)
            el = protocols._elements("SIEMENS", key, "2D", img.GetSpacing()[2])
            el.update({"SeriesNumber": s_no, "SeriesInstanceUID": uid("rehearsal", case, visit, s_no),
                       "SeriesTime": f"09{10 + s_no:02d}00"})
            folder = dicom_root / f"{case}-v{visit}" / f"{s_no:02d}_{mod}"
            n += len(write_series([Volume(img)], folder,
                                  common, el, lambda i: f"IM{i:05d}.dcm", scale,
                                  uid_parts=("rehearsal", case, visit, s_no)))
    return n


def score(out: Path, case_of_subject: dict, injected_mask: sitk.Image) -> list[dict]:
    """Protocol metrics per follow-up and the injected lesion's rating."""
    sessions = [r for r in read_tsv(out / "sessions.tsv") if r["role"] != "rebaseline"]
    lesions = read_tsv(out / "lesions.tsv")
    results = []
    for row in sessions:
        case = case_of_subject[row["subject"]]
        d = shared_data_dir() / "ljubljana-longitudinal" / case
        gt = sitk.ReadImage(str(d / "gt_direction.nii.gz"))
        to_bl = _tfm(d / "study1_FLAIR_to_common_space.txt")
        gt_new = sitk.GetArrayFromImage(gt) == 1
        res = {"case": case, "subject": row["subject"], "session": row["session"], "qc": row["qc"],
               "report": (out / row["report"]).is_file() if row.get("report") else False}
        if not row.get("new_lesions"):
            res.update(f1=0.0, note=f"no new-lesion map ({row.get('reason', '')})")
            results.append(res)
            continue
        labels = sitk.ReadImage(str(out / row["new_lesions"]))
        pred = sitk.GetArrayFromImage(sitk.Resample(labels, gt, to_bl, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16))
        if case == INJECT:
            gt_new |= sitk.GetArrayFromImage(sitk.Resample(injected_mask, gt, to_bl, sitk.sitkNearestNeighbor, 0,
                                                           sitk.sitkUInt8)) > 0
        res.update(lesion_metrics(pred, gt_new, gt.GetSpacing()))
        if case == INJECT:
            on_map = sitk.GetArrayFromImage(sitk.Resample(injected_mask, labels, sitk.Transform(),
                                                          sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)) > 0
            lab = sitk.GetArrayFromImage(labels)
            over = np.bincount(lab[on_map].ravel(), minlength=int(lab.max()) + 1)[1:]
            if over.any():
                lid = int(np.argmax(over) + 1)
                hit = [r for r in lesions if r["subject"] == row["subject"] and r["session"] == row["session"]
                       and int(r["detect_label"]) == lid]
                res["injected"] = hit[0]["pml_suspicion"] if hit else "not in lesions.tsv"
            else:
                res["injected"] = "not detected"
        results.append(res)
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, help="work folder (default: a temporary one, removed unless --keep)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--config", nargs="*", default=[], help="extra `pmlseg run --config` KEY=VALUE")
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="pmlseg-rehearsal-"))
    dicom, out = work / "dicom", work / "out"
    if dicom.exists():
        shutil.rmtree(dicom)
    t = time.time()
    fu_flair, inj_mask = injected_followup(INJECT)
    n = sum(export_case(c, i, dicom, fu_flair if c == INJECT else None) for i, c in enumerate(CASES, start=1))
    print(f"exported {n} DICOM files in {time.time() - t:.0f} s -> {dicom}")
    cmd = [sys.executable, "-m", "pmlseg", "run", str(dicom), str(out), "--cores", str(args.cores)]
    if args.config:
        cmd += ["--config", *args.config]
    t = time.time()
    rc = subprocess.run(cmd).returncode
    wall = time.time() - t
    print(f"pmlseg run: exit {rc} in {wall:.0f} s ({wall / 60:.1f} min; limit {LIMIT_S // 60} min)")
    files_ok = all((out / f).is_file() for f in ("sessions.tsv", "lesions.tsv", "identity.tsv", "index.html"))
    checks = {"exit 0": rc == 0, f"<= {LIMIT_S // 60} min": wall <= LIMIT_S, "four files": files_ok}
    if files_ok:
        ident = read_tsv(out / "identity.tsv")
        case_of = {r["subject"]: list(CASES)[int(r["patient_id"].split("-")[-1]) - 1] for r in ident}
        results = score(out, case_of, inj_mask)
        for r in results:
            print("  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()))
        f1 = float(np.mean([r.get("f1", 0.0) for r in results])) if results else 0.0
        checks["report per follow-up"] = len(results) == len(CASES) and all(r["report"] for r in results)
        checks[f"mean F1 {f1:.2f} >= 0.5"] = f1 >= 0.5
        inj = next((r.get("injected") for r in results if r["case"] == INJECT), None)
        checks[f"injected lesion rated high ({inj})"] = inj == "high"
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    if args.work is None and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
