"""Held-out synthetic evaluation pairs from pmlseg.synth (ICBM152 phantom; not a training brain).

The training pairs come from the ljubljana brains (pmlseg.detect.pairs); these come from the
synthetic cohort's anatomy, lesion model, contrast and acquisition code instead, so they test the
detector on anatomy, lesions and scanner simulation it never saw. Two raw FLAIR "visits" with their
own head pose, grid and bias are made; ground truth = new/enlarging lesion voxels (fraction >= 0.5 at
follow-up, < 0.5 at baseline) on the baseline's acquisition grid (nearest neighbour).
"""

from __future__ import annotations

import numpy as np


def make_case(seed: int, small: bool = False, pml: bool = False):
    """(baseline FLAIR, follow-up FLAIR, ground truth on the baseline grid): SimpleITK images.

    ``pml``: the follow-up also shows a new PML-like lesion (pmlseg.synth's, planned over three visits: it
    appears at the second and has grown by the third, which is this case's follow-up), part of the truth."""
    import SimpleITK as sitk

    from pmlseg.synth import acquisition, anatomy, contrast, lesions

    rng = np.random.default_rng(10_000 + seed)
    tissues = anatomy.load_template()
    history = lesions.plan_patient(tissues, rng, n_visits=3 if pml else 2, pml=pml)
    maps = [lesions.render_lesions(history, tissues, visit=v) for v in ((0, 2) if pml else (0, 1))]
    new = ((np.maximum(maps[1].ms, maps[1].pml) >= 0.5) & (np.maximum(maps[0].ms, maps[0].pml) < 0.5)).astype(np.int16)
    n = (200, 200) if small else (240, 240)
    grids = [acquisition.make_grid("axial", (*n, 36), (1.0 if small else 0.9, 1.0 if small else 0.9, 4.0),
                                   tilt_deg=tuple(rng.uniform(-6, 6, 3))),
             acquisition.make_grid("axial", (*n, 44), (1.0 if small else 0.9, 1.0 if small else 0.9, 3.3),
                                   tilt_deg=tuple(rng.uniform(-6, 6, 3)))]
    images, motions = [], []
    for v in (0, 1):
        flair = contrast.render(tissues, maps[v], "FLAIR", rng)
        motion = acquisition.random_motion(rng)
        bias = acquisition.bias_field(grids[v], rng)
        images.append(acquisition.acquire(flair, tissues, grids[v], motion, bias, noise_sigma=0.016, rng=rng))
        motions.append(motion)
    gt = acquisition.resample(new, tissues.affine, grids[0], motions[0], labels=True)
    return images[0], images[1], sitk.Cast(gt > 0, sitk.sitkUInt8)


def icbm_source():
    """The pmlseg.synth ICBM152 phantom (no lesions) as a pairs.Source, for fast working-grid test pairs."""
    from pmlseg.detect.pairs import Source, normalise
    from pmlseg.synth import anatomy, contrast

    tissues = anatomy.load_template()
    flair = contrast.render(tissues, None, "FLAIR")
    mask = tissues.brain.astype(bool)
    img = normalise(flair, mask) * mask
    wm = np.argwhere((tissues.wm > 0.9) & mask)
    return Source("icbm152-phantom", img, mask, np.zeros(mask.shape, bool), wm[:: max(1, len(wm) // 20000)])
