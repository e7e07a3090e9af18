"""Registration quality control: is MOVING really aligned with FIXED inside the brain?

Why two numbers: normalised mutual information (NMI, Studholme: (H(F)+H(M))/H(F,M), 1..2) is
sensitive to gross failure, and it is contrast-agnostic (FLAIR/T1/T2), but a wrong patient's brain
after affine registration still shares the coarse layout.  The gradient-orientation agreement
(normalised gradient field, mean cos^2 of the angle between the in-plane image gradients where
both images have edges) measures whether the *fine* anatomy (sulci, ventricle borders) coincides,
which only happens for the same brain, correctly aligned.  ``similarity`` is that gradient
agreement; a pair passes when it reaches :data:`THRESHOLD` (calibrated on the real pairs of
/work/shared/data, see docs/registration.md) and the brains overlap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from pmlseg.errors import PmlsegError
from pmlseg.registration.grid import crop_to_mask, smooth

log = logging.getLogger(__name__)

# Calibrated on the real pairs (benchmarks/registration_accuracy.py prints the "sim" column), with
# the edge-alignment stage on: good pairs (same patient, FLAIR/T1/T2 -> FLAIR, brain-masked) score
# 0.69-0.95; a wrong patient 0.40-0.48 (edge refinement aligns what edges two brains share: with
# mutual information alone they scored 0.09-0.11); the correct transform followed by a 20 degree
# rotation 0.28.  The threshold sits in the middle of the gap.
THRESHOLD = 0.55
MIN_OVERLAP = 0.5  # fraction of the fixed brain that must land inside the moving field of view
# slices of FIXED closer than this are scored one in every few: the measure is per slice (in-plane gradients),
# so a kept slice scores exactly as before, and thin 3D slices (1 mm: 3x fewer) sample the same brain as the
# 3-4 mm 2D slices it was calibrated on (issue 17: a 1 mm 3D FLAIR's QC took ~1 s, 5 per detection case)
SLICE_MM = 3.0


@dataclass
class QCResult:
    """``similarity`` (gradient agreement, 0..1), ``passed`` and a one-line ``reason``."""

    similarity: float
    passed: bool
    reason: str
    metrics: dict = field(default_factory=dict)


def _nmi(a: np.ndarray, b: np.ndarray, bins: int = 64) -> float:
    def q(x):
        lo, hi = np.percentile(x, [0.5, 99.5])
        return np.clip(((x - lo) / max(hi - lo, 1e-12) * (bins - 1)).astype(int), 0, bins - 1)

    h = np.bincount(q(a) * bins + q(b), minlength=bins * bins).reshape(bins, bins).astype(float)
    p = h / h.sum()
    px, py = p.sum(1), p.sum(0)

    def ent(x):
        x = x[x > 0]
        return float(-(x * np.log(x)).sum())

    return (ent(px) + ent(py)) / max(ent(p.ravel()), 1e-12)


def _in_plane_gradients(img: sitk.Image, sigma_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """x/y gradient (array order z, y, x) after in-plane Gaussian smoothing; slices stay independent
    because thick 2D slices make through-plane gradients unreliable."""
    sp = img.GetSpacing()
    sm = smooth(img, [sigma_mm, sigma_mm, 0.0])
    a = sitk.GetArrayFromImage(sm).astype(np.float32)
    gy, gx = np.gradient(a, sp[1], sp[0], axis=(1, 2))
    return gx, gy


def _gradient_agreement(f: sitk.Image, m: sitk.Image, mask: np.ndarray, sigma_mm: float = 1.0) -> float:
    fx, fy = _in_plane_gradients(f, sigma_mm)
    mx, my = _in_plane_gradients(m, sigma_mm)
    nf = fx ** 2 + fy ** 2
    nm = mx ** 2 + my ** 2
    # only where both images have an edge: the strongest 30 % of gradients of each inside the mask
    tf = np.percentile(nf[mask], 70)
    tm = np.percentile(nm[mask], 70)
    sel = mask & (nf > tf) & (nm > tm)
    if sel.sum() < 100:
        return 0.0
    dot = fx[sel] * mx[sel] + fy[sel] * my[sel]
    cos2 = dot ** 2 / (nf[sel] * nm[sel])
    # cos^2 averages 0.5 for unrelated orientations: rescale so chance = 0 and identical = 1
    return float(np.clip((cos2.mean() - 0.5) / 0.5, 0.0, 1.0))


def registration_qc(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform,
                    fixed_mask: sitk.Image | None = None, *, threshold: float = THRESHOLD, sigma_mm: float = 1.0,
                    fixed_name: str = "fixed image", moving_name: str = "moving image") -> QCResult:
    """Score how well ``transform`` (fixed->moving) aligns MOVING to FIXED inside ``fixed_mask``
    (default: the fixed head foreground); never raises for a bad alignment, it reports it."""
    from pmlseg.registration.affine import check_image, check_mask, head_foreground

    f = check_image(fixed, fixed_name)
    m = check_image(moving, moving_name)
    mask_img = check_mask(fixed_mask, fixed, f"mask for {fixed_name}", fixed_name) if fixed_mask is not None \
        else head_foreground(f)
    # every score is taken inside the mask: cut to its box, grown in-plane by the smoothing's reach
    f, mask_img = crop_to_mask(f, mask_img, [4.0 * sigma_mm, 4.0 * sigma_mm, 0.0]), \
        crop_to_mask(mask_img, mask_img, [4.0 * sigma_mm, 4.0 * sigma_mm, 0.0])
    step = max(1, int(SLICE_MM / f.GetSpacing()[2] + 1e-6))
    if step > 1 and f.GetSize()[2] >= 3 * step:
        f, mask_img = f[:, :, ::step], mask_img[:, :, ::step]
    # resample moving (and a "inside field of view" indicator) onto the fixed grid
    ones = sitk.Image(m.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(m)
    inside = sitk.Resample(ones, f, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    mr = sitk.Resample(m, f, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    mask = sitk.GetArrayViewFromImage(mask_img) > 0
    ins = sitk.GetArrayViewFromImage(inside) > 0
    overlap = float((mask & ins).sum() / max(mask.sum(), 1))
    metrics = {"overlap": overlap}
    pair = f"{moving_name} -> {fixed_name}"
    if overlap < MIN_OVERLAP:
        return QCResult(0.0, False, f"{pair}: only {overlap:.0%} of the fixed brain lies inside the moving "
                                    "field of view after registration", metrics)
    sel = mask & ins
    fa = sitk.GetArrayViewFromImage(f)
    ma = sitk.GetArrayViewFromImage(mr)
    metrics["nmi"] = _nmi(fa[sel], ma[sel])
    sim = _gradient_agreement(f, mr, sel, sigma_mm)
    metrics["gradient_agreement"] = sim
    passed = sim >= threshold
    reason = (f"{pair}: aligned (gradient agreement {sim:.2f} >= {threshold:.2f}, NMI {metrics['nmi']:.3f})"
              if passed else
              f"{pair}: registration failed QC (gradient agreement {sim:.2f} < {threshold:.2f}, "
              f"NMI {metrics['nmi']:.3f}): wrong pairing, different anatomy or misalignment")
    log.log(logging.INFO if passed else logging.WARNING, "%s", reason)
    return QCResult(sim, passed, reason, metrics)


def require_pass(qc: QCResult) -> None:
    """Raise PmlsegError with the QC's one-line reason when it failed."""
    if not qc.passed:
        raise PmlsegError(qc.reason)
