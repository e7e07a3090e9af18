"""Registration accuracy, QC separation and speed of `pmlseg register` on the real longitudinal cases.

Protocol (/work/shared/data/README.md section 5): reference baseline->follow-up mapping is
T2 o T1^-1 (studyN_FLAIR_to_common_space.txt); intra-visit T1W/T2W -> FLAIR references are
studyN_{T1W,T2W}_intrastudy_to_FLAIR.txt (FLAIR point -> T1W/T2W point, the same direction as our
FIXED -> MOVING transforms).  Error = distance (mm) between our mapping and the reference at the
bright (Otsu foreground) voxels of the FIXED FLAIR: median and p95.  Each pair runs as a whole
`pmlseg register` process limited to 2 threads; its wall time is printed.  Bad pairs (wrong
patient) show the QC separation.

Usage: .venv/bin/python benchmarks/registration_accuracy.py [--quick] [--preprocessed]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from pmlseg.paths import shared_data_dir


def bright_points(img: sitk.Image, step: int = 3) -> np.ndarray:
    m = sitk.GetArrayFromImage(sitk.OtsuThreshold(sitk.Cast(img, sitk.sitkFloat32), 0, 1)).astype(bool)
    idx = np.argwhere(m)[::step][:, ::-1].astype(float)  # x, y, z
    return np.array([img.TransformContinuousIndexToPhysicalPoint(i.tolist()) for i in idx])


def mapping_error(tx: sitk.Transform, ref: sitk.Transform, pts: np.ndarray) -> tuple[float, float]:
    d = np.array([np.linalg.norm(np.subtract(tx.TransformPoint(p.tolist()), ref.TransformPoint(p.tolist())))
                  for p in pts])
    return float(np.median(d)), float(np.percentile(d, 95))


def longitudinal_reference(case: Path) -> sitk.Transform:
    t1 = sitk.ReadTransform(str(case / "study1_FLAIR_to_common_space.txt"))
    t2 = sitk.ReadTransform(str(case / "study2_FLAIR_to_common_space.txt"))
    c = sitk.CompositeTransform(3)
    c.AddTransform(t2)  # applied last
    c.AddTransform(t1.GetInverse())  # applied first
    return c


def pmlseg_register(fixed: Path, moving: Path, out: Path, extra: tuple[str, ...] = ()) -> tuple[int, float, str]:
    env = dict(os.environ, OMP_NUM_THREADS="2", ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS="2")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pmlseg", "--log-level", "WARNING", "register", str(fixed), str(moving),
                        "--transform", str(out), "--qc-json", str(out.with_suffix(".json")), *extra],
                       capture_output=True, text=True, env=env)
    return r.returncode, time.perf_counter() - t0, r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""


def preprocessed(image: Path, out_dir: Path, name: str) -> tuple[Path, Path]:
    """`pmlseg preprocess` of ``image`` (N4 + brain mask + normalisation), as the workflow does with
    `preprocess: true`: (preprocessed image, brain mask)."""
    img, mask = out_dir / f"{name}.nii", out_dir / f"{name}_mask.nii.gz"
    subprocess.run([sys.executable, "-m", "pmlseg", "--log-level", "WARNING", "preprocess", str(image), str(img),
                    str(mask)], check=True)
    return img, mask


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="only the two follow-up FLAIR pairs")
    ap.add_argument("--preprocessed", action="store_true",
                    help="register the follow-up FLAIR pairs after `pmlseg preprocess` of both, with the rebaseline's "
                         "mask (the workflow's `preprocess: true` path; the time column is the registration only)")
    args = ap.parse_args()
    root = shared_data_dir() / "ljubljana-longitudinal"
    pairs = [("patient01", "study1_FLAIR", "study2_FLAIR", "long"), ("patient03", "study1_FLAIR", "study2_FLAIR", "long")]
    if not args.quick:
        for case in ("patient01", "patient03", "patient04"):
            for st in ("study1", "study2"):
                for mod in ("T1W", "T2W"):
                    if (root / case / f"{st}_{mod}.nii.gz").exists() and (root / case / f"{st}_FLAIR.nii.gz").exists():
                        pairs.append((case, f"{st}_FLAIR", f"{st}_{mod}", f"{st}_{mod}_intrastudy_to_FLAIR.txt"))
        pairs += [("patient01|patient03", "study1_FLAIR", "study2_FLAIR", "bad"),
                  ("patient04|patient01", "study1_FLAIR", "study1_FLAIR", "bad")]
    print(f"{'case':22s} {'fixed':13s} {'moving':13s} {'median':>7s} {'p95':>6s} {'QC':>5s} {'sim':>5s} {'time_s':>6s}")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (case, fx, mv, ref) in enumerate(pairs):
            cf, cm = (case.split("|") * 2)[:2]
            fixed, moving = root / cf / f"{fx}.nii.gz", root / cm / f"{mv}.nii.gz"
            out = Path(tmp) / f"p{i}.tfm"
            intra = ref.endswith("_intrastudy_to_FLAIR.txt")  # one session: shared scanner coordinates
            extra: tuple[str, ...] = ("--init", "identity", "--rigid") if intra else ()
            fixed_in, moving_in = fixed, moving
            if args.preprocessed and ref == "long":
                fixed_in, mask = preprocessed(fixed, Path(tmp), f"p{i}_fixed")
                moving_in, _ = preprocessed(moving, Path(tmp), f"p{i}_moving")
                extra = ("--fixed-mask", str(mask))
            rc, secs, last = pmlseg_register(fixed_in, moving_in, out, extra)
            sim = float("nan")
            if out.with_suffix(".json").exists():
                import json

                sim = json.loads(out.with_suffix(".json").read_text())["similarity"]
            med = p95 = float("nan")
            if ref != "bad" and out.exists():
                reference = longitudinal_reference(root / case) if ref == "long" else \
                    sitk.ReadTransform(str(root / case / ref))
                med, p95 = mapping_error(sitk.ReadTransform(str(out)), reference, bright_points(sitk.ReadImage(str(fixed))))
            status = "pass" if rc == 0 else "FAIL"
            print(f"{case:22s} {fx:13s} {mv:13s} {med:7.2f} {p95:6.2f} {status:>5s} {sim:5.2f} {secs:6.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
