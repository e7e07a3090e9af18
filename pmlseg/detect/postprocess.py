"""From a detection mask on the working grid to numbered lesions on the rebaseline's original grid.

Lesions are 26-connected components of at least ``min_size_mm3`` (found on the working grid, where
the decision was made), carried to the rebaseline's original grid by nearest neighbour and numbered
1..N by decreasing volume, so label value i is row i of lesions.tsv.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

STRUCT26 = np.ones((3, 3, 3), bool)
#: baseline FLAIR (median brain = 1) above this, smoothed, counts as a pre-existing hyperintensity
BASELINE_HYPER = 1.35


def renumber_by_size(labels: np.ndarray, keep: np.ndarray, dtype=np.int32) -> np.ndarray:
    """Keep the labels where ``keep[i - 1]`` is true, renumbered 1..N by decreasing voxel count."""
    n = int(labels.max())
    counts = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    ids = np.nonzero(np.asarray(keep[:n]) & (counts > 0))[0] + 1
    order = ids[np.argsort(-counts[ids - 1], kind="stable")]
    remap = np.zeros(n + 1, dtype)
    remap[order] = np.arange(1, len(order) + 1)
    return remap[labels]


def label_max(values: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Maximum of ``values`` over each label 1..n (-inf for an absent label), like ``ndi.maximum`` but
    over the labelled voxels only: ndi.maximum sorts the whole volume (seconds on a 1 mm brain)."""
    sel = labels > 0
    out = np.full(n, -np.inf)
    np.maximum.at(out, labels[sel] - 1, values[sel])
    return out


def label_mean(values: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Mean of ``values`` over each label 1..n (nan for an absent label), over the labelled voxels only."""
    sel = labels > 0
    lab = labels[sel] - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.bincount(lab, weights=values[sel].astype(np.float64), minlength=n)
                / np.bincount(lab, minlength=n))


def components(binary: np.ndarray, spacing, min_size_mm3: float) -> np.ndarray:
    """26-connected components of ``binary`` with volume >= ``min_size_mm3``, labelled 1..N by size."""
    lab, n = ndi.label(binary, structure=STRUCT26)
    counts = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    return renumber_by_size(lab, counts * float(np.prod(spacing)) >= min_size_mm3)


def plausible(labels: np.ndarray, bl: np.ndarray, fu: np.ndarray, spacing, min_followup_peak: float,
              min_mean_difference: float) -> np.ndarray:
    """Keep only components that look like a new FLAIR lesion: renumbered 1..N by size.

    Why: a network (or a threshold) can fire on residual misregistration at the brain edge or CSF,
    where the follow-up is not bright at all. A new or enlarging T2/FLAIR lesion is hyperintense at
    follow-up (peak of the lightly smoothed follow-up >= ``min_followup_peak`` x median brain) and
    brighter than at the rebaseline (mean harmonised difference >= ``min_mean_difference``).
    Both limits are set a priori, well below what a visible lesion shows (docs/detection.md).
    """
    n = int(labels.max())
    if n == 0:
        return labels
    from pmlseg.registration.grid import bounding_box

    sigma = [0.7 / s for s in spacing[:2]] + [0.0]
    # on the components' box grown by the Gaussian's reach (truncate 4): the same values at their voxels
    box = bounding_box(labels > 0, [int(4.0 * sg + 0.5) + 1 for sg in sigma])
    lab = labels[box]
    f = ndi.gaussian_filter(fu[box], sigma)
    d = f - ndi.gaussian_filter(bl[box], sigma)
    peak, diff = label_max(f, lab, n), label_mean(d, lab, n)
    return renumber_by_size(labels, (peak >= min_followup_peak) & (diff >= min_mean_difference))


def to_original_grid(labels: np.ndarray, grid, baseline, min_size_mm3: float = 0.0):
    """Working-grid labels -> SimpleITK UInt16 label image on the baseline's original grid (nearest neighbour),
    renumbered 1..N by decreasing volume; lesions that end below ``min_size_mm3`` there are dropped."""
    import SimpleITK as sitk

    from pmlseg.detect.predictor import from_array, to_array

    img = from_array(labels.astype(np.uint16), grid)
    res = sitk.Resample(img, baseline, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16)
    arr = to_array(res)
    counts = np.bincount(arr.ravel(), minlength=int(arr.max()) + 1)[1:]
    keep = counts * float(np.prod(baseline.GetSpacing())) >= min_size_mm3
    return from_array(renumber_by_size(arr, keep, np.uint16), baseline, sitk.sitkUInt16)


def kind_of_lesions(labels: np.ndarray, bl: np.ndarray, mask: np.ndarray, spacing) -> dict[int, str]:
    """'enlarging' when a lesion touches a baseline FLAIR hyperintensity (>= 10 mm^3), else 'new'.

    The hyperintensities lie inside the eroded brain mask, so they are found on the mask's bounding box
    grown by the smoothing kernel's reach (the same values there as on the whole volume, at a fraction
    of the cost)."""
    from pmlseg.registration.grid import bounding_box

    sigma = [0.7 / s for s in spacing]
    hyper = np.zeros(labels.shape, bool)
    box = bounding_box(mask, [max(int(4.0 * sg + 0.5), 2) + 1 for sg in sigma])  # gaussian_filter's radius (truncate=4)
    if box is not None:
        sm = ndi.gaussian_filter(bl[box], sigma=sigma)
        hyper[box] = components((sm > BASELINE_HYPER) & ndi.binary_erosion(mask[box], iterations=2), spacing, 10.0) > 0
    out = {}
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        sl = tuple(slice(max(0, s.start - 2), s.stop + 2) for s in sl)
        grown = ndi.binary_dilation(labels[sl] == i, structure=STRUCT26)
        out[i] = "enlarging" if (grown & hyper[sl]).sum() >= 3 else "new"
    return out


def lesion_table(label_img, kinds_working: dict[int, str], working_labels: np.ndarray, grid,
                 confidence_working=None) -> list[dict]:
    """One row per label of ``label_img`` (original grid): id, volume, LPS centroid (mm), kind (and
    confidence, when ``confidence_working`` gives it per working-grid label, 1..N in order).

    ``kinds_working`` is keyed by working-grid label; the match is by overlap after resampling.
    """
    import SimpleITK as sitk

    from pmlseg.detect.predictor import to_array

    arr = to_array(label_img)
    vox = float(np.prod(label_img.GetSpacing()))
    n = int(arr.max())
    rows = []
    if n == 0:
        return rows
    # the working-grid label under each original-grid lesion's voxels (for its kind)
    back = sitk.Resample(sitk.Cast(_img(working_labels, grid), sitk.sitkUInt16), label_img, sitk.Transform(),
                         sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16)
    back = to_array(back)
    counts = np.bincount(arr.ravel(), minlength=n + 1)
    # per lesion on its bounding box, not n passes over the whole volume (centroids: sums of integer
    # indices, exact in float64, so the same numbers as ndi.center_of_mass)
    for i, sl in enumerate(ndi.find_objects(arr, max_label=n), start=1):
        if sl is None:
            src, centroid = 0, [float("nan")] * 3
        else:
            inside = arr[sl] == i
            src = np.bincount(back[sl][inside]).argmax()
            centroid = [float(np.sum(ax + s.start, dtype=np.float64)) / float(counts[i])
                        for ax, s in zip(np.nonzero(inside), sl)]
        c = label_img.TransformContinuousIndexToPhysicalPoint(centroid)
        row = {"lesion_id": i, "volume_mm3": round(float(counts[i]) * vox, 1),
               "centroid_x": round(c[0], 1), "centroid_y": round(c[1], 1), "centroid_z": round(c[2], 1),
               "new_or_enlarging": kinds_working.get(int(src), "new")}
        if confidence_working is not None:
            row["confidence"] = round(float(confidence_working[src - 1]), 3) if src else float("nan")
        rows.append(row)
    return rows


def _img(arr, grid):
    from pmlseg.detect.predictor import from_array

    return from_array(arr.astype(np.uint16), grid)
