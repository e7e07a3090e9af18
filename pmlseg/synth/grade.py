"""Grade a workflow run on a synthetic cohort against the cohort's own truth (`pmlseg demo`'s self-check).

So a new user sees at once what the detector does on data whose truth is known. What is graded: each
follow-up's ``detect-rebaseline/new_lesions.nii.gz`` (the operating-point lesions; review-only
candidates are not in it), on the rebaseline's grid where detection wrote it.

The truth of follow-up visit k against the rebaseline visit r (r < k, visits of the synthetic cohort):
the voxels that became lesion in any interval r->r+1, ..., k-1->k and are lesion at visit k, i.e. the
union of ``mni/new_or_enlarging.nii.gz`` of visits r+1..k intersected with ``mni/lesions.nii.gz`` of
visit k (synthetic lesions never shrink, so for k = r+1 this is visit k's own new_or_enlarging mask).
It is built on the template grid, which all visits share, and put on the prediction's grid through the
rebaseline visit's TRUE head pose (``mni/scanner_to_mni.tfm``, nearest neighbour), exactly as
`pmlseg synth` put each visit's truth on its FLAIR grid: the pipeline's own registration plays no part.
Scoring is pmlseg.detect.metrics.lesion_metrics (GT lesions >= 10 mm3, 26-connected); pooled figures
are summed counts over the graded follow-ups.

Sessions are matched to synthetic visits by (patient, study date) through OUT/identity.tsv; the
written OUT/detector_check.json holds pseudonyms and visit numbers only, no identifiers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from pmlseg.errors import PmlsegError

CHECK_FILE = "detector_check.json"
DEFINITION = ("GT per follow-up k vs rebaseline r: voxels new or enlarging in any interval r..k that are lesion "
              "at visit k (synthetic truth, template grid), put on the rebaseline grid with the true head pose; "
              "lesion-wise: GT components >= 10 mm3 (26-connected) touched by a detection, detections touching GT")


def _tsv(path: Path) -> list[dict]:
    from pmlseg.workflow.manifest import read_tsv

    if not path.is_file():
        raise PmlsegError(f"{path}: not found")
    return read_tsv(path)


def _visit_of_session(out: Path, synth: Path) -> dict[tuple[str, str], tuple[str, int]]:
    """(subject, session) -> (synthetic PatientID, visit number), matched on patient and study date."""
    from pmlseg.tables import parse_date

    visits = {}
    for r in _tsv(synth / "ground_truth" / "cohort.tsv"):
        visits[r["patient_id"], parse_date(r["study_date"])] = int(r["visit"])
    found = {}
    for r in _tsv(out / "identity.tsv"):
        key = (r["patient_id"], parse_date(r["study_date"], str(out / "identity.tsv")))
        if key in visits:
            found[r["subject"], r["session"]] = (r["patient_id"], visits[key])
    return found


def _read(path: Path):
    import SimpleITK as sitk

    if not path.is_file():
        raise PmlsegError(f"{path}: ground truth file not found")
    return sitk.ReadImage(str(path))


def truth_on_grid(synth: Path, patient_id: str, rebaseline_visit: int, visit: int, reference):
    """New/enlarging truth of ``visit`` vs ``rebaseline_visit`` on ``reference``'s grid (a SimpleITK image)."""
    import SimpleITK as sitk

    gt_dir = synth / "ground_truth" / patient_id
    change = None
    for k in range(rebaseline_visit + 1, visit + 1):
        arr = sitk.GetArrayFromImage(_read(gt_dir / f"visit-{k}" / "mni" / "new_or_enlarging.nii.gz")) > 0
        change = arr if change is None else change | arr
    lesions = _read(gt_dir / f"visit-{visit}" / "mni" / "lesions.nii.gz")
    change &= sitk.GetArrayFromImage(lesions) > 0
    img = sitk.GetImageFromArray(change.astype(np.uint8))
    img.CopyInformation(lesions)
    pose = sitk.ReadTransform(str(gt_dir / f"visit-{rebaseline_visit}" / "mni" / "scanner_to_mni.tfm"))
    return sitk.Resample(img, reference, pose, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


def _clean(x):
    """JSON has no NaN: undefined ratios (no GT lesion, no detection) become null."""
    if isinstance(x, float) and math.isnan(x):
        return None
    return round(x, 4) if isinstance(x, float) else x


def pooled(rows: list[dict]) -> dict:
    """Sensitivity, precision and F1 from counts summed over the graded follow-ups."""
    graded = [r for r in rows if r["graded"]]
    gt, pred = sum(r["gt"] for r in graded), sum(r["pred"] for r in graded)
    tp_gt, tp_pred = sum(r["tp_gt"] for r in graded), sum(r["tp_pred"] for r in graded)
    sens = tp_gt / gt if gt else float("nan")
    prec = tp_pred / pred if pred else float("nan")
    f1 = 2 * sens * prec / (sens + prec) if gt and pred and sens + prec > 0 else 0.0
    return {"followups": len(graded), "not_graded": len(rows) - len(graded), "gt": gt, "pred": pred,
            "tp_gt": tp_gt, "tp_pred": tp_pred, "sens": sens, "prec": prec, "f1": f1,
            "fp_per_followup": (pred - tp_pred) / len(graded) if graded else float("nan")}


def grade(out: str | Path, synth: str | Path) -> dict:
    """Grade every follow-up of workflow output ``out`` against synthetic cohort ``synth``; writes OUT/detector_check.json."""
    import SimpleITK as sitk

    from pmlseg.atomic import write_text
    from pmlseg.detect.metrics import MIN_GT_MM3, lesion_metrics
    from pmlseg.workflow import layout
    from pmlseg.workflow.manifest import read_manifest
    from pmlseg.workflow.step import read_status

    out, synth = Path(out), Path(synth)
    visit_of = _visit_of_session(out, synth)
    manifest = read_manifest(out / "manifest.tsv")
    rebaseline = {r["subject"]: r["session"] for r in manifest if r["role"] == "rebaseline"}
    rows = []
    for r in manifest:
        if r["role"] != "follow-up":
            continue
        sub, ses = r["subject"], r["session"]
        if (sub, ses) not in visit_of or (sub, rebaseline.get(sub)) not in visit_of:
            raise PmlsegError(f"{out / 'identity.tsv'}: {sub} {ses} or its rebaseline matches no visit of "
                              f"{synth / 'ground_truth' / 'cohort.tsv'} (is OUT a run on this cohort?)")
        pid, visit = visit_of[sub, ses]
        reb_visit = visit_of[sub, rebaseline[sub]][1]
        row = {"subject": sub, "session": ses, "visit": visit, "rebaseline_visit": reb_visit}
        det = layout.detect_dir(sub, ses, "rebaseline")
        status = read_status(out / layout.detect_status(sub, ses, "rebaseline"))
        if status.get("status") != "ok" or not (out / det / "new_lesions.nii.gz").is_file():
            rows.append({**row, "graded": False,
                         "reason": f"no new-lesion map ({status.get('reason') or status.get('status', 'missing')})"})
            continue
        pred = sitk.ReadImage(str(out / det / "new_lesions.nii.gz"))
        truth = truth_on_grid(synth, pid, reb_visit, visit, pred)
        m = lesion_metrics(sitk.GetArrayFromImage(pred), sitk.GetArrayFromImage(truth) > 0, pred.GetSpacing())
        rows.append({**row, "graded": True, "new_lesions": f"{det}/new_lesions.nii.gz", **m})
    check = {"definition": DEFINITION, "min_gt_mm3": MIN_GT_MM3, "ground_truth": str(synth / "ground_truth"),
             "pooled": pooled(rows), "followups": rows}
    check = _jsonable(check)
    write_text(out / CHECK_FILE, json.dumps(check, indent=1) + "\n")
    return check


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_jsonable(v) for v in x]
    return _clean(x)


def _ratio(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def summary_lines(check: dict) -> list[str]:
    """The 3-4 lines `pmlseg demo` prints and the cohort index shows."""
    p = check["pooled"]
    lines = [f"Detector check on this synthetic cohort ({p['followups']} follow-up(s) graded against the "
             f"cohort's own truth, new/enlarging lesions >= {check['min_gt_mm3']:g} mm3):",
             f"  sensitivity {_ratio(p['sens'])} ({p['tp_gt']} of {p['gt']} true lesions found), "
             f"precision {_ratio(p['prec'])} ({p['tp_pred']} of {p['pred']} detections are true), "
             f"F1 {_ratio(p['f1'])}",
             f"  false positives per follow-up {_ratio(p['fp_per_followup'])}"]
    if p["not_graded"]:
        lines.append(f"  {p['not_graded']} follow-up(s) not graded: no new-lesion map (see the index's problems)")
    return lines
