"""Accuracy of the atlas brain mask (pmlseg.registration.preprocess.brain_mask) on real MS brains.

Reference: the skull-stripped FLAIR, T1 and T2 of the three ljubljana-cross-sectional MNI patients
(patient07/19/26; their non-zero region, holes filled, is the data set's brain mask). Each image gets
our mask with the matching template contrast; Dice, mean symmetric surface distance (mm), volumes
and seconds per mask are printed. Limits of this reference: the images are already in MNI space (the
template starts aligned) and have no skull, so this measures how well the registered template brain
fits a real MS brain's outline (cortex, ventricles enlarged by atrophy), not skull removal.

    .venv/bin/python benchmarks/brain_mask_accuracy.py
"""

from __future__ import annotations

import sys
import time

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from pmlseg.logs import setup_logging
from pmlseg.paths import shared_data_dir
from pmlseg.registration.preprocess import brain_mask

IMAGES = (("FLAIR", "FLAIR"), ("T1", "T1w"), ("T2", "T2w"))


def surface_distance(a: np.ndarray, b: np.ndarray, spacing) -> float:
    """Mean symmetric distance (mm) between the surfaces of two masks."""
    sa, sb = a & ~ndi.binary_erosion(a), b & ~ndi.binary_erosion(b)
    da = ndi.distance_transform_edt(~sa, sampling=spacing)
    db = ndi.distance_transform_edt(~sb, sampling=spacing)
    return float((db[sa].mean() + da[sb].mean()) / 2)


def main() -> int:
    setup_logging("WARNING")
    root = shared_data_dir() / "ljubljana-cross-sectional" / "mni"
    print("patient    image  dice   msd_mm  ours_mL  ref_mL  seconds")
    dices = []
    for case in sorted(p.name for p in root.iterdir() if p.is_dir()):
        for name, modality in IMAGES:
            img = sitk.ReadImage(str(root / case / f"{name}.nii.gz"), sitk.sitkFloat32)
            ref = ndi.binary_fill_holes(sitk.GetArrayFromImage(img) > 0)
            t = time.perf_counter()
            ours = sitk.GetArrayFromImage(brain_mask(img, modality, name=f"{case} {name}")) > 0
            secs = time.perf_counter() - t
            dice = 2 * (ours & ref).sum() / (ours.sum() + ref.sum())
            dices.append(dice)
            vox = float(np.prod(img.GetSpacing())) / 1000
            print(f"{case:10s} {name:5s} {dice:.3f}  {surface_distance(ours, ref, img.GetSpacing()[::-1]):6.2f}"
                  f"  {ours.sum() * vox:7.0f} {ref.sum() * vox:7.0f}  {secs:6.1f}")
    print(f"Dice median {np.median(dices):.3f}, range {min(dices):.3f}-{max(dices):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
