"""How visible is each ground-truth new/enlarging lesion on FLAIR, as the detector sees both visits?

For each real case: both visits on the detector's working grid exactly as `pmlseg detect` builds them
(pmlseg.detect.predictor.prepare_pair: our affine registration, normalisation, follow-up harmonisation),
and again with the data set's reference transform (T2 o T1^-1) instead of ours. Those working-grid
images are carried onto the GT's own grid (linear, study1_FLAIR_to_common_space.txt), where the
protocol's GT lives: 26-connected components of gt_direction == 1 >= 10 mm^3. Per component: volume,
mean rebaseline and follow-up FLAIR (x median brain, lightly smoothed) and their mean difference, for
both registrations. A component whose difference is <= 0.05 is not brighter at follow-up: a
FLAIR-only change detector cannot find it, which bounds the reachable sensitivity.

(Session 3's version mapped the GT onto the working grid instead; with patient01's 4 mm rebaseline
slices against the GT's 3 mm ones, nearest-neighbour mapping split and shifted the small components
and it reported 3 of 10 visible where the protocol's components show 7 of 8.)

--slice-mm X builds the working grid with X mm slices instead of the rebaseline's own (a model's
inference.json "slice_mm"): session 6 found that patient01's 4 mm rebaseline grid point-samples the
3 mm follow-up between its slices and averages four of its GT lesions away (docs/detection.md).

    .venv/bin/python benchmarks/detect_gt_visibility.py [--cases patient01 patient03] [--slice-mm 1.5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from pmlseg.detect.predictor import from_array, prepare_pair, read_image
from pmlseg.logs import setup_logging
from pmlseg.paths import shared_data_dir

sys.path.insert(0, str(Path(__file__).parent))
from registration_accuracy import longitudinal_reference  # noqa: E402

VISIBLE = 0.05


def on_gt_grid(arr: np.ndarray, pair, gt: sitk.Image, t1: sitk.Transform) -> np.ndarray:
    """A working-grid array, lightly smoothed in plane, resampled onto the GT grid (z, y, x)."""
    sp = pair.spacing
    smooth = ndi.gaussian_filter(arr, [0.7 / s for s in sp[:2]] + [0.0])
    img = from_array(smooth.astype(np.float32), pair.grid)
    return sitk.GetArrayFromImage(sitk.Resample(img, gt, t1, sitk.sitkLinear, 0.0, sitk.sitkFloat32))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=["patient01", "patient03"])
    ap.add_argument("--slice-mm", type=float, help="working-grid slice spacing (default: the rebaseline's)")
    args = ap.parse_args()
    setup_logging("WARNING")
    for case in args.cases:
        d = shared_data_dir() / "ljubljana-longitudinal" / case
        bl, fu = read_image(d / "study1_FLAIR.nii.gz", "rebaseline"), read_image(d / "study2_FLAIR.nii.gz", "follow-up")
        gt_img = sitk.ReadImage(str(d / "gt_direction.nii.gz"))
        t1 = sitk.ReadTransform(str(d / "study1_FLAIR_to_common_space.txt"))
        vox = float(np.prod(gt_img.GetSpacing()))
        lab, n = ndi.label(sitk.GetArrayFromImage(gt_img) == 1, structure=np.ones((3, 3, 3)))
        comps = [i for i in range(1, n + 1) if (lab == i).sum() * vox >= 10.0]
        views = {}
        for k, tx in (("ours", None), ("reference", longitudinal_reference(d))):
            p = prepare_pair(bl, fu, tx, slice_mm=args.slice_mm)
            views[k] = (on_gt_grid(p.bl, p, gt_img, t1), on_gt_grid(p.fu, p, gt_img, t1))
        print(f"# {case}: {len(comps)} GT components >= 10 mm^3 (protocol), values on the GT grid; working grid "
              f"{' x '.join(f'{x:.2f}' for x in p.spacing)} mm")
        print("comp  vol_mm3  bl_ours  fu_ours  diff_ours  diff_ref  visible")
        visible = 0
        for i in comps:
            c = lab == i
            b_o, f_o = (float(m[c].mean()) for m in views["ours"])
            b_r, f_r = (float(m[c].mean()) for m in views["reference"])
            vis = max(f_o - b_o, f_r - b_r) > VISIBLE
            visible += vis
            print(f"{i:4d} {c.sum() * vox:8.0f} {b_o:8.2f} {f_o:8.2f} {f_o - b_o:10.2f} {f_r - b_r:9.2f}  {vis}")
        print(f"{case}: {visible} of {len(comps)} GT components brighter at follow-up (mean difference > {VISIBLE})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
