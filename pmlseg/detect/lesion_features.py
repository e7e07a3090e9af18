"""Candidate lesions and what a second, lesion-level stage can tell about each (the two-stage lever).

Why: the network decides voxel by voxel from three slices; a lesion-level stage sees each candidate whole
(size, depth below the cortex, contrast and change against the surrounding tissue, how far it reaches
along z, how sure the network was), which is how lesion-level classifiers cut false positives in Elliott
2013 and Salem 2018. Candidates are the network's components at
a low probability and the difference image's blobs a few noise SDs above its median (so faint changes the
network never learnt can still be proposed); both are cut by the plausibility check of postprocess.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from pmlseg.detect.postprocess import STRUCT26, components, label_max, label_mean, plausible, renumber_by_size

#: how candidates are made (a classifier's JSON may override them): network probability floor, difference
#: blobs' height in noise SDs, and where test-time flips are averaged (Predictor.probability's exact_above)
CANDIDATES = {"prob_floor": 0.2, "diff_sd": 2.0, "flips_above": 0.9}

# no feature in units of the pair's noise SD (session 15): on a near-identical re-scan that SD is tiny, and a
# faint residual of 0.1 x median brain read as 5 SDs made the only false positive on the stable pairs
FEATURES = ("log_volume", "n_slices", "prob_max", "prob_mean", "diff_mean", "diff_max", "fu_peak", "fu_mean",
            "bl_mean", "depth_mm", "shell_contrast", "shell_diff", "bl_hyper_frac", "fill", "bl_gradient",
            "from_network", "shell_sd")


def smoothed(bl: np.ndarray, fu: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Both visits lightly smoothed in plane (the plausibility check's filter)."""
    sigma = [0.7 / s for s in spacing[:2]] + [0.0]
    return ndi.gaussian_filter(bl, sigma), ndi.gaussian_filter(fu, sigma)


def noise_sd(d: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Median and robust SD (1.4826 MAD) of the difference image inside the brain eroded by 3 voxels."""
    inner = ndi.binary_erosion(mask, iterations=3)
    v = d[inner if inner.sum() > 1000 else mask]
    med = float(np.median(v))
    return med, float(1.4826 * np.median(np.abs(v - med))) or 1e-3


def candidate_labels(prob: np.ndarray, bl: np.ndarray, fu: np.ndarray, mask: np.ndarray, spacing,
                     config: dict, prob_floor: float = CANDIDATES["prob_floor"],
                     diff_sd: float = CANDIDATES["diff_sd"], max_diff_mm3: float = 1500.0) -> np.ndarray:
    """Candidates labelled 1..N by size: the plausible 26-components (>= min_size_mm3) of network prob >
    prob_floor, and apart from them (not touching one) those of the smoothed difference > median + diff_sd x
    noise SD where the follow-up is bright (> min_followup_peak). A difference blob above max_diff_mm3 is
    dropped: on a noisy pair of two scanners the cortical ribbon's change joins into blobs of tens of
    millilitres, and a new lesion that large is the network's to find."""
    min_mm3 = float(config["min_size_mm3"])
    peak, diff = float(config["min_followup_peak"]), float(config["min_mean_difference"])
    net = plausible(components((prob > prob_floor) & mask, spacing, min_mm3), bl, fu, spacing, peak, diff)
    b, f = smoothed(bl, fu, spacing)
    d = f - b
    med, sd = noise_sd(d, mask)
    seed = (d > med + diff_sd * sd) & (f > peak) & mask & ~ndi.binary_dilation(net > 0, STRUCT26)
    blobs = components(seed, spacing, min_mm3)
    counts = np.bincount(blobs.ravel())[1:]
    blobs = renumber_by_size(blobs, counts * float(np.prod(spacing)) <= max_diff_mm3)
    blobs = plausible(blobs, bl, fu, spacing, peak, diff)
    n = int(net.max())
    both = np.where(blobs > 0, blobs + n, net)
    return renumber_by_size(both, np.ones(int(both.max()), bool))


def lesion_features(labels: np.ndarray, prob: np.ndarray, bl: np.ndarray, fu: np.ndarray, mask: np.ndarray,
                    spacing) -> np.ndarray:
    """(N, len(FEATURES)) float array, one row per label 1..N."""
    n = int(labels.max())
    if n == 0:
        return np.zeros((0, len(FEATURES)))
    sp = np.asarray(spacing, float)
    b, f = smoothed(bl, fu, spacing)
    d = f - b
    depth = ndi.distance_transform_edt(mask, sampling=sp)
    gx, gy = np.gradient(b, axis=(0, 1))
    counts = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    col = {k: np.zeros(n) for k in ("n_slices", "shell_contrast", "shell_diff", "shell_sd", "fill")}
    ring = max(1, int(round(3.0 / sp[0])))
    for i, sl in enumerate(ndi.find_objects(labels, max_label=n)):
        if sl is None:
            continue
        grown = tuple(slice(max(0, s.start - ring), s.stop + ring) if k < 2 else s for k, s in enumerate(sl))
        own = labels[grown] == i + 1
        shell = ndi.binary_dilation(own, structure=np.ones((3, 3, 1), bool), iterations=ring) & ~own \
            & mask[grown] & (labels[grown] == 0)
        inside_f = f[grown][own]
        shell_f = f[grown][shell] if shell.any() else inside_f
        shell_d = d[grown][shell] if shell.any() else np.zeros(1)
        col["shell_contrast"][i] = inside_f.mean() - np.median(shell_f)
        col["shell_diff"][i] = shell_d.mean()
        col["shell_sd"][i] = 1.4826 * np.median(np.abs(shell_d - np.median(shell_d)))
        col["n_slices"][i] = sl[2].stop - sl[2].start
        col["fill"][i] = counts[i] / np.prod([s.stop - s.start for s in sl])
    prob_max = label_max(prob, labels, n)
    col.update(log_volume=np.log10(np.maximum(counts * float(np.prod(sp)), 1.0)), prob_max=prob_max,
               prob_mean=label_mean(prob, labels, n), diff_mean=label_mean(d, labels, n),
               diff_max=label_max(d, labels, n), fu_peak=label_max(f, labels, n), fu_mean=label_mean(f, labels, n),
               bl_mean=label_mean(b, labels, n), depth_mm=label_max(depth, labels, n),
               bl_hyper_frac=label_mean((b > 1.35).astype(np.float32), labels, n),
               bl_gradient=label_mean(np.hypot(gx, gy), labels, n), from_network=(prob_max > 0.5).astype(float))
    return np.stack([col[k] for k in FEATURES], axis=1)
