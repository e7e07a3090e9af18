"""Put the follow-up FLAIR on the rebaseline's intensity scale before comparing them.

Why: the two visits often come from different scanners, and FLAIR grey/white/CSF contrast changes
with the protocol (on ljubljana-longitudinal patient03 the cortex is ~1.2 x median brain at
follow-up and ~0.9 at the rebaseline). A global scale factor leaves such changes in the difference
image, where they look like large new "lesions" along the cortex. Here the follow-up is mapped to
the rebaseline scale by the robust regression of follow-up on rebaseline intensity: for each
rebaseline intensity (64 quantile bins inside the brain) the median follow-up intensity g(b) is
what an unchanged voxel looks like, so ``fu - g(bl)`` is the change; a smooth (25 mm) part of that
residual is a relative bias field and is removed too. A new lesion is a small fraction of the brain
and an outlier in the regression, so it survives: harmonised = bl + (fu - g(bl)) - smooth residual.
Both g and the bias field are estimated twice, the second time without the first pass's outliers, so a
large new lesion (a 9 ml PML lesion) does not shift what counts as normal tissue around it.
Training pairs (pmlseg.detect.pairs) and inference (pmlseg.detect.predictor) use this same function.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

BINS = 64
BIAS_SMOOTH_MM = 25.0
RESIDUAL_CLIP = 0.3
#: |residual - bias| above max(this, 3 robust SD) (x median brain) is change, left out of the second estimate
OUTLIER = 0.1


def expected_followup(bl: np.ndarray, fu: np.ndarray, sel: np.ndarray, bins: int = BINS) -> np.ndarray:
    """g(bl): median follow-up intensity of the voxels with the same rebaseline intensity (monotone not assumed),
    fitted on the voxels ``sel`` and evaluated at every value of ``bl`` (pass the voxels that are needed only)."""
    b, f = bl[sel], fu[sel]
    if b.size < 10 * bins:
        return np.asarray(bl, np.float32).copy()
    edges = np.quantile(b, np.linspace(0.0, 1.0, bins + 1))
    idx = np.clip(np.searchsorted(edges, b, side="right") - 1, 0, bins - 1) + 1
    present = np.unique(idx)
    med_f = np.asarray(ndi.median(f, labels=idx, index=present))
    med_b = np.asarray(ndi.median(b, labels=idx, index=present))
    order = np.argsort(med_b)
    xb, yf = med_b[order], med_f[order]
    g = np.interp(bl, xb, yf)
    # beyond the outer bin medians continue with unit slope, not flat: clamping would call every voxel
    # brighter than the top bin's median (existing lesions) "brighter than expected", so a rebaseline
    # compared with itself would show change in its brightest tissue
    g = np.where(bl > xb[-1], yf[-1] + (bl - xb[-1]), g)
    g = np.where(bl < xb[0], yf[0] + (bl - xb[0]), g)
    return g.astype(np.float32)


def harmonise_followup(bl: np.ndarray, fu: np.ndarray, mask: np.ndarray, spacing) -> np.ndarray:
    """The follow-up on the rebaseline's intensity scale (same grid); 0 outside ``mask``."""
    sel = ndi.binary_erosion(mask) & (bl > 0.2) & (fu > 0.2)
    if sel.sum() < 1000:
        return (fu * mask).astype(np.float32)
    # g and the residual are needed inside the brain only (the bias average weighs sel, the output is masked)
    residual = np.zeros(bl.shape, np.float32)
    residual[mask] = fu[mask] - expected_followup(bl[mask], fu[mask], sel[mask])
    low = _smooth_bias(residual, sel, spacing)
    # second pass without the outliers of the first: a large new lesion is change, not bias, and left in
    # the estimate it would lift the "bias" around it and hide fainter lesions nearby
    dev = (residual - low)[sel]
    limit = max(OUTLIER, 3.0 * 1.4826 * float(np.median(np.abs(dev - np.median(dev)))))
    inlier = sel & (np.abs(residual - low) < limit)
    if inlier.sum() >= 1000:
        residual[mask] = fu[mask] - expected_followup(bl[mask], fu[mask], inlier[mask])
        low = _smooth_bias(residual, inlier, spacing)
    return ((bl + residual - low) * mask).astype(np.float32)


def _smooth_bias(residual: np.ndarray, sel: np.ndarray, spacing) -> np.ndarray:
    """Normalised-convolution (Gaussian, BIAS_SMOOTH_MM) average of the clipped residual over the voxels ``sel``.

    ITK's recursive Gaussian: its cost does not grow with the 25 mm kernel (scipy's FIR filter took ~10 s
    of a 1 mm 3D case, this ~1 s); the two agree to ~1e-3 of the residual."""
    w = sel.astype(np.float32)
    low = _gaussian_mm(np.clip(residual, -RESIDUAL_CLIP, RESIDUAL_CLIP) * w, spacing)
    return low / np.maximum(_gaussian_mm(w, spacing), 1e-3)


def _gaussian_mm(arr: np.ndarray, spacing) -> np.ndarray:
    """Gaussian smoothing of an (x, y, z) array with sigma BIAS_SMOOTH_MM in physical units."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0), np.float32))
    img.SetSpacing([float(s) for s in spacing])
    out = sitk.SmoothingRecursiveGaussian(img, BIAS_SMOOTH_MM)
    return sitk.GetArrayFromImage(out).transpose(2, 1, 0)
