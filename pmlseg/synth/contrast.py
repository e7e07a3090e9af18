"""MR contrasts from tissue fractions: a linear partial-volume mix of per-tissue intensities.

Relative intensities follow clinical appearance at 1.5-3 T:
FLAIR CSF dark, WM < GM, lesions bright; T1 (MPRAGE-like) WM > GM > CSF, lesions dark (per MS
lesion from faintly hypointense to "black hole"), fat bright;
T2 CSF bright, lesions bright; DWI b0 ~ T2-weighted; DWI b1000 (trace) CSF dark, chronic MS lesions
near-isointense, the active edge of a PML lesion bright (restricted diffusion).
"""

from __future__ import annotations

import numpy as np

from pmlseg.synth.anatomy import Tissues
from pmlseg.synth.lesions import LesionMaps

MODALITIES = ("FLAIR", "T1w", "T2w", "DWI_b0", "DWI_b1000")

#: intensity per tissue class, on a scale where the brightest tissue is ~1
INTENSITY: dict[str, dict[str, float]] = {
    #            gm     wm    csf   bone   fat    ms    pml   pml_edge
    "FLAIR":     dict(gm=0.62, wm=0.48, csf=0.07, bone=0.03, fat=0.55, ms=1.05, pml=1.15, pml_edge=1.15),
    "T1w":       dict(gm=0.52, wm=0.80, csf=0.12, bone=0.03, fat=1.00, ms=0.40, pml=0.30, pml_edge=0.30),
    "T2w":       dict(gm=0.50, wm=0.36, csf=1.00, bone=0.03, fat=0.70, ms=0.80, pml=0.85, pml_edge=0.85),
    "DWI_b0":    dict(gm=0.58, wm=0.48, csf=1.00, bone=0.02, fat=0.08, ms=0.80, pml=0.85, pml_edge=0.85),
    "DWI_b1000": dict(gm=0.42, wm=0.38, csf=0.07, bone=0.01, fat=0.02, ms=0.44, pml=0.50, pml_edge=1.10),
}

#: signal-to-noise of white matter for each modality (noise sigma = wm / snr)
SNR = {"FLAIR": 30.0, "T1w": 40.0, "T2w": 35.0, "DWI_b0": 25.0, "DWI_b1000": 14.0}


def render(tissues: Tissues, lesion_maps: LesionMaps | None, modality: str,
           rng: np.random.Generator | None = None) -> np.ndarray:
    """Noise-free image of ``modality`` on the template grid (float32, [x, y, z]).

    ``rng`` adds a mild per-visit variation of the tissue intensities (±3 %, as between scanners);
    pass None for the mean contrast. Noise, bias and blurring belong to pmlseg.synth.acquisition.
    """
    if modality not in INTENSITY:
        raise ValueError(f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}")
    p = dict(INTENSITY[modality])
    if rng is not None:
        for k in p:
            p[k] *= float(rng.uniform(0.97, 1.03))
    weights = np.array([p["gm"], p["wm"], p["csf"], p["bone"], p["fat"]], dtype=np.float32)
    img = tissues.stack @ weights  # one BLAS pass instead of five full-volume multiply-adds
    if lesion_maps is not None and lesion_maps.bbox is not None:
        box = lesion_maps.bbox
        ms = (lesion_maps.ms_t1 if modality == "T1w" else lesion_maps.ms)[box]
        pml, edge = lesion_maps.pml[box], lesion_maps.pml_edge[box]
        sub = img[box]
        sub *= 1.0 - (ms + pml)
        sub += p["ms"] * ms + p["pml"] * pml + (p["pml_edge"] - p["pml"]) * np.minimum(edge, pml)
    return img
