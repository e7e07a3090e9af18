"""Intra-visit T1W/T2W -> FLAIR: scanner header alone vs MI-only rigid vs the default (rigid + edges).

Same error measure as benchmarks/registration_accuracy.py (distance to the data set's
studyN_{T1W,T2W}_intrastudy_to_FLAIR.txt at bright voxels of the FLAIR, median / p95 mm), in process,
identity start (the series of one visit share scanner coordinates), fixed brain mask as `pmlseg
register` builds it.  Columns: the header alone; rigid Mattes MI only (`edges=False`, the session-1
recipe); the default same-session recipe (edge refinement at 3 and 1.5 mm from the header, no MI
since session 10: what `pmlseg register --init identity --rigid` and the pipeline run within a visit).

    .venv/bin/python benchmarks/registration_intravisit.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import SimpleITK as sitk

from pmlseg.logs import setup_logging
from pmlseg.paths import shared_data_dir
from pmlseg.registration.affine import register_affine
from pmlseg.registration.preprocess import brain_mask

sys.path.insert(0, str(Path(__file__).parent))
from registration_accuracy import bright_points, mapping_error  # noqa: E402


def main() -> int:
    setup_logging("WARNING")
    root = shared_data_dir() / "ljubljana-longitudinal"
    print("series                     header_only   MI rigid (med/p95, s)   rigid+edges (med/p95, s)")
    for ref_path in sorted(root.glob("patient*/study*_intrastudy_to_FLAIR.txt")):
        case, study, mod = ref_path.parent.name, ref_path.name.split("_")[0], ref_path.name.split("_")[1]
        moving_path = ref_path.parent / f"{study}_{mod}.nii.gz"
        if not moving_path.exists():
            continue
        fixed = sitk.ReadImage(str(ref_path.parent / f"{study}_FLAIR.nii.gz"), sitk.sitkFloat32)
        moving = sitk.ReadImage(str(moving_path), sitk.sitkFloat32)
        ref, pts = sitk.ReadTransform(str(ref_path)), bright_points(fixed)
        mask = sitk.BinaryDilate(brain_mask(fixed, "FLAIR"), [3, 3, 1])
        cols = [f"{mapping_error(sitk.Transform(), ref, pts)[0]:.2f}"]
        for edges in (False, True):
            t0 = time.perf_counter()
            r = register_affine(fixed, moving, mask, init="identity", rigid_only=True, edges=edges)
            med, p95 = mapping_error(r.transform, ref, pts)
            cols.append(f"{med:.2f}/{p95:.2f} {time.perf_counter() - t0:4.0f}")
        print(f"{case} {study} {mod:4s}      {cols[0]:>8s}   {cols[1]:>18s}   {cols[2]:>18s}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
