"""Detection of a workflow run's follow-ups (vs the rebaseline) at different working-grid slice floors.

    python benchmarks/detect_thin_slices.py OUT SYNTH native,3.0[,2.5] [--only-3d]

OUT: a finished `pmlseg run` on the synthetic cohort SYNTH (`pmlseg synth`); each follow-up is detected
again from OUT's BIDS FLAIRs and registration transforms with inference.json's ``min_slice_mm`` replaced by
each value ("native": the rebaseline's own slices), graded against the cohort's truth like `pmlseg demo`
(pmlseg.synth.grade), and timed (prepare + network + candidates). ``--only-3d``: only rebaselines with
slices under 2 mm, the cases the floor changes. Prints per case and pooled counts.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import SimpleITK as sitk

from pmlseg.detect import postprocess
from pmlseg.detect.metrics import lesion_metrics
from pmlseg.detect.pipeline import detect, read_transform
from pmlseg.detect.predictor import Predictor, prepare_pair, read_image
from pmlseg.synth.grade import _visit_of_session, truth_on_grid
from pmlseg.workflow.manifest import read_manifest

COUNTS = ("gt", "tp_gt", "pred", "tp_pred")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="a finished `pmlseg run` output folder")
    ap.add_argument("synth", type=Path, help="the `pmlseg synth` cohort it ran on")
    ap.add_argument("floors", help="comma-separated min_slice_mm values, 'native' for none")
    ap.add_argument("--only-3d", action="store_true", help="only rebaselines with slices under 2 mm")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    floors = [None if v == "native" else float(v) for v in a.floors.split(",")]
    predictor = Predictor(device="cpu")
    visit_of = _visit_of_session(a.out, a.synth)
    manifest = read_manifest(a.out / "manifest.tsv")
    reb = {r["subject"]: r["session"] for r in manifest if r["role"] == "rebaseline"}
    total = {v: dict.fromkeys((*COUNTS, "s"), 0.0) for v in floors}
    for r in manifest:
        if r["role"] != "follow-up":
            continue
        sub, ses = r["subject"], r["session"]
        bl = read_image(a.out / sub / reb[sub] / "anat" / f"{sub}_{reb[sub]}_FLAIR.nii.gz", "rebaseline FLAIR")
        fu = read_image(a.out / sub / ses / "anat" / f"{sub}_{ses}_FLAIR.nii.gz", "follow-up FLAIR")
        bl_z = sitk.DICOMOrient(bl, "LPS").GetSpacing()[2]
        if a.only_3d and bl_z > 2.0:
            continue
        tfm = read_transform(a.out / "derivatives/pmlseg" / sub / ses / "xfm" / f"{sub}_{ses}_from-rebaseline_affine.tfm")
        pid, visit = visit_of[sub, ses]
        for v in floors:
            t = time.perf_counter()
            pair = prepare_pair(bl, fu, tfm, min_slice_mm=v)
            found = detect(pair, predictor)
            labels = postprocess.to_original_grid(found.labels, pair.grid, pair.baseline, 10.0)
            secs = time.perf_counter() - t
            truth = truth_on_grid(a.synth, pid, visit_of[sub, reb[sub]][1], visit, labels)
            m = lesion_metrics(sitk.GetArrayFromImage(labels), sitk.GetArrayFromImage(truth) > 0, labels.GetSpacing())
            for k in COUNTS:
                total[v][k] += m[k]
            total[v]["s"] += secs
            print(f"{sub} {ses} rebaseline slices {bl_z:.1f} mm, floor {v}: GT {m['gt']} found {m['tp_gt']}, "
                  f"detections {m['pred']} true {m['tp_pred']}, possible {int(found.possible.max())}, "
                  f"Dice {m.get('dice', float('nan')):.2f}, {secs:.1f} s", flush=True)
    for v, t in total.items():
        print(f"TOTAL floor {v}: found {t['tp_gt']:.0f}/{t['gt']:.0f}, true detections {t['tp_pred']:.0f}/{t['pred']:.0f}, "
              f"{t['s']:.0f} s")


if __name__ == "__main__":
    main()
