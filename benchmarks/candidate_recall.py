"""How many of the real pairs' GT lesions can a difference-blob candidate generator reach, and at what cost?

The second stage (pmlseg.detect.lesion_features.candidate_labels) can only find what its candidates touch.
For each shared real pair (patient01, patient03) and each working grid (the shipped one: the rebaseline's
slices, at least 3 mm; and --slice-mm, default 1.5 mm), it prints:

- per difference threshold (--sds, in robust noise SDs): the candidates made with the network switched off
  (probability 0), and the GT lesions they touch, scored with the data set's protocol (candidates carried
  onto gt.nii.gz's grid with study1_FLAIR_to_common_space.txt; GT = 26-components of gt_direction == 1
  >= 10 mm3);
- the peak of the smoothed difference inside each GT lesion, in robust noise SDs of its own pair, and the
  share of brain voxels above 2 and 3 SDs (how much noise is as bright).

    .venv/bin/python benchmarks/candidate_recall.py [--slice-mm 1.5] [--sds 1.5 2 2.5 3]

docs/detection.md "Phase 9" has the results (2-core dev machine, ~1 min).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detect_froc import on_gt_grid  # noqa: E402  (one way of carrying labels onto the GT grid)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slice-mm", type=float, default=1.5, help="the finer working grid's slice spacing")
    ap.add_argument("--sds", type=float, nargs="+", default=[1.5, 2.0, 2.5, 3.0],
                    help="difference thresholds, in robust noise SDs above the median")
    a = ap.parse_args()

    from pmlseg.detect.lesion_features import candidate_labels, noise_sd, smoothed
    from pmlseg.detect.predictor import Predictor, prepare_pair, read_image
    from pmlseg.paths import shared_data_dir

    cfg = Predictor().config
    for name in ("patient01", "patient03"):
        d = shared_data_dir() / "ljubljana-longitudinal" / name
        gt = sitk.ReadImage(str(d / "gt_direction.nii.gz"))
        gt_new = sitk.GetArrayFromImage(gt) == 1
        lab, _ = ndi.label(gt_new, np.ones((3, 3, 3)))
        sizes = np.bincount(lab.ravel())[1:] * np.prod(gt.GetSpacing())
        keep = [i + 1 for i, s in enumerate(sizes) if s >= 10]
        bl, fu = read_image(d / "study1_FLAIR.nii.gz", "rebaseline"), read_image(d / "study2_FLAIR.nii.gz", "follow-up")
        for slice_mm in (None, a.slice_mm):
            pair = prepare_pair(bl, fu, inplane_mm=float(cfg["inplane_mm"]), slice_mm=slice_mm,
                                min_slice_mm=None if slice_mm else cfg.get("min_slice_mm"))
            case = {"pair": pair, "gt": gt, "to_gt": str(d / "study1_FLAIR_to_common_space.txt")}
            grid = f"{pair.spacing[2]:.1f} mm slices" + ("" if slice_mm else " (shipped)")
            for sd in a.sds:
                cand = candidate_labels(np.zeros(pair.bl.shape, np.float32), pair.bl, pair.fu, pair.mask,
                                        pair.spacing, cfg, diff_sd=sd)
                on = on_gt_grid(cand, case)
                hit = sum(bool(np.any(on[lab == i] > 0)) for i in keep)
                print(f"{name}  {grid:<24} {sd:4.1f} SD: {int(cand.max()):4d} candidates, GT touched {hit} of {len(keep)}",
                      flush=True)
            b, f = smoothed(pair.bl, pair.fu, pair.spacing)
            diff = f - b
            med, sd = noise_sd(diff, pair.mask)
            z = np.where(pair.mask, (diff - med) / sd, 0.0)
            z_gt = on_gt_grid((np.clip(z, 0, 60) * 1000).astype(np.uint16), case) / 1000.0
            peaks = sorted(round(float(z_gt[lab == i].max()), 1) for i in keep)
            brain = z[pair.mask]
            print(f"{name}  {grid:<24} peak SDs inside the GT lesions {peaks}; brain voxels above 2 SD "
                  f"{100 * np.mean(brain > 2):.1f} %, above 3 SD {100 * np.mean(brain > 3):.1f} %", flush=True)


if __name__ == "__main__":
    main()
