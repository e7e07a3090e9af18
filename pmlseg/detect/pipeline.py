"""One case end to end: raw rebaseline + follow-up FLAIR -> registration + QC -> model -> lesions.

All decisions are made on the working grid (pmlseg.detect.predictor.working_grid: what the network
was trained on); the label map is then carried to the rebaseline's own grid (nearest neighbour), so
it lives in the rebaseline's physical space like every other per-visit output. ``run_case`` is what
`pmlseg detect` runs; call it repeatedly with one Predictor to process many cases in one process.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pmlseg.detect.same_session import intra_visit_transform, read_optional, use_same_session
from pmlseg.errors import PmlsegError

log = logging.getLogger(__name__)

LESION_COLUMNS = ["lesion_id", "volume_mm3", "centroid_x", "centroid_y", "centroid_z", "new_or_enlarging",
                  "confidence"]
POSSIBLE_COLUMNS = ["lesion_id", "volume_mm3", "centroid_x", "centroid_y", "centroid_z", "confidence"]
# everything a run writes into its folder: a new run first removes all of it, so a failed or changed run
# never leaves a previous run's report, SEG/SR or reviewer decisions beside its own outputs
OUTPUTS = ("new_lesions.nii.gz", "possible_lesions.nii.gz", "possible_lesions.tsv", "lesions.tsv", "qc.json",
           "report.html", "report.pdf", "characterisation.json", "decisions.json", "dicom", "baseline_space")
OPTIONAL = {"baseline_t1": ("baseline", "T1w"), "baseline_t2": ("baseline", "T2w"),
            "followup_t1": ("followup", "T1w"), "followup_t2": ("followup", "T2w"),
            "followup_dwi": ("followup", "dwi")}
# the optional follow-up images lesion characterisation reads, by their key in characterise_lesions' images
FEATURE_IMAGE = {"followup_t1": "t1_fu", "followup_t2": "t2_fu", "followup_dwi": "dwi_fu"}


@dataclass
class CaseResult:
    status: str                       # "ok" or "failed" (QC failure allowed through)
    n_lesions: int = 0
    rows: list = field(default_factory=list)
    labels: object = None             # SimpleITK UInt16 on the rebaseline grid
    prob: np.ndarray | None = None    # working-grid probability (model) or 0/1 map (classical)
    pair: object = None               # predictor.PreparedPair
    qc: dict = field(default_factory=dict)
    possible_rows: list = field(default_factory=list)   # review-only candidates (possible_lesions.tsv)


def clear_outputs(out: str | Path) -> None:
    """Remove every output of a previous run from ``out`` (only pmlseg's own names, see OUTPUTS)."""
    import shutil

    for name in OUTPUTS:
        p = Path(out) / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)


def file_sha256(path: str | Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fp:
        for block in iter(lambda: fp.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def report_id(inputs: list, table: str, method: str) -> str:
    """Identifies one report: a hash of the input files, the method/model and the lesion table (ids and
    centroids), so decisions exported from it cannot be imported into a different run's lesions."""
    import hashlib

    text = "\n".join([file_sha256(p) for p in inputs] + [method, table])
    return "pmlseg-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def read_transform(path: str | Path):
    import SimpleITK as sitk

    p = Path(path)
    if not p.is_file():
        raise PmlsegError(f"{p}: follow-up transform not found")
    try:
        return sitk.ReadTransform(str(p))
    except RuntimeError:
        raise PmlsegError(f"{p}: cannot read as an ITK transform") from None


def bids_header(path: str | Path) -> dict:
    """Pseudonymous report header from a BIDS file name (sub-001_ses-02_...); never from image headers."""
    import re

    m = re.search(r"sub-([A-Za-z0-9]+)_ses-([A-Za-z0-9]+)", Path(path).name)
    return {"subject": f"sub-{m.group(1)}", "session": f"ses-{m.group(2)}"} if m else {}


@dataclass
class Detection:
    """What detection found on the working grid: the operating-point lesions and the review-only ones."""

    prob: np.ndarray                  # probability (model) or 0/1 map (classical)
    labels: np.ndarray                # operating-point lesions 1..N (largest first)
    confidence: np.ndarray            # calibrated confidence of each, 0-1
    possible: np.ndarray              # "possible new lesions -- please check" 1..M (review point..operating point)
    possible_confidence: np.ndarray


def detect(pair, predictor=None, method: str = "model", threshold: float | None = None,
           min_size_mm3: float | None = None) -> Detection:
    """Lesions of ``method`` (model or classical) at the operating point with their confidence, and the
    review-only "possible" lesions (pmlseg.detect.candidates); ``threshold`` overrides the operating point."""
    from pmlseg.detect import candidates, classical
    from pmlseg.detect.network import DEFAULT_CONFIG

    cfg = dict(predictor.config if predictor is not None else DEFAULT_CONFIG)
    if min_size_mm3 is not None:
        cfg["min_size_mm3"] = min_size_mm3
    if threshold is not None:
        cfg.update(threshold=threshold, review_threshold=None)
    if method == "classical":
        prob = classical.detect(pair.bl, pair.fu, pair.mask, pair.spacing).astype(np.float32)
        cfg.update(threshold=0.5, review_threshold=None, calibration=None)
    elif method == "model":
        if predictor is None:
            raise PmlsegError("method 'model' needs a Predictor")
        prob = predictor.probability(pair.bl, pair.fu, pair.mask)
    else:
        raise PmlsegError(f"unknown method {method!r}; choose model or classical")
    scored = predictor.scored(prob, pair) if method == "model" else None
    (lab, conf), (pos, pconf) = candidates.operating_and_possible(prob, pair.bl, pair.fu, pair.spacing, cfg, scored)
    return Detection(prob, lab, conf, pos, pconf)


def decide(pair, predictor=None, method: str = "model", threshold: float | None = None,
           min_size_mm3: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(probability-like map, operating-point labels 1..N) on the working grid."""
    d = detect(pair, predictor, method, threshold, min_size_mm3)
    return d.prob, d.labels


def _flair_brain(pair, visit: str, followup_flair):
    """The rebaseline brain mask (working grid) on the ``visit`` FLAIR's grid, dilated as for registration."""
    import SimpleITK as sitk

    from pmlseg.detect.predictor import from_array

    m = from_array(pair.mask.astype(np.uint8), pair.grid)
    ref = pair.baseline if visit == "baseline" else followup_flair
    tfm = sitk.Transform() if visit == "baseline" else pair.transform.GetInverse()
    return sitk.BinaryDilate(sitk.Resample(m, ref, tfm, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8), [3, 3, 1])


def register_optional(optional: dict, flairs: dict, same_session: str | Path | None = None) -> dict:
    """{key: (image, same-session transform)} for every optional image: read and registered to its visit's
    FLAIR (``flairs[visit]``). Needs neither the pair nor the network, so ``_run_case`` runs it in a thread
    beside them (pmlseg.background): ~8-11 s of a lone follow-up's job with T1, T2 and DWI. ``same_session``:
    the follow-up's registrations written by its registration job (pmlseg.detect.same_session), used where
    they were made from these very images."""
    images = {k: read_optional(path) for k, path in optional.items()}
    if same_session:
        mine = [img for k, img in images.items() if OPTIONAL[k][0] == "followup"]
        if mine and use_same_session(same_session, flairs["followup"], mine):
            log.info("follow-up same-session registrations reused from its registration job")
    done = {}
    for k, img in images.items():
        visit, kind = OPTIONAL[k]
        done[k] = img, intra_visit_transform(flairs[visit], img, fixed_name=f"{visit} FLAIR",
                                             moving_name=f"{visit} {kind}")
    return done


def resample_optional(pair, img, intra, visit: str, kind: str, followup_flair, flair_brain):
    """(image on the rebaseline FLAIR grid or None, registration QC) for an optional image of either visit,
    given its same-session rigid registration to that visit's FLAIR (``register_optional``): checked with the
    follow-up registration's QC, composed with the baseline->follow-up transform for follow-up images.
    A failed QC gives None: the features it feeds stay NA instead of being measured on the wrong anatomy.
    ``flair_brain``: ``_flair_brain(pair, visit, followup_flair)``, computed once per visit by the caller."""
    import SimpleITK as sitk

    from pmlseg.registration.qc import registration_qc

    flair = pair.baseline if visit == "baseline" else followup_flair
    qc = registration_qc(flair, img, intra, fixed_mask=flair_brain,
                         fixed_name=f"{visit} FLAIR", moving_name=f"{visit} {kind}")
    if not qc.passed:
        return None, qc
    tfm = intra if visit == "baseline" else sitk.CompositeTransform([intra, pair.transform])
    return sitk.Resample(img, pair.baseline, tfm, sitk.sitkLinear, 0.0, sitk.sitkFloat32), qc


def in_source_pixel_type(img, source: str | Path):
    """``img`` (float32, resampled from ``source``) rounded to ``source``'s integer pixel type when it has one.

    Why: scanners store integers; the resampled copy in float32 holds no more information than the
    rounded one, and is 3x larger and ~2x slower to gzip (baseline_space/ is written for every case)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(source))
    reader.ReadImageInformation()
    pid = reader.GetPixelID()
    if pid in (sitk.sitkFloat32, sitk.sitkFloat64) or reader.GetNumberOfComponents() != 1:
        return img
    dtype = sitk.GetArrayViewFromImage(sitk.Image([1, 1, 1], pid)).dtype
    info = np.iinfo(dtype)
    return sitk.Cast(sitk.Clamp(sitk.Round(img), sitk.sitkFloat32, float(info.min), float(info.max)), pid)


def _qc_record(qc) -> dict:
    return {"similarity": round(float(qc.similarity), 4), "passed": bool(qc.passed), "reason": qc.reason}


def run_case(baseline: str | Path, followup: str | Path, out: str | Path, *, predictor=None,
             method: str = "model", followup_transform: str | Path | None = None,
             optional: dict | None = None, allow_qc_failure: bool = False, report: bool = True,
             pair=None, template_fit: str | Path | None = None,
             same_session: str | Path | None = None) -> CaseResult:
    """Detect new/enlarging lesions of ``followup`` against ``baseline`` and write them into ``out``.

    Outputs (atomic): new_lesions.nii.gz, lesions.tsv (with characterisation and PML-score columns), qc.json,
    report.html/.pdf, characterisation.json, dicom/ (SR, and a SEG when there are lesions), and
    baseline_space/*.nii.gz for the optional images that pass their registration QC. A stable follow-up
    (no lesion) is a full result: empty label map, header-only lesions.tsv, "no new or enlarging lesion"
    report and SR. Every output of a previous run in ``out`` is removed first, and again if this run
    fails, so nothing stale is left. A registration QC failure raises PmlsegError naming both files, or
    with ``allow_qc_failure`` writes only qc.json with status "failed".
    ``pair`` (a PreparedPair of these files) skips reading/registration, e.g. to run both methods.
    ``template_fit``: the baseline's template fit written by `pmlseg template-fit` (its JSON), used instead of
    fitting again when it was made from this baseline (pmlseg.registration.template_fit); ``same_session``: the
    follow-up's T1/T2/DWI registrations written by `pmlseg register --same-session`, likewise.
    """
    clear_outputs(out)
    try:
        return _run_case(baseline, followup, Path(out), predictor=predictor, method=method,
                         followup_transform=followup_transform, optional=optional,
                         allow_qc_failure=allow_qc_failure, report=report, pair=pair, template_fit=template_fit,
                         same_session=same_session)
    except BaseException:
        clear_outputs(out)
        raise


def _run_case(baseline, followup, out: Path, *, predictor, method, followup_transform, optional,
              allow_qc_failure, report, pair, template_fit=None, same_session=None) -> CaseResult:
    from concurrent.futures import wait

    import SimpleITK as sitk

    from pmlseg.background import worker
    from pmlseg.detect.predictor import read_image

    t0, c0 = time.perf_counter(), time.process_time()
    optional = {k: v for k, v in (optional or {}).items() if v}
    for k, v in optional.items():
        if k not in OPTIONAL:
            raise PmlsegError(f"unknown optional input {k!r}")
        if not Path(v).is_file():
            raise PmlsegError(f"{v}: --{k.replace('_', '-')} file not found")
        reader = sitk.ImageFileReader()  # the header only: a corrupt file is refused before any work
        reader.SetFileName(str(v))
        try:
            reader.ReadImageInformation()
        except RuntimeError as exc:
            raise PmlsegError(f"{v}: --{k.replace('_', '-')} cannot be read as an image "
                              f"({str(exc).strip().splitlines()[-1][:120]})") from None
    fu_img = read_image(followup, "follow-up FLAIR")
    bl_img = pair.baseline if pair is not None else read_image(baseline, "rebaseline FLAIR")
    if template_fit and pair is None:
        from pmlseg.registration.template_fit import use_template_fit

        use_template_fit(bl_img, template_fit)
    # work that needs neither the pair nor the network (the optional images' same-session registrations, the
    # report's DICOM derived series) runs in a thread beside them when the job owns more than one core
    pool = worker("case-inputs")
    registered = pool.submit(register_optional, optional, {"baseline": bl_img, "followup": fu_img}, same_session)
    derived = None
    if report:
        from pmlseg.report.dicom_outputs import encode_derived_series

        pseudonym = bids_header(followup).get("subject") or "pseudonymised"  # as characterise_and_report's
        derived = pool.submit(encode_derived_series, bl_img, pseudonym)
    pool.shutdown(wait=False)
    try:
        return _detect_and_report(baseline, followup, out, bl_img, fu_img, registered, derived, t0, c0,
                                  predictor=predictor, method=method, followup_transform=followup_transform,
                                  optional=optional, allow_qc_failure=allow_qc_failure, report=report, pair=pair)
    finally:
        wait([f for f in (registered, derived) if f is not None])  # a failed case leaves no thread behind it


def _detect_and_report(baseline, followup, out: Path, bl_img, fu_img, registered, derived, t0, c0, *, predictor, method,
                       followup_transform, optional, allow_qc_failure, report, pair) -> CaseResult:
    import SimpleITK as sitk

    from pmlseg.atomic import write_nifti, write_text
    from pmlseg.tables import write_tsv
    from pmlseg.detect import postprocess
    from pmlseg.detect.network import DEFAULT_CONFIG
    from pmlseg.detect.predictor import from_array, prepare_pair
    from pmlseg.report import detector_limits

    if pair is None:
        tfm = read_transform(followup_transform) if followup_transform else None
        cfg = predictor.config if predictor is not None else DEFAULT_CONFIG
        pair = prepare_pair(bl_img, fu_img, tfm, baseline_name=str(baseline), followup_name=str(followup),
                            inplane_mm=float(cfg["inplane_mm"]), slice_mm=cfg.get("slice_mm"),
                            min_slice_mm=cfg.get("min_slice_mm"))
    timings = {k: v for k, v in pair.timings.items() if k in ('brain_mask_s', 'registration_s', 'registration_qc_s', 'resample_s')}
    qc = {"status": "ok",
          "registration": {"similarity": round(float(pair.qc.similarity), 4), "passed": bool(pair.qc.passed),
                           "reason": pair.qc.reason,
                           "metrics": {k: round(float(v), 4) for k, v in (pair.qc.metrics or {}).items()},
                           "transform": "given" if followup_transform else "registered (affine)"},
          "method": method,
          "model": (dict({"name": predictor.name, "sha256": predictor.sha256, "device": predictor.device},
                         **({"lesion_classifier_sha256": predictor.classifier_sha256} if predictor.classifier else {}))
                    if method == "model" and predictor is not None else {"name": "classical subtraction"}),
          "working_grid_spacing_mm": [round(s, 3) for s in pair.spacing],
          "coordinates": "LPS (ITK/DICOM physical space), mm"}
    if not pair.qc.passed:
        msg = (f"registration QC failed for follow-up {followup} vs rebaseline {baseline}: "
               f"similarity {pair.qc.similarity:.2f} (wrong patient or failed alignment?)")
        if not allow_qc_failure:
            raise PmlsegError(msg)
        qc.update(status="failed", reason=msg, n_lesions=None,
                  timings={**timings, "total_s": round(time.perf_counter() - t0, 2)})
        write_text(out / "qc.json", json.dumps(qc, indent=2) + "\n")
        log.warning("%s", msg)
        return CaseResult("failed", pair=pair, qc=qc)

    t = time.perf_counter()
    found = detect(pair, predictor, method)
    prob, lab_w = found.prob, found.labels
    timings["inference_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    kinds = postprocess.kind_of_lesions(lab_w, pair.bl, pair.mask, pair.spacing)
    min_mm3 = float((predictor.config if predictor is not None else DEFAULT_CONFIG)["min_size_mm3"])
    labels = postprocess.to_original_grid(lab_w, pair.grid, pair.baseline, min_mm3)
    rows = postprocess.lesion_table(labels, kinds, lab_w, pair.grid, found.confidence)
    possible = postprocess.to_original_grid(found.possible, pair.grid, pair.baseline, min_mm3)
    possible_rows = [{k: r[k] for k in POSSIBLE_COLUMNS} for r in postprocess.lesion_table(
        possible, {}, found.possible, pair.grid, found.possible_confidence)]
    timings["postprocess_s"] = round(time.perf_counter() - t, 2)

    in_baseline_space, unavailable = {}, {}
    if optional:
        t = time.perf_counter()
        qc["input_registrations"] = {}
        brains = {}  # each visit's FLAIR brain, shared by its images' QC
        loaded = registered.result()
        for k, v in optional.items():
            visit, kind = OPTIONAL[k]
            if visit not in brains:
                brains[visit] = _flair_brain(pair, visit, fu_img)
            img, reg_qc = resample_optional(pair, *loaded[k], visit, kind, fu_img, brains[visit])
            qc["input_registrations"][k] = _qc_record(reg_qc)
            if img is None:
                log.warning("%s: not used, its features stay NA", reg_qc.reason)
                unavailable[FEATURE_IMAGE.get(k, k)] = (f"{visit} {kind} registration failed QC "
                                                        f"(gradient agreement {reg_qc.similarity:.2f})")
                continue
            in_baseline_space[k] = img
            write_nifti(out / "baseline_space" / f"{visit}_{kind}.nii.gz", in_source_pixel_type(img, v))
        timings["optional_inputs_s"] = round(time.perf_counter() - t, 2)

    write_nifti(out / "new_lesions.nii.gz", labels)
    write_tsv(out / "lesions.tsv", rows, LESION_COLUMNS)
    table = (out / "lesions.tsv").read_text()  # what the report id hashes (ids and positions of this run)
    write_nifti(out / "possible_lesions.nii.gz", possible)
    write_tsv(out / "possible_lesions.tsv", possible_rows, POSSIBLE_COLUMNS)
    result = CaseResult("ok", len(rows), rows, labels, prob, pair, qc, possible_rows)
    qc["n_lesions"] = len(rows)
    qc["n_possible"] = len(possible_rows)
    qc["n_new"] = sum(r["new_or_enlarging"] == "new" for r in rows)
    qc["n_enlarging"] = len(rows) - qc["n_new"]
    qc["total_volume_mm3"] = round(sum(r["volume_mm3"] for r in rows), 1)
    inputs = [baseline, followup, *([followup_transform] if followup_transform else []), *optional.values()]
    qc["report_id"] = report_id(inputs, table, json.dumps(qc["model"], sort_keys=True))
    # what the detector misses, for the reports and the cohort index (a clean report is not a negative finding)
    qc["detector_limits"] = (detector_limits(predictor.name, predictor.metadata) if method == "model"
                             else detector_limits(f"{method} (no trained model)", None))
    if report:
        t = time.perf_counter()
        from pmlseg.report.dicom_outputs import NO_SEG_REASON
        from pmlseg.report.visit import characterise_and_report

        images = {"flair_bl": pair.baseline,
                  "flair_fu": sitk.Resample(fu_img, pair.baseline, pair.transform, sitk.sitkLinear, 0.0,
                                            sitk.sitkFloat32),
                  **{img: in_baseline_space.get(k) for k, img in FEATURE_IMAGE.items()}}
        priors = None
        if rows:  # lesion location needs the template fit, checked like every registration feeding a score
            from pmlseg.characterise.location import register_to_template

            priors = register_to_template(pair.baseline)
            qc["template_registration"] = _qc_record(priors.qc)
        notes = [f"{why}: its features NA" for why in unavailable.values()]
        if priors is not None and not priors.qc.passed:
            notes.append(f"template registration failed QC (gradient agreement {priors.qc.similarity:.2f}): "
                         "lesion location features NA")
        qc_line = {"status": "pass" if pair.qc.passed else "fail",
                   "detail": f"registration similarity {pair.qc.similarity:.2f}; {method} detection"
                             + "".join(f"; {n}" for n in notes)}
        # the report's viewer is cropped to the brain both visits cover (the working grid's mask)
        brain = sitk.Resample(from_array(pair.mask.astype(np.uint8), pair.grid), pair.baseline, sitk.Transform(),
                              sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        header = {**bids_header(followup), "baseline_session": bids_header(baseline).get("session"),
                  "report_id": qc["report_id"],
                  "detector_limits": qc["detector_limits"]}
        result.rows = characterise_and_report(out, labels, rows, images, qc_line, header=header, priors=priors,
                                              unavailable=unavailable, columns=LESION_COLUMNS, crop_mask=brain,
                                              derived_series=derived.result() if derived is not None else None)
        qc["dicom"] = {"sr": "dicom/sr.dcm", "seg": "dicom/seg.dcm" if rows else None}
        if not rows:
            qc["dicom"]["seg_reason"] = NO_SEG_REASON
        timings["characterise_report_s"] = round(time.perf_counter() - t, 2)
    qc["timings"] = {**timings, "total_s": round(time.perf_counter() - t0, 2),
                     "cpu_s": round(time.process_time() - c0, 2)}
    write_text(out / "qc.json", json.dumps(qc, indent=2) + "\n")
    log.info("%d new/enlarging lesion(s) in %.1f s", len(rows), time.perf_counter() - t0)
    return result
