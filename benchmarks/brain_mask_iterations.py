"""Brain mask: template-registration iterations per level vs mask agreement and time.

`brain_mask` registers the ICBM152 template to each visit (MI affine, 6/4 mm rigid, 4/2 mm affine).
This prints, for real visits of ../shared/data/ljubljana-longitudinal, the Dice of the mask built
with N iterations per level against the one built with 150 (the recipe before session 3), and the
time per mask in process (the template is loaded once beforehand, so times are the registration).

    .venv/bin/python benchmarks/brain_mask_iterations.py [--iterations 150 60 40]
"""

from __future__ import annotations

import argparse
import sys
import time

import SimpleITK as sitk

from pmlseg.logs import setup_logging
from pmlseg.paths import shared_data_dir
from pmlseg.registration import preprocess

VISITS = ["patient01/study1_FLAIR", "patient03/study1_FLAIR", "patient03/study2_FLAIR", "patient01/study2_T1W"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", nargs="+", type=int, default=[150, 60, 40])
    args = ap.parse_args()
    setup_logging("WARNING")
    original = preprocess.register_affine
    preprocess._template("FLAIR"), preprocess._template("T1w")  # load once, outside the timings
    print("visit                     " + "  ".join(f"it={n}: dice / s" for n in args.iterations))
    for v in VISITS:
        img = sitk.ReadImage(str(shared_data_dir() / "ljubljana-longitudinal" / f"{v}.nii.gz"))
        masks, cols = {}, []
        for n in args.iterations:
            preprocess.register_affine = lambda *a, n=n, **k: original(*a, **dict(k, iterations=n))
            t0 = time.perf_counter()
            masks[n] = sitk.GetArrayFromImage(preprocess.brain_mask(img, "T1w" if "T1W" in v else "FLAIR")) > 0
            secs = time.perf_counter() - t0
            ref = masks[args.iterations[0]]
            dice = 2 * (ref & masks[n]).sum() / (ref.sum() + masks[n].sum())
            cols.append(f"{dice:.4f} / {secs:4.1f}")
        preprocess.register_affine = original
        print(f"{v:25s} " + "        ".join(cols), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
