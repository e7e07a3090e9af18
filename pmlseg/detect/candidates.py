"""Lesions at the operating point, "possible" lesions at the review point, and a confidence for each.

Why: a second reader needs to find most new lesions, and one fixed threshold either misses faint ones or
floods stable scans with alarms. So the network's probability map is cut twice: at the operating
``threshold`` (reported as new/enlarging lesions) and at the lower ``review_threshold`` (components that
do not touch an operating-point lesion are listed as "possible new lesions -- please check"). Every
component must pass the plausibility check (postprocess.plausible). Each gets a ``confidence`` (0-1): its
peak probability mapped through the calibration curve fitted on the validation pairs (docs/detection.md).
Both thresholds are chosen by the written rule in docs/detection.md, on validation pairs only.

With a lesion classifier in the model folder (the second stage, pmlseg.detect.lesion_classifier), the
components are its candidates (pmlseg.detect.lesion_features) and both thresholds cut its score instead of
the peak probability; everything else is the same.
"""

from __future__ import annotations

import numpy as np

from pmlseg.detect.postprocess import components, label_max, plausible, renumber_by_size


def scored_candidates(prob: np.ndarray, bl: np.ndarray, fu: np.ndarray, mask: np.ndarray, spacing, config: dict,
                      classifier) -> tuple[np.ndarray, np.ndarray]:
    """(candidate labels 1..N, the classifier's score of each): the second stage's input to lesions_at.

    Computed on the brain's bounding box grown by the in-plane smoothing's reach (4 voxels) and one slice:
    every input is 0 outside the brain, so the candidates and their features are the whole volume's."""
    from pmlseg.detect.lesion_features import candidate_labels, lesion_features
    from pmlseg.registration.grid import bounding_box

    c = classifier.candidates
    labels = np.zeros(mask.shape, np.int32)
    box = bounding_box(mask, (4, 4, 1))
    if box is None:
        return labels, np.zeros(0)
    p, b, f, m = prob[box], bl[box], fu[box], mask[box]
    labels[box] = candidate_labels(p, b, f, m, spacing, config, float(c["prob_floor"]), float(c["diff_sd"]))
    return labels, classifier.score(lesion_features(labels[box], p, b, f, m, spacing))


def lesions_at(prob: np.ndarray, bl: np.ndarray, fu: np.ndarray, spacing, config: dict, threshold: float,
               scored: tuple | None = None):
    """(labels 1..N by size, peak probability of each) of the plausible components of prob > threshold;
    with ``scored`` (scored_candidates), the candidates scoring above threshold and their scores."""
    if scored is not None:
        cand, score = scored
        labels = renumber_by_size(cand, score > threshold)
        n = int(labels.max())
        old = label_max(cand, labels, n).astype(int)
        return labels, score[old - 1] if n else np.zeros(0)
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


def operating_and_possible(prob: np.ndarray, bl: np.ndarray, fu: np.ndarray, spacing, config: dict,
                           scored: tuple | None = None):
    """((lesions, confidence), (possible lesions, confidence)): the operating point's lesions, and the
    review point's components that touch none of them, each renumbered 1..N by size."""
    op = float(config["threshold"])
    review = float(config.get("review_threshold") or op)
    lab, peaks = lesions_at(prob, bl, fu, spacing, config, op, scored)
    if review >= op:
        return (lab, confidence(peaks, config)), (np.zeros_like(lab), np.zeros(0))
    low, low_peaks = lesions_at(prob, bl, fu, spacing, config, review, scored)
    n = int(low.max())
    touching = np.zeros(n + 1, bool)
    touching[np.unique(low[lab > 0])] = True
    keep = ~touching[1:]
    pos = renumber_by_size(low, keep)
    m = int(pos.max())
    old = label_max(low, pos, m).astype(int)
    return (lab, confidence(peaks, config)), (pos, confidence(low_peaks[old - 1], config) if m else np.zeros(0))
