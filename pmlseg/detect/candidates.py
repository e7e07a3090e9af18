"""Lesions at the operating point, "possible" lesions at the review point, and a confidence for each.

Why: a second reader needs to find most new lesions, and one fixed threshold either misses faint ones or
floods stable scans with alarms. So the network's probability map is cut twice: at the operating
``threshold`` (reported as new/enlarging lesions) and at the lower ``review_threshold`` (components that
do not touch an operating-point lesion are listed as "possible new lesions -- please check"). Every
component must pass the plausibility check (postprocess.plausible). Each gets a ``confidence`` (0-1): its
peak probability mapped through the calibration curve fitted on the validation pairs (docs/detection.md).
Both thresholds are chosen by the written rule in docs/detection.md, on validation pairs only.
"""

from __future__ import annotations

import numpy as np

from pmlseg.detect.postprocess import components, label_max, plausible, renumber_by_size


def lesions_at(prob: np.ndarray, bl: np.ndarray, fu: np.ndarray, spacing, config: dict, threshold: float):
    """(labels 1..N by size, peak probability of each) of the plausible components of prob > threshold."""
    labels = components(prob > threshold, spacing, float(config["min_size_mm3"]))
    labels = plausible(labels, bl, fu, spacing, float(config["min_followup_peak"]),
                       float(config["min_mean_difference"]))
    n = int(labels.max())
    peaks = label_max(prob, labels, n)
    return labels, peaks


def confidence(peaks: np.ndarray, config: dict) -> np.ndarray:
    """Calibrated confidence of each lesion from its peak probability (monotone, piecewise linear)."""
    cal = config.get("calibration")
    if not cal:
        return np.asarray(peaks, float)
    return np.interp(peaks, cal["peak"], cal["confidence"])


def operating_and_possible(prob: np.ndarray, bl: np.ndarray, fu: np.ndarray, spacing, config: dict):
    """((lesions, confidence), (possible lesions, confidence)): the operating point's lesions, and the
    review point's components that touch none of them, each renumbered 1..N by size."""
    op = float(config["threshold"])
    review = float(config.get("review_threshold") or op)
    lab, peaks = lesions_at(prob, bl, fu, spacing, config, op)
    if review >= op:
        return (lab, confidence(peaks, config)), (np.zeros_like(lab), np.zeros(0))
    low, low_peaks = lesions_at(prob, bl, fu, spacing, config, review)
    n = int(low.max())
    touching = np.zeros(n + 1, bool)
    touching[np.unique(low[lab > 0])] = True
    keep = ~touching[1:]
    pos = renumber_by_size(low, keep)
    m = int(pos.max())
    old = label_max(low, pos, m).astype(int)
    return (lab, confidence(peaks, config)), (pos, confidence(low_peaks[old - 1], config) if m else np.zeros(0))
