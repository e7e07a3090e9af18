"""A simulated re-scan of a real image: the same brain, no change, acquired again.

Why: most surveillance follow-ups are stable, and a reading aid must stay quiet on them. A stable pair
with known "no new lesion" truth is made from one real scan by what differs between two sessions of an
unchanged head: rigid head motion (a few mm / degrees), a different bias field and receiver gain, and
fresh Rician noise, re-sampled on the scan's own grid. The pieces come from pmlseg.synth.acquisition,
which the synthetic cohort uses for the same effects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from pmlseg.synth.acquisition import HEAD_CENTER_LPS, Grid, bias_field, rician, rotation


@dataclass(frozen=True)
class Rescan:
    """How far the re-scan may differ from the original (defaults: a typical repositioned patient)."""

    max_deg: float = 3.0          # rotation about each axis, degrees
    max_mm: float = 3.0           # translation along each axis, mm
    bias_strength: float = 0.10   # bias_field strength (log-field coefficients)
    gain: tuple[float, float] = (0.85, 1.15)  # receiver gain range
    noise: float = 0.02           # fresh Rician noise SD as a fraction of the 99th intensity percentile


def _centre(image: sitk.Image) -> np.ndarray:
    return np.array(image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in image.GetSize()]))


def simulate_rescan(image: sitk.Image, seed: int = 0, params: Rescan = Rescan()) -> tuple[sitk.Image, sitk.Transform]:
    """(re-scan on ``image``'s grid, transform mapping original points to re-scan points).

    The head moves by a random rigid transform about the image centre; the re-scan is ``image`` seen
    through it (B-spline interpolation), times a smooth bias field and a gain, plus fresh Rician noise.
    """
    rng = np.random.default_rng(seed)
    img = sitk.Cast(image, sitk.sitkFloat32)
    centre = _centre(img)
    motion = sitk.Euler3DTransform()
    motion.SetCenter(centre.tolist())
    motion.SetMatrix(rotation(*rng.uniform(-params.max_deg, params.max_deg, 3)).ravel().tolist())
    motion.SetTranslation(rng.uniform(-params.max_mm, params.max_mm, 3).tolist())
    # rescan point p shows the anatomy at motion(p) of the original: resample through ``motion``
    moved = sitk.Resample(img, img, motion, sitk.sitkBSpline, 0.0, sitk.sitkFloat32)
    a = np.maximum(sitk.GetArrayFromImage(moved), 0.0)
    # bias field centred on this head (bias_field is centred on HEAD_CENTER_LPS)
    grid = Grid(size=img.GetSize(), spacing=img.GetSpacing(),
                direction=np.array(img.GetDirection()).reshape(3, 3),
                origin=np.array(img.GetOrigin()) - centre + HEAD_CENTER_LPS)
    a *= bias_field(grid, rng, params.bias_strength) * float(rng.uniform(*params.gain))
    sigma = params.noise * float(np.percentile(a, 99))
    out = sitk.GetImageFromArray(rician(a, sigma, rng))
    out.CopyInformation(img)
    return out, motion.GetInverse()


def write_rescan(src, dst, seed: int = 0, params: Rescan = Rescan()):
    """Read ``src`` (NIfTI), write its simulated re-scan to ``dst``; returns the original->re-scan transform."""
    from pmlseg.atomic import write_nifti

    img, tfm = simulate_rescan(sitk.ReadImage(str(src)), seed, params)
    write_nifti(dst, img)
    return tfm
