"""Brain mask on a numpy volume: a fallback when pmlseg.registration.preprocess is not available.

Otsu threshold of a smoothed image, the largest component after an opening, holes filled.
Cheap and dependency-free; the registration package's mask is preferred when present.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def brain_mask_array(arr: np.ndarray, spacing) -> np.ndarray:
    from skimage.filters import threshold_otsu

    sm = ndi.gaussian_filter(arr.astype(np.float32), sigma=[1.0 / s for s in spacing])
    vals = sm[sm > np.percentile(sm, 2)]
    t = threshold_otsu(vals[:: max(1, vals.size // 200000)])
    m = sm > 0.5 * t
    r = max(1, int(round(3.0 / min(spacing))))
    st = ndi.generate_binary_structure(3, 1)
    m = ndi.binary_opening(m, structure=st, iterations=r)
    lab, n = ndi.label(m)
    if n == 0:
        return m
    m = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    m = np.stack([ndi.binary_fill_holes(m[..., k]) for k in range(m.shape[2])], axis=2)
    return ndi.binary_fill_holes(m)
