"""Acceptance check of the PML score on real follow-ups with injected PML-like lesions.

Cases (shared data, ljubljana-longitudinal): patient03 gets a LARGE frontal PML-like lesion,
patient01 a SMALL (~2 ml) parietal juxtacortical one; patient01's real new MS lesions include a larger
(~2.5 ml) confluent periventricular one, so a size-only score fails there.

How a lesion is injected (all on the rebaseline FLAIR grid, follow-up resampled with the reference
transforms T2 o T1^-1 from the data set):
  * centre: an MNI point (frontal (-26, 28, 34) / parietal (30, -52, 42), RAS) mapped to the subject
    through the ICBM152 affine of pmlseg.characterise.location;
  * shape: an ellipsoid (radii in mm) whose radius is modulated by smoothed noise (irregular border),
    restricted to template tissue (WM+GM > 0.5, CSF < 0.5) so it reaches the cortex but not the CSF;
    voxels of real GT lesions (dilated 3 mm) are excluded;
  * intensity: follow-up FLAIR += 0.8 x NAWM median x profile, where the profile is the mask blurred
    by 3 mm on the white-matter side (ill-defined) and the hard mask on the grey-matter side (sharp);
  * satellites: 3 spheres of 1.5 mm radius, 6-14 mm outside the lesion, in WM, same brightness;
    they are NOT added to the label map (the characteriser must find them in the FLAIR);
  * T1 (follow-up T1W resampled to the grid): multiplied by 1 - 0.35 x profile (hypointense).
    No DWI is fabricated, so the DWI rule stays unused.
Label map = GT new/enlarging components (gt_direction == 1, >= 10 mm3) mapped to the rebaseline,
plus the injected lesion (last label).

Run: .venv/bin/python benchmarks/pml_injection.py   (prints one line per lesion and PASS/FAIL)

--detect: the same injected follow-ups (written on the rebaseline grid, T1 too) go through the whole
`pmlseg detect` pipeline instead (our registration, model, post-processing, characterisation,
score). The injected lesion is the detection with the largest overlap with the injected mask; real
new MS lesions are the detections touching a GT new/enlarging component; the rest are false
positives. Criteria: the injected lesion is detected and has the highest score of ALL detections
of its case (false positives included), large -> high, small >= moderate, <= 20 % of the detected
real new MS lesions high; false positives rated high are listed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from pmlseg.characterise import characterise_lesions, load_rules, score_pml
from pmlseg.characterise import location as loc
from pmlseg.paths import shared_data_dir

CASES = {
    "patient03": dict(kind="large_frontal", mni=(-26.0, 28.0, 34.0), radii=(20.0, 16.0, 15.0), seed=3),
    "patient01": dict(kind="small_parietal", mni=(30.0, -52.0, 42.0), radii=(8.5, 7.0, 7.0), seed=1),
}


def _tfm(path: Path) -> sitk.Transform:
    return sitk.ReadTransform(str(path))


def load_case(case: str):
    d = shared_data_dir() / "ljubljana-longitudinal" / case
    bl = sitk.ReadImage(str(d / "study1_FLAIR.nii.gz"), sitk.sitkFloat32)
    fu = sitk.ReadImage(str(d / "study2_FLAIR.nii.gz"), sitk.sitkFloat32)
    t1inv = _tfm(d / "study1_FLAIR_to_common_space.txt").GetInverse()
    t2 = _tfm(d / "study2_FLAIR_to_common_space.txt")
    bl_to_fu = sitk.CompositeTransform([t2, t1inv])  # last listed is applied first
    images = {"flair_bl": bl, "flair_fu": sitk.Resample(fu, bl, bl_to_fu, sitk.sitkLinear, 0.0, sitk.sitkFloat32)}
    if (d / "study2_T1W.nii.gz").exists():
        t1 = sitk.ReadImage(str(d / "study2_T1W.nii.gz"), sitk.sitkFloat32)
        intra = _tfm(d / "study2_T1W_intrastudy_to_FLAIR.txt")
        images["t1_fu"] = sitk.Resample(t1, bl, sitk.CompositeTransform([intra, t2, t1inv]), sitk.sitkLinear, 0.0,
                                        sitk.sitkFloat32)
    gt = sitk.ReadImage(str(d / "gt_direction.nii.gz"))
    ga = sitk.GetArrayFromImage(gt) == 1
    lab, n = ndi.label(ga, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(lab.ravel()) * np.prod(gt.GetSpacing())
    keep = np.zeros(n + 1, np.int32)
    keep[1:][sizes[1:] >= 10] = np.arange(1, int((sizes[1:] >= 10).sum()) + 1)
    lab_img = sitk.GetImageFromArray(keep[lab])
    lab_img.CopyInformation(gt)
    labels = sitk.Resample(lab_img, bl, t1inv, sitk.sitkNearestNeighbor, 0, sitk.sitkInt32)
    # relabel consecutively (tiny components can vanish on the thick-slice grid)
    la = sitk.GetArrayFromImage(labels)
    ids = [i for i in np.unique(la) if i]
    remap = np.zeros(la.max() + 1, np.int32)
    remap[ids] = np.arange(1, len(ids) + 1)
    return images, remap[la]


def inject(images, labels, priors, spec, ref_img):
    rng = np.random.default_rng(spec["seed"])
    sp = np.array(ref_img.GetSpacing())[::-1]
    gm, wm, csf = (sitk.GetArrayFromImage(x) for x in (priors.gm, priors.wm, priors.csf))
    x, y, z = spec["mni"]
    c_phys = priors.to_mni.GetInverse().TransformPoint((-x, -y, z))
    c_idx = np.array(ref_img.TransformPhysicalPointToContinuousIndex(c_phys))[::-1]
    zz, yy, xx = np.indices(labels.shape, dtype=np.float32)
    rz, ry, rx = spec["radii"][2], spec["radii"][1], spec["radii"][0]
    r = np.sqrt(((zz - c_idx[0]) * sp[0] / rz) ** 2 + ((yy - c_idx[1]) * sp[1] / ry) ** 2 + ((xx - c_idx[2]) * sp[2] / rx) ** 2)
    noise = ndi.gaussian_filter(rng.standard_normal(labels.shape).astype(np.float32), (1.0, 5.0, 5.0))
    noise /= noise.std() + 1e-6
    mask = (r < 1.0 + 0.25 * noise) & ((wm + gm) > 0.5) & (csf < 0.5)
    mask &= ~ndi.binary_dilation(labels > 0, iterations=3)
    lab_m, n = ndi.label(mask)
    if n == 0:
        raise RuntimeError("injection produced an empty lesion")
    mask = lab_m == (np.argmax(np.bincount(lab_m.ravel())[1:]) + 1)
    soft = ndi.gaussian_filter(mask.astype(np.float32), 3.0 / sp)
    soft = np.maximum(soft / max(soft.max(), 1e-6), mask * 0.6)
    cortical_side = (gm + csf) > wm  # GM and CSF side: hard edge (CSF is never brightened by the blur)
    profile = np.where(cortical_side, mask.astype(np.float32), soft)
    # satellites: small spheres 6-14 mm outside the lesion in WM
    dist = ndi.distance_transform_edt(~mask, sampling=sp)
    cand = np.argwhere((dist > 6) & (dist < 14) & (wm > 0.7))
    for k in rng.choice(len(cand), 3, replace=False):
        cz, cy, cx = cand[k]
        ball = ((zz - cz) * sp[0]) ** 2 + ((yy - cy) * sp[1]) ** 2 + ((xx - cx) * sp[2]) ** 2 <= 1.6 ** 2
        ball |= ((zz - cz) == 0) & (((yy - cy) * sp[1]) ** 2 + ((xx - cx) * sp[2]) ** 2 <= 1.8 ** 2)
        profile = np.maximum(profile, ball.astype(np.float32))
    fu = sitk.GetArrayFromImage(images["flair_fu"])
    brainish = (wm > 0.9)
    nawm = float(np.median(fu[brainish])) if brainish.any() else float(np.median(fu[fu > 0]))
    out = dict(images)
    new_fu = sitk.GetImageFromArray((fu + 0.8 * nawm * profile).astype(np.float32))
    new_fu.CopyInformation(ref_img)
    out["flair_fu"] = new_fu
    if "t1_fu" in images:
        t1 = sitk.GetArrayFromImage(images["t1_fu"])
        new_t1 = sitk.GetImageFromArray((t1 * (1.0 - 0.35 * profile)).astype(np.float32))
        new_t1.CopyInformation(ref_img)
        out["t1_fu"] = new_t1
    new_labels = labels.copy()
    new_labels[mask] = labels.max() + 1
    return out, new_labels, int(labels.max() + 1)


def injected_case(case: str, spec: dict):
    """(images, GT labels + injected lesion, injected id, template priors) on the rebaseline grid."""
    images, labels = load_case(case)
    priors = loc.register_to_template(images["flair_bl"])
    images, labels, inj_id = inject(images, labels, priors, spec, images["flair_bl"])
    return images, labels, inj_id, priors


def run_case(case: str, spec: dict, rules=None):
    images, labels, inj_id, priors = injected_case(case, spec)
    ref = images["flair_bl"]
    lab_img = sitk.GetImageFromArray(labels.astype(np.int32))
    lab_img.CopyInformation(ref)
    feats = characterise_lesions(lab_img, images, priors=priors)
    return score_pml(feats, rules or load_rules()), inj_id, images, lab_img


def run_detected(case: str, spec: dict, predictor, workdir: Path):
    """Inject, write the follow-up (and T1) on the rebaseline grid, run the detect pipeline on it.

    Returns (scored rows of the detections, injected detection id or None, ids touching real GT)."""
    from pmlseg.detect import pipeline

    images, labels, inj_id, _ = injected_case(case, spec)
    d = shared_data_dir() / "ljubljana-longitudinal" / case
    workdir.mkdir(parents=True, exist_ok=True)
    fu_path = workdir / "followup_injected_FLAIR.nii.gz"
    sitk.WriteImage(images["flair_fu"], str(fu_path))
    optional = {}
    if "t1_fu" in images:
        optional["followup_t1"] = str(workdir / "followup_injected_T1w.nii.gz")
        sitk.WriteImage(images["t1_fu"], optional["followup_t1"])
    res = pipeline.run_case(d / "study1_FLAIR.nii.gz", fu_path, workdir / "out", predictor=predictor,
                            optional=optional)
    det = sitk.GetArrayFromImage(res.labels)
    over = np.bincount(det[labels == inj_id], minlength=det.max() + 1)[1:]
    found = int(np.argmax(over) + 1) if over.any() else None
    real = set(np.unique(det[(labels > 0) & (labels != inj_id)]).tolist()) - {0, found}
    return res.rows, found, real


def evaluate_detected(results: dict) -> tuple[bool, list[str]]:
    """results: case -> (rows, injected detection id or None, real-lesion detection ids, kind)."""
    ok, msgs, real_rows = True, [], []
    for case, (rows, inj, real, kind) in results.items():
        fps = [r for r in rows if r["lesion_id"] != inj and r["lesion_id"] not in real]
        real_rows += [r for r in rows if r["lesion_id"] in real]
        if inj is None:
            msgs.append(f"{case} {kind}: injected lesion NOT detected ({len(rows)} detections)")
            ok = False
            continue
        injl = next(r for r in rows if r["lesion_id"] == inj)
        top = all(injl["pml_score"] > r["pml_score"] for r in rows if r["lesion_id"] != inj)
        need = "high" if kind.startswith("large") else "moderate"
        order = ("low", "moderate", "high")
        lvl_ok = order.index(injl["pml_suspicion"]) >= order.index(need)
        msgs.append(f"{case} {kind}: injected detected (id {inj}, {injl['volume_mm3']:.0f} mm3), score "
                    f"{injl['pml_score']:.3f} ({injl['pml_suspicion']}), highest of all {len(rows)} detections: {top}, "
                    f"level >= {need}: {lvl_ok}; false positives {len(fps)}, of them high "
                    f"{sum(r['pml_suspicion'] == 'high' for r in fps)}")
        ok &= top and lvl_ok
    frac = sum(r["pml_suspicion"] == "high" for r in real_rows) / max(1, len(real_rows))
    msgs.append(f"detected real new MS lesions rated high: {frac:.0%} of {len(real_rows)} (limit 20%)")
    return ok and frac <= 0.20, msgs


def evaluate(results: dict) -> tuple[bool, list[str]]:
    """results: case -> (scored, injected_id, kind).  Returns (passed, messages)."""
    ok, msgs, real = True, [], []
    for case, (scored, inj, kind) in results.items():
        injl = next(s for s in scored if s["lesion_id"] == inj)
        others = [s for s in scored if s["lesion_id"] != inj]
        real += others
        top = all(injl["pml_score"] > s["pml_score"] for s in others)
        need = "high" if kind.startswith("large") else "moderate"
        lvl_ok = ("moderate", "high").index(injl["pml_suspicion"]) >= ("moderate", "high").index(need) \
            if injl["pml_suspicion"] != "low" else False
        msgs.append(f"{case} {kind}: injected score {injl['pml_score']:.3f} ({injl['pml_suspicion']}), "
                    f"highest of case: {top}, level >= {need}: {lvl_ok}")
        ok &= top and lvl_ok
    frac = sum(s["pml_suspicion"] == "high" for s in real) / max(1, len(real))
    msgs.append(f"real new MS lesions rated high: {frac:.0%} of {len(real)} (limit 20%)")
    ok &= frac <= 0.20
    return ok, msgs


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--report-dir", help="also write report.html/pdf + DICOM SEG/SR per case under this folder")
    ap.add_argument("--detect", action="store_true", help="score the pipeline's own detections (see above)")
    ap.add_argument("--model", help="model for --detect (default: the shipped one)")
    args = ap.parse_args()
    results = {}
    if args.detect:
        import tempfile

        from pmlseg.detect.predictor import Predictor

        pred = Predictor(args.model, "auto")
        with tempfile.TemporaryDirectory() as tmp:
            for case, spec in CASES.items():
                t0 = time.time()
                rows, inj, real = run_detected(case, spec, pred, Path(tmp) / case)
                results[case] = (rows, inj, real, spec["kind"])
                print(f"# {case} ({time.time() - t0:.0f} s)")
                for r in sorted(rows, key=lambda r: -r["pml_score"]):
                    tag = "INJECTED" if r["lesion_id"] == inj else ("real" if r["lesion_id"] in real else "FP")
                    print(f"{case} {tag:8s} id={r['lesion_id']:2d} vol={r['volume_mm3']:7.0f} "
                          f"{r['location']:17s} {r['lobe']:10s} score={r['pml_score']:.3f} {r['pml_suspicion']}")
        ok, msgs = evaluate_detected(results)
        print("\n".join(msgs))
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    for case, spec in CASES.items():
        t0 = time.time()
        scored, inj, images, labels = run_case(case, spec)
        results[case] = (scored, inj, spec["kind"])
        if args.report_dir:
            from pmlseg.report.dicom_outputs import write_dicom_outputs
            from pmlseg.report.html import write_report

            out = Path(args.report_dir) / case
            write_report(out, scored, images, labels, qc={"status": "reference transforms (benchmark)"},
                         header={"subject": case, "session": "study2 + injected PML-like lesion"})
            write_dicom_outputs(out, labels, images["flair_bl"], scored, pseudonym=case)
        print(f"# {case} ({time.time() - t0:.0f} s)")
        for s in sorted(scored, key=lambda s: -s["pml_score"]):
            tag = "INJECTED" if s["lesion_id"] == inj else "real"
            print(f"{case} {tag:8s} id={s['lesion_id']:2d} vol={s['volume_mm3']:7.0f} diam={s['max_diameter_mm']:5.1f} "
                  f"{s['location']:17s} {s['lobe']:10s} sol={s['solidity']:.2f} sph={s['sphericity']:.2f} "
                  f"wm={s['border_sharpness_wm']} cx={s['border_sharpness_cortical']} sat={s['satellites']} "
                  f"t1={s['t1_ratio']} score={s['pml_score']:.3f} {s['pml_suspicion']}")
    ok, msgs = evaluate(results)
    print("\n".join(msgs))
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
