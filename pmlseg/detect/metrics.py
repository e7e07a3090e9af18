"""Lesion-wise scoring of a new-lesion map against a new/enlarging ground-truth mask.

One definition for every place that grades detection (benchmarks/detect_eval.py, the held-back
rehearsal, the demo's self-check): GT lesions are the 26-connected components of the mask with at least
10 mm^3; a GT lesion is found when any predicted voxel touches it; a predicted component is a true
positive when it touches any GT voxel (also one below 10 mm^3), else a false positive.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

ST26 = np.ones((3, 3, 3), bool)
MIN_GT_MM3 = 10.0


def lesion_metrics(pred: np.ndarray, gt_new: np.ndarray, spacing, size_bins=()) -> dict:
    """Lesion-wise and voxel metrics of a predicted label/binary map against a new/enlarging GT mask.

    ``tp_gt`` (GT lesions found) and ``tp_pred`` (predicted components touching GT) are returned
    beside the ratios so that figures over several cases can be pooled from counts.  With ``size_bins``
    (mm^3 ranges ``(lo, hi)``), ``by_size`` holds (GT lesions found, GT lesions) per GT size range.
    """
    gt_new = np.asarray(gt_new) > 0
    vox = float(np.prod(spacing))
    gl, gn = ndi.label(gt_new, structure=ST26)
    sizes = np.bincount(gl.ravel(), minlength=gn + 1)[1:] * vox
    gt_ids = [i + 1 for i in range(gn) if sizes[i] >= MIN_GT_MM3]
    p = pred > 0
    pl, pn = ndi.label(p, structure=ST26)
    touched = set(np.unique(gl[p]).tolist())
    tp_gt = sum(1 for i in gt_ids if i in touched)
    hit = set(np.unique(pl[gt_new & p]).tolist()) - {0}
    sens = tp_gt / len(gt_ids) if gt_ids else float("nan")
    prec = len(hit) / pn if pn else float("nan")
    f1 = 2 * sens * prec / (sens + prec) if pn and gt_ids and sens + prec > 0 else 0.0
    dice = 2 * (gt_new & p).sum() / max(1, gt_new.sum() + p.sum())
    by_size = {f"{lo}-{hi}": (sum(i in touched for i in ids), len(ids))
               for lo, hi in size_bins for ids in [[i for i in gt_ids if lo <= sizes[i - 1] < hi]]}
    # predicted volume: a single huge blob touching every GT lesion would score lesion-wise F1 = 1
    return {"gt": len(gt_ids), "pred": pn, "tp_gt": tp_gt, "tp_pred": len(hit), "sens": sens, "prec": prec,
            "by_size": by_size, "f1": f1, "fp": pn - len(hit), "dice": float(dice), "pred_ml": float(p.sum() * vox / 1000),
            "gt_ml": float(gt_new.sum() * vox / 1000)}
