"""Classical baseline: intensity-normalised FLAIR subtraction + thresholds + minimum size.

It runs on exactly the model's input (same registration, working grid and normalisation), so the
difference between the two is the network alone. The thresholds are fixed a priori (not tuned on
the real evaluation cases): a new lesion is clearly brighter at follow-up than at baseline and
bright in absolute terms (FLAIR hyperintense relative to the median brain), away from the brain
edge where residual misregistration of the cortex/CSF border produces false differences.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

PARAMS = {
    "smooth_mm": 0.7,        # Gaussian sigma in plane before subtraction (noise)
    "min_difference": 0.30,  # follow-up - baseline (in units of the median brain intensity)
    "min_followup": 1.30,    # follow-up FLAIR hyperintense
    "edge_mm": 3.0,          # ignore this rim inside the brain mask
}


def detect(bl: np.ndarray, fu: np.ndarray, mask: np.ndarray, spacing, params: dict | None = None) -> np.ndarray:
    """Boolean candidate mask on the working grid (before the minimum-size rule)."""
    p = dict(PARAMS, **(params or {}))
    sigma = [p["smooth_mm"] / s for s in spacing[:2]] + [0.0]
    b = ndi.gaussian_filter(bl, sigma)
    f = ndi.gaussian_filter(fu, sigma)
    inner = ndi.binary_erosion(mask, iterations=max(1, int(round(p["edge_mm"] / min(spacing[:2])))))
    return inner & (f - b > p["min_difference"]) & (f > p["min_followup"])


def classical_probability(bl: np.ndarray, fu: np.ndarray, mask: np.ndarray, spacing=(1.0, 1.0, 3.0)) -> np.ndarray:
    """The baseline's decision as a 0/1 float map (so it goes through the model's post-processing)."""
    return detect(bl, fu, mask, spacing).astype(np.float32)
