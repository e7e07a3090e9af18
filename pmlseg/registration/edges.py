"""Edge-alignment refinement: maximise normalised-gradient-field agreement in FIXED's slice planes.

Why: Mattes mutual information between thick 2D slices from two scanners, or two contrasts of one
visit, has its optimum 0.5-1.2 mm away from the true alignment (docs/registration.md: started at
the reference affine it walks 1-1.2 mm away on patient03; within a visit it lands further from the
reference than the scanner header does).  Edges (sulci, ventricle and grey/white borders) sit at
the same place in every contrast and on every scanner.  The normalised gradient field measure
(Haber & Modersitzki 2006), mean of <gF, gM>^2 / ((|gF|^2 + eF) (|gM|^2 + eM)), scores their
alignment regardless of edge polarity and strength.  Only gradients within FIXED's slice plane are
used when its slices are thick (through-plane differences of 3-4 mm slices are partial-volume
averages); it is the QC's gradient agreement made smooth enough to optimise.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import optimize

from pmlseg.memo import image_key
from pmlseg.registration.grid import crop_to_mask, mask_shape, smooth

log = logging.getLogger(__name__)

# (grid spacing mm in FIXED's fine axes, Gaussian sigma mm): coarse level for capture, fine for accuracy
LEVELS = ((3.0, 2.0), (1.5, 1.5))
# Powell's budget per level: the coarse level only has to capture (it hit 150 every time), the fine one converges
# (60 at 3 mm since session 11: docs/registration.md "Session 11")
EVALUATIONS = (60, 150)
# series of one session (rigid, from the scanner header: `register_affine(init="identity", rigid_only=True)`):
# no mutual-information stages (SAME_SESSION_MI is empty), both edge levels from the header alone.  On the
# 9 real intra-visit T1W/T2W -> FLAIR pairs (issue 17, in process, brain-masked) this is within +0.05 mm of
# the median of MI rigid (4, 2 mm) + the fine edge level, including patient03 study2 T1W whose header is
# 5.4 mm off (the 3 mm level captures it); what did not hold: edge levels at 2 mm (+0.11-0.16 mm on
# patient03 study1 T2W), 80 evaluations per level or a 300,000-voxel grid (+0.12-0.22 mm on patient03).
# Whole `pmlseg register` processes: within +0.07 mm (docs/benchmarks.md "Session 10")
# Since session 12 the fine level stops at 100 evaluations: on the 9 real pairs (one thread) median of the
# medians 0.36 mm (max 0.48) vs 0.39 (0.46) with 150 and the whole-head mask the detector uses, 0.33 (0.43) vs 0.33
# (0.43) with `pmlseg register`'s brain mask, 18-23 % less time; 80 was faster still but left 0.32-0.36 mm on the
# known 4 mm-slice motion of tests/test_registration_same_session.py (docs/registration.md "Session 12")
SAME_SESSION_LEVELS = LEVELS
SAME_SESSION_EVALUATIONS = (60, 100)
SAME_SESSION_MI: tuple[float, ...] = ()
# parameter units: radians / fraction for rotation, scale and shear, mm for translation
_SCALE = np.array([0.01] * 3 + [1.0] * 3 + [0.01] * 6)
_BOUND = 10.0  # +-0.1 rad, +-10 mm, +-10 % scale/shear around the start: a refinement, not a search
# voxels per evaluation grid: a thick-slice FLAIR's brain at 1.5 mm is ~0.7 M; bounds the time per
# evaluation (~10-25 ms on 2 cores) for 3D volumes and whole-head masks
MAX_VOXELS = 800_000


@dataclass
class EdgeRefinement:
    """``transform`` (FIXED points -> MOVING points), final ``agreement`` (0..1), which start won."""

    transform: sitk.AffineTransform
    agreement: float
    start: int
    evaluations: int
    seconds: float


def as_affine(transform: sitk.Transform, centre) -> sitk.AffineTransform:
    """Any (near-)affine transform as an AffineTransform about ``centre``, fitted at four points."""
    c = np.asarray(centre, float)
    pts = c + np.array([[0, 0, 0], [50, 0, 0], [0, 50, 0], [0, 0, 50]], float)
    mapped = np.array([transform.TransformPoint(p.tolist()) for p in pts])
    out = sitk.AffineTransform(3)
    out.SetCenter(c.tolist())
    out.SetMatrix(((mapped[1:] - mapped[0]).T / 50.0).ravel().tolist())
    out.SetTranslation((mapped[0] - c).tolist())
    return out


def _delta(base: sitk.AffineTransform, p: np.ndarray) -> sitk.AffineTransform:
    """base o D, where D rotates (Euler), scales/shears (upper triangular) and shifts about base's centre."""
    q = np.zeros(12)
    q[:len(p)] = p * _SCALE[:len(p)]
    e = sitk.Euler3DTransform()
    e.SetRotation(*q[:3])
    m = np.array(e.GetMatrix()).reshape(3, 3) @ (np.eye(3) + np.array([[q[6], q[9], q[10]],
                                                                      [0.0, q[7], q[11]],
                                                                      [0.0, 0.0, q[8]]]))
    a = np.array(base.GetMatrix()).reshape(3, 3)
    out = sitk.AffineTransform(3)
    out.SetCenter(base.GetCenter())
    out.SetMatrix((a @ m).ravel().tolist())
    out.SetTranslation((a @ q[3:6] + np.array(base.GetTranslation())).tolist())
    return out


def _work_grid(fixed: sitk.Image, mask: sitk.Image, spacing: float) -> sitk.Image:
    """FIXED's orientation, its fine axes at ``spacing`` (thick axes unchanged), cropped to the mask;
    coarser where that would exceed :data:`MAX_VOXELS` (a 1 mm 3D head with a whole-head mask)."""
    box = mask_shape(mask).GetBoundingBox(1)
    lo, n = np.array(box[:3]), np.array(box[3:])
    sp = np.array(fixed.GetSpacing())
    new_sp = np.maximum(sp, spacing)
    count = float(np.prod(n * sp / new_sp))
    if count > MAX_VOXELS:
        fine = new_sp <= spacing
        new_sp[fine] *= (count / MAX_VOXELS) ** (1.0 / max(int(fine.sum()), 1))
    grid = sitk.Image([int(np.ceil(k * s / t)) for k, s, t in zip(n, sp, new_sp)], sitk.sitkFloat32)
    grid.SetSpacing(new_sp.tolist())
    grid.SetDirection(fixed.GetDirection())
    grid.SetOrigin(fixed.TransformIndexToPhysicalPoint([int(v) for v in lo]))
    return grid


def _edge_axes(fixed: sitk.Image) -> tuple[int, ...]:
    """Array axes (z, y, x order) whose gradients are trusted: all, or the slice plane of thick slices."""
    sp = np.array(fixed.GetSpacing())[::-1]
    return tuple(int(a) for a in np.flatnonzero(sp < 1.5 * sp.min())) if sp.max() > 1.5 * sp.min() else (0, 1, 2)


def _in_plane_sigmas(img: sitk.Image, sigma: float) -> list[float]:
    """``sigma`` mm along the image's fine axes; thick (> 1.5 x finest) axes (almost) left alone."""
    sp = img.GetSpacing()
    return [sigma if s < 1.5 * min(sp) else 0.01 * s for s in sp]


def _gradients(arr: np.ndarray, spacing, axes) -> list[np.ndarray]:
    sp = spacing[::-1]
    out = np.gradient(arr, *[sp[a] for a in axes], axis=axes)
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _fixed_side(fixed: sitk.Image, mask: sitk.Image, spacing: float, sigma: float, axes) -> tuple:
    """What a level scores MOVING against: the work grid, the mask on it, FIXED's gradients inside it, their
    squared norm and its median."""
    grid = _work_grid(fixed, mask, spacing)
    # FIXED is only sampled inside the mask's box: smooth just that (and the Gaussian's reach)
    sig = _in_plane_sigmas(fixed, sigma)
    f_s = smooth(crop_to_mask(fixed, mask, [4.0 * s for s in sig]), sig)
    inside = sitk.GetArrayFromImage(sitk.Resample(mask, grid, sitk.Transform(), sitk.sitkNearestNeighbor)) > 0
    gf = [g[inside] for g in _gradients(sitk.GetArrayFromImage(sitk.Resample(f_s, grid)), grid.GetSpacing(), axes)]
    nf = sum(g * g for g in gf)
    return grid, inside, gf, nf, float(np.median(nf))


def refine_on_edges(fixed: sitk.Image, moving: sitk.Image, mask: sitk.Image,
                    starts: list[sitk.Transform], *, dof: int = 12, levels=LEVELS,
                    max_evaluations: tuple[int, ...] = EVALUATIONS, fixed_side=None) -> EdgeRefinement:
    """Refine the best of ``starts`` (FIXED->MOVING transforms) by maximising edge agreement inside
    ``mask`` (UInt8 on FIXED's grid); ``dof`` 6 = rigid change, 12 = affine change.  The start with the
    best agreement at the coarse level is refined; ``max_evaluations`` (one per level) bounds the time.
    ``fixed_side``: FIXED's ``registration.affine.Prepared``, which keeps each level's fixed-side work for the
    next registration to the same image (a follow-up FLAIR's T1, T2 and DWI)."""
    if dof not in (6, 12):
        raise ValueError("dof must be 6 or 12")
    t0 = time.perf_counter()
    mask = sitk.Cast(mask > 0, sitk.sitkUInt8)
    centre = mask_shape(mask).GetCentroid(1)
    cands = [as_affine(s, centre) for s in starts]
    axes = _edge_axes(fixed)
    evaluations, chosen, agreement = 0, 0, 0.0
    for li, ((spacing, sigma), budget) in enumerate(zip(levels, max_evaluations, strict=True)):
        if fixed_side is None:
            grid, inside, gf, nf, ef = _fixed_side(fixed, mask, spacing, sigma, axes)
        else:
            grid, inside, gf, nf, ef = fixed_side.get(("edges", image_key(mask), spacing, sigma, axes),
                                                      lambda: _fixed_side(fixed, mask, spacing, sigma, axes))
        m_s = smooth(moving, _in_plane_sigmas(moving, sigma))

        def moving_gradients(tx):
            arr = sitk.GetArrayFromImage(sitk.Resample(m_s, grid, tx, sitk.sitkLinear, 0.0, sitk.sitkFloat32))
            return [g[inside] for g in _gradients(arr, grid.GetSpacing(), axes)]

        def cost(p, base):
            gm = moving_gradients(_delta(base, p))
            nm = sum(g * g for g in gm)
            dot = sum(a * b for a, b in zip(gf, gm))
            # eM from the current resampling: interpolation blurs MOVING more between its voxels than at
            # them, and a fixed eM would reward grid-aligned positions (one-off session-3 experiment on
            # patient03 study2 T1W: 0.65 vs 0.28 mm); the median of every 7th voxel is 7x cheaper
            return -float(np.mean(dot * dot / ((nf + ef) * (nm + np.median(nm[::7])))))

        if li == 0 and len(cands) > 1:
            scores = [cost(np.zeros(dof), c) for c in cands]
            evaluations += len(cands)
            chosen = int(np.argmin(scores))
            log.debug("edge refinement starts: agreements %s, using start %d",
                      ", ".join(f"{-s:.4f}" for s in scores), chosen)
        # Powell: derivative-free line searches cope with the kinks that linear interpolation puts in
        # the cost (finite-difference L-BFGS-B needed 2-3x the evaluations in a one-off comparison)
        res = optimize.minimize(cost, np.zeros(dof), args=(cands[chosen],), method="Powell",
                                bounds=[(-_BOUND, _BOUND)] * dof,
                                options={"xtol": 0.2, "ftol": 1e-5, "maxfev": budget})
        evaluations += res.nfev
        cands[chosen] = _delta(cands[chosen], res.x)
        agreement = -float(res.fun)
        log.debug("edges %.1f mm: agreement %.4f after %d evaluations", spacing, agreement, res.nfev)
    return EdgeRefinement(cands[chosen], agreement, chosen, evaluations, time.perf_counter() - t0)
