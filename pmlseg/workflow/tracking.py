"""Follow each new/enlarging lesion across a patient's visits: stable lesion ids and growth curves.

Every follow-up's detection against the rebaseline gives a label map on the rebaseline's grid, so all
visits of a patient share one space and a lesion is the same lesion when it overlaps (within one voxel)
the same lesion's extent at the last visit it was seen.  Ids (L001, L002, ...) are given in order of
first appearance, then size, so they are stable when a later visit is added.  Detection against the
previous visit, carried into rebaseline space, says which lesions are new since the last scan.

Growth feeds the PML score: a lesion tracked from an earlier visit gets growth_ml_per_month (its volume
change since the last visit it was seen, over the days between the scans) and is re-scored from its
lesions.tsv features with configs/pml_rules.yaml, so a lesion that grows between scans ranks higher;
a first-seen lesion keeps growth unmeasured (listed in pml_unavailable).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pmlseg.errors import PmlsegError
from pmlseg.workflow import layout
from pmlseg.tables import read_tsv, typed_row
from pmlseg.workflow.manifest import read_manifest, write_tsv
from pmlseg.workflow.step import read_status, write_status
from pmlseg.workflow.suspicion import suspicion_rank

log = logging.getLogger(__name__)

LESION_COLUMNS = ["subject", "session", "days", "lesion_id", "detect_label", "volume_mm3", "first_seen",
                  "growth_mm3", "growth_ml_per_month", "new_since_previous"]
DAYS_PER_MONTH = 30.44
TRACK_COLUMNS = ["subject", "lesion_id", "first_seen", "last_seen", "n_visits", "first_volume_mm3",
                 "last_volume_mm3", "growth_curve", "max_pml_score", "pml_suspicion"]


@dataclass
class Track:
    lesion_id: str
    last_mask: np.ndarray
    volumes: dict = field(default_factory=dict)  # session -> mm3


def _load_labels(path: Path, ref_shape=None) -> tuple[np.ndarray, float]:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        arr = np.asarray(img.dataobj).astype(np.int32)
    except Exception as exc:  # nibabel raises many types for broken files
        raise PmlsegError(f"{path}: unreadable label map ({exc})") from None
    if arr.ndim != 3:
        raise PmlsegError(f"{path}: label map is {arr.ndim}-D, expected 3-D")
    if ref_shape is not None and arr.shape != ref_shape:
        raise PmlsegError(f"{path}: grid {arr.shape} differs from the other visits' {ref_shape} "
                          "(detection against the rebaseline must write on the rebaseline grid)")
    return arr, float(np.prod(img.header.get_zooms()[:3]))


def _previous_in_rebaseline(out: Path, sub: str, ses: str, prev: str, ref_path: Path) -> np.ndarray | None:
    """The vs-previous label map resampled onto the rebaseline grid (nearest neighbour), or None."""
    import SimpleITK as sitk

    d = out / layout.detect_dir(sub, ses, "previous")
    if read_status(d / "status.json").get("status") != "ok" or not (d / "new_lesions.nii.gz").exists():
        return None
    moving = sitk.ReadImage(str(d / "new_lesions.nii.gz"))
    ref = sitk.ReadImage(str(ref_path))
    tfm = sitk.ReadTransform(str(out / layout.to_rebaseline_tfm(sub, prev)))
    res = sitk.Resample(moving, ref, tfm, sitk.sitkNearestNeighbor, 0, moving.GetPixelID())
    return sitk.GetArrayFromImage(res).transpose(2, 1, 0)  # to nibabel's (x, y, z) order


def _detect_rows(path: Path) -> dict[int, dict]:
    """Detection's lesions.tsv by label value (lesion_id as an integer, else row order)."""
    if not path.exists():
        return {}
    rows = read_tsv(path)
    out = {}
    for i, r in enumerate(rows, 1):
        try:
            out[int(str(r.get("lesion_id", "")).lstrip("Ll"))] = r
        except ValueError:
            out[i] = r
    return out


def growth_per_month(volumes: dict, days: dict, ses: str) -> tuple[float | None, str]:
    """(ml/month since the last earlier visit in ``volumes`` (session -> mm3, in visit order), why not)."""
    order = list(volumes)
    if order.index(ses) == 0:
        return None, "first seen at this visit: no earlier volume"
    prev = order[order.index(ses) - 1]
    try:
        interval = float(days[ses]) - float(days[prev])
    except (KeyError, TypeError, ValueError):
        return None, f"no scan dates for {prev} and {ses}"
    if interval <= 0:
        return None, f"{ses} is not later than {prev}"
    return (volumes[ses] - volumes[prev]) / 1000.0 / (interval / DAYS_PER_MONTH), ""


def rescore_with_growth(row: dict, growth: float | None, why: str, rules: dict) -> None:
    """Re-score a detected lesion's row (its lesions.tsv features) with its measured growth, in place.
    Rows without the score's features (no pml_logit: not scored by pmlseg detect) keep their score."""
    from pmlseg.characterise.pml_score import score_lesion
    from pmlseg.report.visit import reasons_text

    row["growth_ml_per_month"] = None if growth is None else round(growth, 3)
    if row.get("pml_logit") in (None, ""):
        return
    s = score_lesion({**typed_row(row), "growth_ml_per_month": growth, "growth_unavailable": why}, rules)
    for k in ("pml_score", "pml_logit", "pml_suspicion", "pml_explanation", "pml_unavailable"):
        row[k] = s[k]
    row["reasons"] = reasons_text(s["reasons"])


def track_subject(out: Path, subject: str, manifest: list[dict]) -> tuple[list[dict], list[dict]]:
    """Lesion rows (one per lesion per visit) and track rows (one per lesion) for ``subject``."""
    from scipy import ndimage

    from pmlseg.characterise import load_rules

    visits = [r for r in manifest if r["subject"] == subject and r["role"] == "follow-up"]
    days = {r["session"]: r.get("days") for r in manifest if r["subject"] == subject}
    rules = None
    tracks: list[Track] = []
    lesion_rows: list[dict] = []
    ref_shape = None
    extra_cols: list[str] = []
    for v in visits:
        ses = v["session"]
        d = out / layout.detect_dir(subject, ses, "rebaseline")
        if read_status(d / "status.json").get("status") != "ok":
            continue
        labels, vox = _load_labels(d / "new_lesions.nii.gz", ref_shape)
        ref_shape = labels.shape
        det = _detect_rows(d / "lesions.tsv")
        for r in det.values():
            extra_cols += [c for c in r if c not in extra_cols]
        prev_map = None
        if v.get("previous") and v["previous"] != _rebaseline_of(manifest, subject):
            prev_map = _previous_in_rebaseline(out, subject, ses, v["previous"], d / "new_lesions.nii.gz")
        # every per-lesion step works on the lesion's bounding box grown by the dilation's reach (one
        # voxel): whole-volume masks and dilations per lesion took seconds per visit on a 1 mm grid
        counts = np.bincount(labels.ravel())
        boxes = ndimage.find_objects(labels)
        ids = sorted((x for x in range(1, len(counts)) if counts[x] > 0), key=lambda x: -int(counts[x]))
        box_of, mask_of = {}, {}
        for lab in ids:
            box_of[lab] = tuple(slice(max(0, b.start - 1), min(n, b.stop + 1)) for b, n in zip(boxes[lab - 1], labels.shape))
            mask_of[lab] = labels[box_of[lab]] == lab
        claimed: dict[int, Track] = {}
        for lab in ids:
            box, m = box_of[lab], mask_of[lab]
            grown = ndimage.binary_dilation(m, iterations=1)
            best, best_ov = None, 0
            for t in tracks:
                ov = int(np.count_nonzero(grown & t.last_mask[box]))
                if ov > best_ov:
                    best, best_ov = t, ov
            if best is None:
                best = Track(f"L{len(tracks) + 1:03d}", _full(m, box, labels.shape))
                tracks.append(best)
            claimed.setdefault(lab, best)
        seen: dict[str, np.ndarray] = {}
        for lab, t in claimed.items():
            if t.lesion_id not in seen:
                seen[t.lesion_id] = np.zeros(labels.shape, bool)
            seen[t.lesion_id][box_of[lab]] |= mask_of[lab]
        for t in tracks:
            if t.lesion_id in seen:
                t.last_mask = seen[t.lesion_id]
                t.volumes[ses] = float(np.count_nonzero(seen[t.lesion_id]) * vox)
        for lab, t in claimed.items():
            m = mask_of[lab]
            first = next(iter(t.volumes))
            if prev_map is not None:
                new_prev = "yes" if np.any(prev_map[box_of[lab]][m] > 0) else "no"
            else:
                new_prev = "yes" if first == ses else "no"
            row = {"subject": subject, "session": ses, "days": v.get("days", ""), "lesion_id": t.lesion_id,
                   "detect_label": lab, "volume_mm3": round(float(np.count_nonzero(m) * vox), 1),
                   "first_seen": first, "growth_mm3": round(t.volumes[ses] - t.volumes[first], 1),
                   "new_since_previous": new_prev}
            for k, val in det.get(lab, {}).items():
                if k not in row and k != "lesion_id":
                    row[k] = val
            if row.get("pml_logit") not in (None, "") and rules is None:
                rules = load_rules()
            rescore_with_growth(row, *growth_per_month(t.volumes, days, ses), rules)
            lesion_rows.append(row)
    track_rows = []
    for t in tracks:
        mine = [r for r in lesion_rows if r["lesion_id"] == t.lesion_id]
        scores = [float(r["pml_score"]) for r in mine if _is_number(r.get("pml_score"))]
        sus = max((r.get("pml_suspicion", "") for r in mine), key=suspicion_rank, default="")
        sessions = list(t.volumes)
        track_rows.append({
            "subject": subject, "lesion_id": t.lesion_id, "first_seen": sessions[0], "last_seen": sessions[-1],
            "n_visits": len(sessions), "first_volume_mm3": round(t.volumes[sessions[0]], 1),
            "last_volume_mm3": round(t.volumes[sessions[-1]], 1),
            "growth_curve": ";".join(f"{s}:{t.volumes[s]:.1f}" for s in sessions),
            "max_pml_score": max(scores) if scores else "", "pml_suspicion": sus})
    return lesion_rows, track_rows


def _full(box_mask: np.ndarray, box: tuple, shape) -> np.ndarray:
    out = np.zeros(shape, bool)
    out[box] = box_mask
    return out


def _rebaseline_of(manifest: list[dict], subject: str) -> str:
    return next((r["session"] for r in manifest if r["subject"] == subject and r["role"] == "rebaseline"), "")


def _is_number(x) -> bool:
    try:
        float(x)
        return True
    except (TypeError, ValueError):
        return False


def lesion_columns(rows: list[dict]) -> list[str]:
    cols = list(LESION_COLUMNS)
    for r in rows:
        cols += [c for c in r if c not in cols]
    return cols


def write_tracking(out: Path, subject: str, manifest_path: Path) -> tuple[int, int]:
    manifest = read_manifest(manifest_path)
    if not any(r["subject"] == subject for r in manifest):
        raise PmlsegError(f"{manifest_path}: no subject {subject}")
    lesions, tracks = track_subject(out, subject, manifest)
    write_tsv(out / layout.tracking_lesions(subject), lesions, lesion_columns(lesions))
    write_tsv(out / layout.tracking_tracks(subject), tracks, TRACK_COLUMNS)
    from pmlseg.workflow.patient_report import write_patient_report

    write_patient_report(out, subject, manifest, lesions, tracks)
    write_status(out / layout.tracking_status(subject), "ok", "", stage="track",
                 n_lesions=len(tracks))
    log.info("%s: %d lesions tracked over %d detections", subject, len(tracks), len(lesions))
    return len(tracks), len(lesions)
