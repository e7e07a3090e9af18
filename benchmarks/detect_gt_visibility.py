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

--modality T2W compares FLAIR with T2W on the reference transforms alone (each visit's raw image carried
straight onto the GT grid: study N T2W -> its FLAIR -> common space, the data set's own transforms): per
component the mean difference of each modality in robust SDs of that modality's difference over the brain
(1.4826 x MAD, brain = the working grid's mask carried onto the GT grid), so a T2W change can be weighed
against FLAIR's before T2W is made a network input (docs/detection.md, Phase 12).

    .venv/bin/python benchmarks/detect_gt_visibility.py [--cases patient01 patient03] [--slice-mm 1.5]
    .venv/bin/python benchmarks/detect_gt_visibility.py --modality T2W
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


def raw_on_gt_grid(case: Path, study: int, modality: str, gt: sitk.Image) -> np.ndarray:
    """A visit's raw FLAIR or T2W on the GT grid through the data set's own transforms (z, y, x)."""
    tx = sitk.CompositeTransform(3)
    if modality != "FLAIR":
        tx.AddTransform(sitk.ReadTransform(str(case / f"study{study}_{modality}_intrastudy_to_FLAIR.txt")))
    tx.AddTransform(sitk.ReadTransform(str(case / f"study{study}_FLAIR_to_common_space.txt")))  # applied first
    img = sitk.ReadImage(str(case / f"study{study}_{modality}.nii.gz"), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(sitk.Resample(img, gt, tx, sitk.sitkLinear, 0.0, sitk.sitkFloat32))


def compare_modalities(case: Path, name: str, modality: str, gt_img, lab, comps, vox, brain) -> None:
    """Each GT component's mean FLAIR and `modality` change, in robust SDs of that change over the brain."""
    diffs = {}
    for m in ("FLAIR", modality):
        if not all((case / f"study{s}_{m}.nii.gz").is_file() for s in (1, 2)):
            print(f"# {name}: no {m} at both visits")
            return
        bl, fu = (raw_on_gt_grid(case, s, m, gt_img) for s in (1, 2))
        bl, fu = (v / float(np.median(v[brain])) for v in (bl, fu))
        d = ndi.gaussian_filter(fu - bl, 0.7)
        mad = float(np.median(np.abs(d[brain] - np.median(d[brain]))))
        diffs[m] = (d, 1.4826 * mad)
    print(f"# {name}: reference transforms, raw images on the GT grid, mean difference (x median brain) and in "
          f"robust SDs of the difference over the brain (FLAIR SD {diffs['FLAIR'][1]:.3f}, "
          f"{modality} SD {diffs[modality][1]:.3f})")
    print(f"comp  vol_mm3  FLAIR_diff  FLAIR_SDs  {modality}_diff  {modality}_SDs")
    above = {m: 0 for m in diffs}
    for i in comps:
        c = lab == i
        row = []
        for m, (d, sd) in diffs.items():
            v = float(d[c].mean())
            above[m] += v / sd > 2.0
            row += [v, v / sd]
        print(f"{i:4d} {c.sum() * vox:8.0f} {row[0]:11.2f} {row[1]:10.1f} {row[2]:12.2f} {row[3]:10.1f}")
    print(f"{name}: components whose mean change is > 2 robust SDs: FLAIR {above['FLAIR']} of {len(comps)}, "
          f"{modality} {above[modality]} of {len(comps)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=["patient01", "patient03"])
    ap.add_argument("--slice-mm", type=float, help="working-grid slice spacing (default: the rebaseline's)")
    ap.add_argument("--modality", choices=["T2W", "T1W"], help="compare FLAIR with this modality instead")
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
        if args.modality:
            p = prepare_pair(bl, fu, longitudinal_reference(d), slice_mm=args.slice_mm)
            brain = on_gt_grid(p.mask.astype(np.float32), p, gt_img, t1) > 0.5
            compare_modalities(d, case, args.modality, gt_img, lab, comps, vox, brain)
            continue
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
