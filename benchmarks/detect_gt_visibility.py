"""How visible is each ground-truth new/enlarging lesion on FLAIR, where the detector looks at it?

For each real case: both visits on the detector's working grid exactly as `pmlseg detect` builds them
(pmlseg.detect.predictor.prepare_pair: our affine registration, normalisation, follow-up harmonisation),
and again with the data set's reference transform (T2 o T1^-1) instead of ours. The GT
(gt_direction == 1) is mapped onto the working grid (nearest neighbour, inverse of
study1_FLAIR_to_common_space.txt); per 26-connected GT component: volume, mean follow-up FLAIR
(lightly smoothed, x median brain) and mean follow-up - rebaseline difference, for both registrations.
A component whose difference is <= 0.05 is not brighter at follow-up: a FLAIR-only change detector
cannot find it, which bounds the reachable sensitivity.

    .venv/bin/python benchmarks/detect_gt_visibility.py [--cases patient01 patient03]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from pmlseg.detect.predictor import prepare_pair, read_image, to_array
from pmlseg.logs import setup_logging
from pmlseg.paths import shared_data_dir

sys.path.insert(0, str(Path(__file__).parent))
from registration_accuracy import longitudinal_reference  # noqa: E402

VISIBLE = 0.05


def smoothed(arr: np.ndarray, spacing) -> np.ndarray:
    return ndi.gaussian_filter(arr, [0.7 / s for s in spacing[:2]] + [0.0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=["patient01", "patient03"])
    args = ap.parse_args()
    setup_logging("WARNING")
    for case in args.cases:
        d = shared_data_dir() / "ljubljana-longitudinal" / case
        bl, fu = read_image(d / "study1_FLAIR.nii.gz", "rebaseline"), read_image(d / "study2_FLAIR.nii.gz", "follow-up")
        pairs = {"ours": prepare_pair(bl, fu), "reference": prepare_pair(bl, fu, longitudinal_reference(d))}
        grid, sp = pairs["ours"].grid, pairs["ours"].spacing
        t1 = sitk.ReadTransform(str(d / "study1_FLAIR_to_common_space.txt"))
        gt = to_array(sitk.Resample(sitk.ReadImage(str(d / "gt_direction.nii.gz")), grid, t1.GetInverse(),
                                    sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)) == 1
        lab, n = ndi.label(gt, structure=np.ones((3, 3, 3)))
        maps = {}
        for k, p in pairs.items():
            fu_s = smoothed(p.fu, sp)
            maps[k] = (fu_s, fu_s - smoothed(p.bl, sp))
        print(f"# {case}: {n} GT components on the working grid {tuple(round(s, 2) for s in sp)} mm")
        print("comp  vol_mm3  fu_ours  diff_ours  fu_ref  diff_ref  visible")
        visible = 0
        for i in range(1, n + 1):
            c = lab == i
            f_o, d_o = (float(m[c].mean()) for m in maps["ours"])
            f_r, d_r = (float(m[c].mean()) for m in maps["reference"])
            vis = max(d_o, d_r) > VISIBLE
            visible += vis
            print(f"{i:4d} {c.sum() * np.prod(sp):8.0f} {f_o:8.2f} {d_o:10.2f} {f_r:7.2f} {d_r:9.2f}  {vis}")
        print(f"{case}: {visible} of {n} GT components brighter at follow-up (mean difference > {VISIBLE})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
