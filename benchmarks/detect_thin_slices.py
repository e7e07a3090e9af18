"""Detection of a workflow run's follow-ups (vs the rebaseline) at different working-grid slice floors.

    python benchmarks/detect_thin_slices.py OUT SYNTH native,3.0[,2.5] [--only-3d]

OUT: a finished `pmlseg run` on the synthetic cohort SYNTH (`pmlseg synth`); each follow-up is detected
again from OUT's BIDS FLAIRs and registration transforms with inference.json's ``min_slice_mm`` replaced by
each value ("native": the rebaseline's own slices), graded against the cohort's truth like `pmlseg demo`
(pmlseg.synth.grade), and timed (prepare + network + candidates). ``--only-3d``: only rebaselines with
slices under 2 mm, the cases the floor changes. Prints per case and pooled counts.
"""
import sys, time, json, logging
from pathlib import Path
import numpy as np, SimpleITK as sitk
logging.basicConfig(level=logging.WARNING)
from pmlseg.detect.predictor import Predictor, prepare_pair, read_image
from pmlseg.detect.pipeline import detect, read_transform
from pmlseg.detect import postprocess
from pmlseg.detect.metrics import lesion_metrics
from pmlseg.synth.grade import truth_on_grid, _visit_of_session
from pmlseg.workflow.manifest import read_manifest
out, synth = Path(sys.argv[1]), Path(sys.argv[2])
variants = [None if v == "native" else float(v) for v in sys.argv[3].split(",")]
only3d = "--only-3d" in sys.argv[4:]
p = Predictor(device="cpu")
visit_of = _visit_of_session(out, synth)
man = read_manifest(out / "manifest.tsv")
reb = {r["subject"]: r["session"] for r in man if r["role"] == "rebaseline"}
tot = {v: dict(gt=0, tp_gt=0, pred=0, tp_pred=0, s=0.0) for v in variants}
for r in man:
    if r["role"] != "follow-up": continue
    sub, ses = r["subject"], r["session"]
    bl_p = out / sub / reb[sub] / "anat" / f"{sub}_{reb[sub]}_FLAIR.nii.gz"
    fu_p = out / sub / ses / "anat" / f"{sub}_{ses}_FLAIR.nii.gz"
    bl, fu = read_image(bl_p, "bl"), read_image(fu_p, "fu")
    if only3d and sitk.DICOMOrient(bl, "LPS").GetSpacing()[2] > 2: continue
    tfm = read_transform(out / "derivatives/pmlseg" / sub / ses / "xfm" / f"{sub}_{ses}_from-rebaseline_affine.tfm")
    pid, visit = visit_of[sub, ses]; rv = visit_of[sub, reb[sub]][1]
    for v in variants:
        t = time.perf_counter()
        pair = prepare_pair(bl, fu, tfm, min_slice_mm=v)
        d = detect(pair, p)
        lab = postprocess.to_original_grid(d.labels, pair.grid, pair.baseline, 10.0)
        s = time.perf_counter() - t
        truth = truth_on_grid(synth, pid, rv, visit, lab)
        m = lesion_metrics(sitk.GetArrayFromImage(lab), sitk.GetArrayFromImage(truth) > 0, lab.GetSpacing())
        for k in ("gt", "tp_gt", "pred", "tp_pred"): tot[v][k] += m[k]
        tot[v]["s"] += s
        npos = int(d.possible.max())
        print(f"{sub} {ses} bl_z={sitk.DICOMOrient(bl,'LPS').GetSpacing()[2]:.1f} min_slice={v}: GT {m['gt']} found {m['tp_gt']} pred {m['pred']} true {m['tp_pred']} possible {npos} dice {m.get('dice', float('nan')):.2f} {s:.1f}s", flush=True)
for v, t in tot.items():
    print(f"TOTAL min_slice={v}: sens {t['tp_gt']}/{t['gt']} prec {t['tp_pred']}/{t['pred']} time {t['s']:.0f}s")
