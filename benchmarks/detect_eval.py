"""Evaluate new/enlarging lesion detection (model and classical baseline) with the shared protocol.

Real cases (/work/shared/data/README.md, "Evaluation protocol"): run on the raw study1 (rebaseline)
and study2 (follow-up) FLAIR with our own registration; resample the label map from the rebaseline
space onto gt.nii.gz's grid (nearest neighbour, study1_FLAIR_to_common_space.txt); GT = 26-connected
components of gt_direction == 1 with volume >= 10 mm^3; lesion-wise sensitivity (GT components touched
by any predicted voxel), precision (predicted components touching a gt_direction == 1 voxel), F1, FP
components per case, voxel Dice vs gt_direction == 1.
Held-out synthetic pairs (pmlseg.detect.synthcase: the pmlseg.synth ICBM152 phantom, never used for
training): the same metrics on the baseline's own grid, GT components >= 10 mm^3.
CPU seconds are this process's CPU time per case end to end (read, brain mask, registration, QC,
inference, post-processing, writing outputs and report); registration is shared by both methods and
counted in each.

    .venv/bin/python benchmarks/detect_eval.py [--model NAME_OR_DIR] [--cases patient01 patient03]
        [--synthetic 2] [--methods model classical] [--device cpu|cuda|auto]

infer_s is the model's own inference time per case (qc.json timings.inference_s: sliding window over
the brain's slices, probability back in host memory), the figure the <= 2 s GPU bound is about.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from pmlseg.detect.metrics import lesion_metrics


def evaluate_real(label_path: Path, case_dir: Path) -> dict:
    import SimpleITK as sitk

    labels = sitk.ReadImage(str(label_path))
    gt = sitk.ReadImage(str(case_dir / "gt_direction.nii.gz"))
    t1 = sitk.ReadTransform(str(case_dir / "study1_FLAIR_to_common_space.txt"))
    pred = sitk.Resample(labels, gt, t1, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16)
    return lesion_metrics(sitk.GetArrayFromImage(pred), sitk.GetArrayFromImage(gt) == 1, gt.GetSpacing())


def evaluate_synth(label_path: Path, gt) -> dict:
    import SimpleITK as sitk

    pred = sitk.GetArrayFromImage(sitk.ReadImage(str(label_path)))
    return lesion_metrics(pred, sitk.GetArrayFromImage(gt) > 0, gt.GetSpacing())


def run_methods(name, bl_path, fu_path, methods, predictor, tmp: Path, evaluate) -> list[dict]:
    from pmlseg.detect import pipeline
    from pmlseg.detect.predictor import prepare_pair, read_image

    c0 = time.process_time()
    w0 = time.perf_counter()
    pair = prepare_pair(read_image(bl_path, "rebaseline FLAIR"), read_image(fu_path, "follow-up FLAIR"),
                        baseline_name=str(bl_path), followup_name=str(fu_path))
    prep_cpu, prep_wall = time.process_time() - c0, time.perf_counter() - w0
    rows = []
    for meth in methods:
        c1, w1 = time.process_time(), time.perf_counter()
        out = tmp / f"{name}_{meth}"
        res = pipeline.run_case(bl_path, fu_path, out, predictor=predictor if meth == "model" else None,
                                method=meth, pair=pair, allow_qc_failure=True)
        cpu, wall = prep_cpu + time.process_time() - c1, prep_wall + time.perf_counter() - w1
        if res.status != "ok":
            print(f"{meth:9s} {name:12s} registration QC failed ({pair.qc.similarity:.2f})", flush=True)
            rows.append({"case": name, "method": meth, "qc": False, "cpu_s": cpu, "wall_s": wall})
            continue
        m = evaluate(out / "new_lesions.nii.gz")
        infer = json.loads((out / "qc.json").read_text())["timings"].get("inference_s", float("nan"))
        m.update(case=name, method=meth, qc=True, cpu_s=cpu, wall_s=wall, sim=pair.qc.similarity, infer_s=infer)
        rows.append(m)
        print(f"{meth:9s} {name:12s} {m['gt']:3d} {m['pred']:5d}  {m['sens']:.2f}  {m['prec']:.2f}  "
              f"{m['f1']:.2f} {m['fp']:5d}  {m['dice']:.2f} {m['pred_ml']:7.2f} {m['gt_ml']:5.2f}  {m['sim']:.2f} "
              f"{cpu:6.1f} {wall:6.1f} {infer:7.2f}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model name under models/ or folder (default newlesion-2p5d)")
    ap.add_argument("--cases", nargs="*", default=["patient01", "patient03"])
    ap.add_argument("--synthetic", type=int, default=2, help="number of held-out synthetic pairs")
    ap.add_argument("--methods", nargs="+", default=["model", "classical"], choices=["model", "classical"])
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"], help="where the model runs")
    a = ap.parse_args()

    import SimpleITK as sitk

    from pmlseg.logs import setup_logging
    from pmlseg.paths import shared_data_dir

    setup_logging("WARNING")
    predictor = None
    if "model" in a.methods:
        from pmlseg.detect.predictor import Predictor

        predictor = Predictor(a.model, a.device)
        print(f"model {predictor.name} sha256 {predictor.sha256[:12]} on {predictor.device} "
              f"({predictor.metadata.get('training_steps', '?')} training steps)")
    root = shared_data_dir() / "ljubljana-longitudinal"
    print("method    case          GT  pred  sens  prec    F1    FP  Dice pred_mL  GT_mL   QC  cpu_s wall_s infer_s")
    rows = []
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        for c in a.cases:
            d = root / c
            rows += run_methods(c, d / "study1_FLAIR.nii.gz", d / "study2_FLAIR.nii.gz", a.methods, predictor, tmp,
                                lambda p, d=d: evaluate_real(p, d))
        from pmlseg.detect.synthcase import make_case

        for s in range(a.synthetic):
            bl, fu, gt = make_case(s)
            for key, img in (("bl", bl), ("fu", fu)):
                sitk.WriteImage(img, str(tmp / f"synth{s}_{key}.nii.gz"))
            rows += run_methods(f"synth{s}", tmp / f"synth{s}_bl.nii.gz", tmp / f"synth{s}_fu.nii.gz", a.methods,
                                predictor, tmp, lambda p, gt=gt: evaluate_synth(p, gt))
    print()
    for meth in a.methods:
        for group, pick in (("real", lambda r: not r["case"].startswith("synth")),
                            ("synthetic", lambda r: r["case"].startswith("synth"))):
            sel = [r for r in rows if r["method"] == meth and pick(r) and r["qc"]]
            if sel:
                print(f"{meth:9s} {group:9s} mean F1 {np.mean([r['f1'] for r in sel]):.3f}  "
                      f"mean Dice {np.mean([r['dice'] for r in sel]):.3f}  "
                      f"mean FP {np.mean([r['fp'] for r in sel]):.1f}  "
                      f"mean cpu_s {np.mean([r['cpu_s'] for r in sel]):.1f}  "
                      f"mean infer_s {np.mean([r['infer_s'] for r in sel]):.2f}  (n={len(sel)})")


if __name__ == "__main__":
    main()
