"""Cheaper ways to smooth and crop that give the same voxels: shared by the pyramid, the edge stage and QC,
and (``bounding_box``) by detection and the report viewer.

Why: Gaussian smoothing of whole heads was the largest cost after the optimisers in a `pmlseg
register` process (docs/benchmarks.md "Per follow-up profile").  Two savings change no result:
an axis whose sigma is far below its voxel size is left alone instead of being filtered (the
recursive Gaussian is then the identity; thick slices are never smoothed across), and an image only
scored inside a mask is cut to the mask's box plus the Gaussian's reach first.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk


def smooth(image: sitk.Image, sigmas_mm) -> sitk.Image:
    """Recursive Gaussian of ``sigmas_mm`` (x, y, z), as SmoothingRecursiveGaussian, skipping the axes
    whose sigma is under 5 % of their voxel size (identical output, one pass less per such axis)."""
    out = image
    for axis, (sigma, spacing) in enumerate(zip(sigmas_mm, image.GetSpacing())):
        if sigma >= 0.05 * spacing:
            out = sitk.RecursiveGaussian(out, float(sigma), False, sitk.RecursiveGaussianImageFilter.ZeroOrder, axis)
    return out


def mask_shape(mask: sitk.Image) -> sitk.LabelShapeStatisticsImageFilter:
    """Shape statistics of ``mask`` > 0 (label 1): its bounding box and centroid. The perimeter, 85 % of
    the filter's time and used by no caller, is not computed."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.SetComputePerimeter(False)
    stats.Execute(sitk.Cast(mask > 0, sitk.sitkUInt8))
    return stats


def crop_to_mask(image: sitk.Image, mask: sitk.Image, margin_mm) -> sitk.Image:
    """``image`` cut to the bounding box of ``mask`` (on its grid) grown by ``margin_mm`` per axis (x, y, z)."""
    box = mask_shape(mask).GetBoundingBox(1)
    grow = [int(np.ceil(g / s)) + (g > 0) for g, s in zip(margin_mm, image.GetSpacing())]
    lo = [max(0, b - g) for b, g in zip(box[:3], grow)]
    hi = [min(n, b + k + g) for b, k, g, n in zip(box[:3], box[3:], grow, image.GetSize())]
    return sitk.RegionOfInterest(image, [h - low for h, low in zip(hi, lo)], lo)


def bounding_box(mask: np.ndarray, margin) -> tuple[slice, ...] | None:
    """Array slices of ``mask``'s bounding box grown by ``margin`` voxels per array axis and clipped to the
    array (None if ``mask`` is empty); from per-axis projections, without listing every voxel."""
    if not mask.any():
        return None
    box = []
    for ax, m in enumerate(margin):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != ax)))
        box.append(slice(max(0, int(hit[0]) - int(m)), min(mask.shape[ax], int(hit[-1]) + 1 + int(m))))
    return tuple(box)
