"""Multi-resolution mutual-information affine registration (SimpleITK), robust to thick slices.

Why a hand-made pyramid: SimpleITK shrinks every axis by the same factor, which turns a 36-slice
4 mm FLAIR into 9 slices at the coarse level.  We resample each level to a target *physical*
spacing instead (an axis already coarser than the target is left alone), with Gaussian
smoothing matched to the reduction, so 2D-acquired (0.7 x 0.7 x 4 mm) and 3D images register alike.

Recipe: moments (centre of mass + principal axes off) initialisation -> rigid stage at 4 and 2 mm
-> affine (12 dof) stage at 2 mm and native resolution; Mattes mutual information, random
sampling with a fixed seed (reproducible), regular-step gradient descent with scales from
physical shift.  The returned transform maps FIXED physical points to MOVING physical points
(ITK convention), so ``sitk.Resample(moving, fixed, result.transform)`` puts MOVING on FIXED's grid.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from pmlseg.errors import PmlsegError
from pmlseg.memo import by_image_content
from pmlseg.registration.edges import (EVALUATIONS, LEVELS, SAME_SESSION_EVALUATIONS, SAME_SESSION_LEVELS, SAME_SESSION_MI, as_affine,
                                       refine_on_edges)
from pmlseg.registration.grid import smooth

log = logging.getLogger(__name__)

INITS = ("auto", "moments", "geometry", "identity")


@dataclass
class RegistrationResult:
    """Outcome of :func:`register_affine`; ``transform`` maps FIXED points to MOVING points."""

    transform: sitk.AffineTransform
    metric: float  # last stage's cost: Mattes MI, or minus the edge agreement (more negative = better)
    seconds: float
    init: str
    stages: list[dict] = field(default_factory=list)


# ----------------------------------------------------------------------------- input checks
def check_image(image: sitk.Image, name: str) -> sitk.Image:
    """Return a float32 copy of a usable 3D image; raise PmlsegError naming ``name`` otherwise.

    Non-finite voxels (NaN/inf, e.g. from other tools' background) are set to 0; an image that is
    2D, has a single slice, or has no finite non-constant content is refused.
    """
    if image is None:
        raise PmlsegError(f"{name}: no image")
    if image.GetDimension() != 3:
        raise PmlsegError(f"{name}: expected a 3D image, got {image.GetDimension()}D")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise PmlsegError(f"{name}: expected a scalar image, got {image.GetNumberOfComponentsPerPixel()} "
                          "components per voxel (4D or vector image?)")
    size = image.GetSize()
    if min(size) < 2:
        raise PmlsegError(f"{name}: image of size {size} is empty or 2D (need at least 2 voxels on every axis)")
    img = sitk.Cast(image, sitk.sitkFloat32)
    arr = sitk.GetArrayViewFromImage(img)
    finite = np.isfinite(arr)
    if not finite.any():
        raise PmlsegError(f"{name}: every voxel is NaN or infinite")
    if not finite.all():
        frac = 1.0 - finite.mean()
        if frac > 0.5:
            raise PmlsegError(f"{name}: {frac:.0%} of voxels are NaN or infinite")
        log.warning("%s: %.1f%% non-finite voxels set to 0", name, 100 * frac)
        clean = np.where(finite, arr, 0).astype(np.float32)
        out = sitk.GetImageFromArray(clean)
        out.CopyInformation(img)
        img = out
        arr = clean
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if hi - lo <= 0:
        raise PmlsegError(f"{name}: image is constant ({lo:g}); nothing to register")
    return img


def check_mask(mask: sitk.Image | None, image: sitk.Image, mask_name: str, image_name: str) -> sitk.Image | None:
    """A UInt8 copy of ``mask`` if it lies on ``image``'s voxel grid and is not empty; else PmlsegError."""
    if mask is None:
        return None
    if mask.GetDimension() != 3 or mask.GetSize() != image.GetSize():
        raise PmlsegError(f"{mask_name}: mask of size {mask.GetSize()} does not fit image {image_name} "
                          f"of size {image.GetSize()}")
    tol = 1e-3
    if (not np.allclose(mask.GetSpacing(), image.GetSpacing(), atol=tol)
            or not np.allclose(mask.GetOrigin(), image.GetOrigin(), atol=max(tol, 0.01 * min(image.GetSpacing())))
            or not np.allclose(mask.GetDirection(), image.GetDirection(), atol=tol)):
        raise PmlsegError(f"{mask_name}: mask is not on the voxel grid of {image_name} "
                          "(spacing, origin or orientation differ)")
    arr = sitk.GetArrayViewFromImage(mask)
    m = np.isfinite(arr) & (arr > 0)
    if not m.any():
        raise PmlsegError(f"{mask_name}: mask is empty")
    out = sitk.GetImageFromArray(m.astype(np.uint8))
    out.CopyInformation(image)
    return out


# ----------------------------------------------------------------------------- helpers
# voxel size (mm) at which the head foreground is found: the closing and hole filling on a 1 mm 3D head
# took 0.9-1.6 s at full resolution (6 calls per detection case, issue 17); on 2 mm bins ~0.1 s
FOREGROUND_MM = 2.0


def head_foreground(image: sitk.Image, spacing_mm: float = FOREGROUND_MM) -> sitk.Image:
    """Everything that is not air (UInt8 on ``image``'s grid): Otsu threshold, largest component, closed
    (2 voxels in plane, 1 across slices, at native resolution), holes filled.

    Found on a copy averaged over bins of whole voxels no larger than ``spacing_mm`` (an axis already
    coarser is kept), then brought back by linear interpolation: the outline moves by under a bin, and
    what needs it (metric and N4 masks, the brain mask's outer limit, QC's default mask) is coarser anyway.
    """
    img = sitk.Cast(image, sitk.sitkFloat32)
    factors = [max(1, int(spacing_mm / s + 1e-6)) for s in img.GetSpacing()]
    small = img
    if max(factors) > 1:
        # pad to whole bins by repeating the border, so no partial bin at the far edges is dropped
        small = sitk.BinShrink(sitk.ZeroFluxNeumannPad(img, [0, 0, 0], [(-n) % f for n, f in zip(img.GetSize(), factors)]),
                               factors)
    fg = sitk.OtsuThreshold(small, 0, 1)
    cc = sitk.RelabelComponent(sitk.ConnectedComponent(fg), sortByObjectSize=True)
    radius = tuple(max(1, int(round(r / f))) for r, f in zip((1, 2, 2), factors[::-1]))  # array order z, y, x
    closed = sitk.GetImageFromArray(_binary_closing(sitk.GetArrayViewFromImage(cc) == 1, radius).view(np.uint8))
    closed.CopyInformation(small)
    filled = sitk.BinaryFillhole(closed)
    if small is img:
        return filled
    back = sitk.Resample(sitk.Cast(filled, sitk.sitkFloat32), img, sitk.Transform(), sitk.sitkLinear, 0.0)
    return sitk.Cast(back >= 0.5, sitk.sitkUInt8)


def _binary_closing(arr: np.ndarray, radius: tuple[int, ...]) -> np.ndarray:
    """ITK's BinaryMorphologicalClosing (ball kernel, safe border) with scipy: the same voxels, ~3x faster.

    ITK's ball of radius r holds the offsets with sum((i / (r + 0.5))^2) <= 1; the array is padded by
    the radius so the border never erodes what the dilation added.
    """
    from scipy import ndimage as ndi

    grid = np.mgrid[tuple(slice(-r, r + 1) for r in radius)]
    ball = sum((g / (r + 0.5)) ** 2 for g, r in zip(grid, radius)) <= 1.0
    pad = [(r, r) for r in radius]
    out = ndi.binary_erosion(ndi.binary_dilation(np.pad(arr, pad), ball), ball, border_value=1)
    return np.ascontiguousarray(out[tuple(slice(r, out.shape[i] - r) for i, r in enumerate(radius))])


def _robust_rescale(img: sitk.Image) -> sitk.Image:
    """Clip to the 0.5-99.5 percentile of the non-zero voxels and map to [0, 1] (concentrates MI bins)."""
    arr = sitk.GetArrayViewFromImage(img)
    nz = arr[arr > arr.min()]
    if nz.size < 100:
        nz = arr.ravel()
    lo, hi = np.percentile(nz[:: max(1, nz.size // 500000)], [0.5, 99.5])
    if hi <= lo:
        lo, hi = float(arr.min()), float(arr.max())
    out = sitk.Clamp(img, sitk.sitkFloat32, float(lo), float(hi))
    return sitk.ShiftScale(out, -float(lo), 1.0 / float(hi - lo))


def _at_spacing(img: sitk.Image, target_mm: float, is_mask: bool = False) -> sitk.Image:
    """Smooth and resample ``img`` so no axis is finer than ``target_mm`` (coarser axes unchanged)."""
    sp = np.array(img.GetSpacing())
    new_sp = np.maximum(sp, target_mm)
    if np.allclose(new_sp, sp):
        return img
    if not is_mask:
        # sigma that takes the image from its resolution to the target one (FWHM ~ voxel size)
        sigma = np.sqrt(np.maximum(new_sp ** 2 - sp ** 2, 0.0)) / 2.3548
        img = smooth(img, [float(s) for s in sigma])  # axes kept at their spacing (sigma 0) are not filtered
    size = [max(2, int(round(n * s / ns))) for n, s, ns in zip(img.GetSize(), sp, new_sp)]
    # keep the physical extent: first voxel centre moves by half the change in voxel size
    direction = np.array(img.GetDirection()).reshape(3, 3)
    origin = np.array(img.GetOrigin()) + direction @ ((new_sp - sp) / 2.0)
    interp = sitk.sitkNearestNeighbor if is_mask else sitk.sitkLinear
    return sitk.Resample(img, size, sitk.Transform(), interp, origin.tolist(), new_sp.tolist(),
                         img.GetDirection(), 0.0, img.GetPixelID())


class Prepared:
    """An image as every registration in this process sees it (checked, rescaled to [0, 1]), with what is made
    from it alone: pyramid levels, head mask, the edge stage's fixed-side gradients (``get``).

    Why: a register job registers the same images several times at once (the rebaseline in its template fit
    and in the pair, the follow-up FLAIR in the pair and against its T1, T2 and DWI); each did the same
    smoothing and masking again (~3 CPU-s of a lone follow-up's 30).  Same voxels, same results."""

    def __init__(self, image: sitk.Image):
        self.image = image
        self._lock = threading.Lock()
        self._made: dict = {}

    def get(self, key, make: Callable):
        """``make()``, computed once per ``key`` (two threads asking at once may both compute it)."""
        with self._lock:
            if key in self._made:
                return self._made[key]
        value = make()
        with self._lock:
            return self._made.setdefault(key, value)

    def level(self, spacing: float) -> sitk.Image:
        return self.get(("level", spacing), lambda: _at_spacing(self.image, spacing))

    def head(self) -> sitk.Image:
        return self.get(("head",), lambda: head_foreground(self.image))


def prepared(image: sitk.Image, *, name: str) -> Prepared:
    """``image`` checked (``check_image``, errors name ``name``) and rescaled for registration, remembered by the
    checked copy's content: the same voxels read as int16 by one caller and as float32 by another are one image."""
    return _rescaled(check_image(image, name))


@by_image_content(maxsize=6)
def _rescaled(image: sitk.Image) -> Prepared:
    return Prepared(_robust_rescale(image))


def _initial_rigid(fixed, moving, fixed_mask, moving_mask, init: str) -> sitk.Euler3DTransform:
    tx = sitk.Euler3DTransform()
    if init == "identity":
        # rotate about the fixed image's centre so rotation and translation decouple
        size = np.array(fixed.GetSize())
        tx.SetCenter(fixed.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2.0).tolist()))
        return tx
    f, m = fixed, moving
    if init == "moments":
        if fixed_mask is not None:
            f = sitk.Mask(fixed, fixed_mask)
        if moving_mask is not None:
            m = sitk.Mask(moving, moving_mask)
        mode = sitk.CenteredTransformInitializerFilter.MOMENTS
    else:
        mode = sitk.CenteredTransformInitializerFilter.GEOMETRY
    return sitk.Euler3DTransform(sitk.CenteredTransformInitializer(f, m, tx, mode))


def _run_stage(fixed, moving, fixed_mask, moving_mask, transform, *, bins, samples, seed,
               iterations, max_step_mm, min_step) -> tuple[float, int, str]:
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
    n_vox = int(np.prod(fixed.GetSize())) if fixed_mask is None else int(
        np.count_nonzero(sitk.GetArrayViewFromImage(fixed_mask)))
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(float(min(1.0, samples / max(n_vox, 1))), seed)
    reg.SetInterpolator(sitk.sitkLinear)
    if fixed_mask is not None:
        reg.SetMetricFixedMask(fixed_mask)
    if moving_mask is not None:
        reg.SetMetricMovingMask(moving_mask)
    # the learning rate is estimated (once) so that the first step moves no voxel by more than
    # max_step_mm; the step then halves on every change of direction down to min_step
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=min_step,
                                                 numberOfIterations=iterations, relaxationFactor=0.5,
                                                 gradientMagnitudeTolerance=1e-8,
                                                 estimateLearningRate=reg.Once,
                                                 maximumStepSizeInPhysicalUnits=max_step_mm)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetInitialTransform(transform, inPlace=True)
    reg.Execute(fixed, moving)
    return reg.GetMetricValue(), reg.GetOptimizerIteration(), reg.GetOptimizerStopConditionDescription()


# ----------------------------------------------------------------------------- public API
def register_affine(fixed: sitk.Image, moving: sitk.Image, fixed_mask: sitk.Image | None = None,
                    moving_mask: sitk.Image | None = None, *, init: str = "auto",
                    initial_transform: sitk.Transform | None = None, rigid_only: bool = False,
                    bins: int = 48, samples: int = 60000, iterations: int = 150, seed: int = 20161,
                    levels_rigid: tuple[float, ...] = (4.0, 2.0), levels_affine: tuple[float, ...] = (2.0, 1.0),
                    edges: bool = True, fixed_name: str = "fixed image", moving_name: str = "moving image",
                    after_level: Callable[[float, sitk.AffineTransform], None] | None = None) -> RegistrationResult:
    """Register MOVING to FIXED with a 12-dof affine; the transform maps FIXED points to MOVING points.

    ``init``: "auto" (default: runs the coarse rigid stage from both "identity" and "moments" and
    keeps the better metric), "moments" (centres of mass, for visits positioned differently),
    "geometry" (image centres) or "identity" (trust scanner coordinates, e.g. one session's series;
    a centre of mass is pulled by neck coverage, so this is often better within a visit).  ``initial_transform``
    (fixed->moving) overrides ``init``.  Masks restrict the metric (UInt8 on the image's grid).
    ``edges`` (default): after the rigid MI stages, refine on edge alignment
    (:func:`pmlseg.registration.edges.refine_on_edges`, 6 dof if ``rigid_only`` else 12) instead of
    the MI affine stages; with ``init="identity"`` the scanner-header alignment competes as a start,
    and with ``rigid_only`` too (one session: `pmlseg register --init identity --rigid` and the
    detector's same-session registrations) no MI stage runs: the edge levels start from the header
    (``SAME_SESSION_MI``, ``SAME_SESSION_LEVELS`` in pmlseg.registration.edges).
    Use ``edges=False`` between different brains (template -> subject), whose edges do not match.
    ``fixed_name``/``moving_name`` appear in error messages (pass file names).
    ``after_level(spacing, transform)``: called after each MI affine level with a copy of the transform so far
    (a caller that also needs a coarser fit, e.g. the register job's metric mask, gets it on the way).
    """
    t0 = time.perf_counter()
    if init not in INITS:
        raise PmlsegError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    fp, mp = prepared(fixed, name=fixed_name), prepared(moving, name=moving_name)
    f, m = fp.image, mp.image
    fm = check_mask(fixed_mask, fixed, "fixed mask" + (f" for {fixed_name}" if fixed_name else ""), fixed_name)
    mm = check_mask(moving_mask, moving, "moving mask" + (f" for {moving_name}" if moving_name else ""), moving_name)

    if initial_transform is not None:
        size = np.array(f.GetSize())
        start = as_affine(initial_transform, f.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2.0).tolist()))
        rigid = None
        init_used = "given"
    else:
        rigid = None if init == "auto" else _initial_rigid(f, m, fm, mm, init)
        init_used = init
        if init == "auto":
            rigid = sitk.Euler3DTransform()  # placeholder, chosen below

    # one session's series (scanner coordinates shared, rigid): a lighter recipe, see SAME_SESSION_* in edges.py
    same_session = init == "identity" and initial_transform is None and rigid_only and edges
    if same_session:
        levels_rigid = SAME_SESSION_MI
    pyramid: dict[float, tuple] = {}

    def level(s):
        if s not in pyramid:
            pyramid[s] = (fp.level(s), mp.level(s),
                          None if fm is None else _at_spacing(fm, s, True),
                          None if mm is None else _at_spacing(mm, s, True))
        return pyramid[s]

    stages = []
    try:
        if rigid is not None and init == "auto":
            best = None
            for cand in ("identity", "moments"):
                tx = _initial_rigid(f, m, fm, mm, cand)
                val, it, _ = _run_stage(*level(levels_rigid[0]), tx, bins=bins, samples=samples, seed=seed,
                                        iterations=iterations, max_step_mm=levels_rigid[0], min_step=0.05)
                log.debug("auto init %s: MI %.4f after %d iterations", cand, val, it)
                if best is None or val < best[0]:
                    best = (val, cand, tx)
            _, init_used, rigid = best
            stages.append({"stage": "rigid", "spacing_mm": levels_rigid[0], "metric": best[0], "init": init_used})
            rest = levels_rigid[1:]
        else:
            rest = levels_rigid
        if rigid is not None:
            for s in rest:
                val, it, stop = _run_stage(*level(s), rigid, bins=bins, samples=samples, seed=seed,
                                           iterations=iterations, max_step_mm=s, min_step=0.05)
                stages.append({"stage": "rigid", "spacing_mm": s, "metric": val, "iterations": it})
                log.debug("rigid %.1f mm: MI %.4f after %d iterations (%s)", s, val, it, stop)
            start = sitk.AffineTransform(3)
            start.SetCenter(rigid.GetCenter())
            start.SetMatrix(rigid.GetMatrix())
            start.SetTranslation(rigid.GetTranslation())
        if edges:
            # within a session the scanner-header alignment competes as a start (it is the start when no MI runs)
            header = init == "identity" and initial_transform is None and bool(levels_rigid)
            starts = [start] + ([sitk.AffineTransform(3)] if header else [])
            names = ["given" if initial_transform is not None else
                     "scanner header" if init == "identity" and not levels_rigid else "mutual information"]
            names += ["scanner header"] if header else []
            mask = fm if fm is not None else fp.head()
            ref = refine_on_edges(f, m, mask, starts, dof=6 if rigid_only else 12, fixed_side=fp,
                                  levels=SAME_SESSION_LEVELS if same_session else LEVELS,
                                  max_evaluations=SAME_SESSION_EVALUATIONS if same_session else EVALUATIONS)
            start = ref.transform
            stages.append({"stage": "edges", "dof": 6 if rigid_only else 12, "metric": -ref.agreement,
                           "start": names[ref.start],
                           "evaluations": ref.evaluations})
        elif rigid_only:
            # keep 6 dof: refine the rigid at native resolution and return it as an affine
            val, it, stop = _run_stage(*level(levels_affine[-1]), rigid, bins=bins, samples=samples, seed=seed,
                                       iterations=iterations, max_step_mm=1.0, min_step=0.01)
            stages.append({"stage": "rigid", "spacing_mm": levels_affine[-1], "metric": val, "iterations": it})
            start.SetMatrix(rigid.GetMatrix())
            start.SetTranslation(rigid.GetTranslation())
        else:
            for s in levels_affine:
                val, it, stop = _run_stage(*level(s), start, bins=bins, samples=samples, seed=seed,
                                           iterations=iterations, max_step_mm=max(s, 1.0) / 2, min_step=0.001)
                stages.append({"stage": "affine", "spacing_mm": s, "metric": val, "iterations": it})
                log.debug("affine %.1f mm: MI %.4f after %d iterations (%s)", s, val, it, stop)
                if after_level is not None:
                    after_level(s, sitk.AffineTransform(start))
    except RuntimeError as exc:
        msg = str(exc).strip().splitlines()
        detail = next((ln for ln in msg if "sample" in ln.lower() or "overlap" in ln.lower()), msg[-1] if msg else "")
        raise PmlsegError(f"{moving_name} -> {fixed_name}: registration failed "
                          f"(images do not overlap enough?): {detail.strip()[:200]}") from None
    seconds = time.perf_counter() - t0
    metric = stages[-1]["metric"] if stages else float("nan")
    log.info("registered %s -> %s in %.1f s (MI %.4f, init %s)", moving_name, fixed_name, seconds, metric, init_used)
    return RegistrationResult(transform=start, metric=metric, seconds=seconds, init=init_used, stages=stages)


def resample_to(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform, *, is_label: bool = False,
                default: float = 0.0) -> sitk.Image:
    """Put MOVING on FIXED's grid through ``transform`` (fixed->moving), keeping MOVING's pixel type."""
    interp = sitk.sitkNearestNeighbor if is_label else sitk.sitkLinear
    return sitk.Resample(moving, fixed, transform, interp, default, moving.GetPixelID())
