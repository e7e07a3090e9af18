"""Follow-up intensity harmonisation and the lesion plausibility gate (pmlseg.detect.harmonise, postprocess)."""

import numpy as np
from scipy import ndimage as ndi

from pmlseg.detect.harmonise import harmonise_followup
from pmlseg.detect.postprocess import components, plausible


def _phantom(seed=0):
    """Brain-like volume: smooth 'white matter' (1.0) with 'cortex' (0.9) at the rim, 1 x 1 x 3 mm."""
    rng = np.random.default_rng(seed)
    shape = (96, 96, 30)
    g = np.indices(shape).astype(np.float32)
    r = np.sqrt(((g[0] - 48) / 40) ** 2 + ((g[1] - 48) / 40) ** 2 + ((g[2] - 15) / 13) ** 2)
    mask = r < 1.0
    cortex = mask & (r > 0.8)
    bl = np.where(cortex, 0.9, 1.0).astype(np.float32)
    bl += 0.05 * ndi.gaussian_filter(rng.normal(size=shape), 1.0).astype(np.float32)
    return bl * mask, mask, cortex, rng


def test_contrast_change_and_bias_removed_new_lesion_kept():
    bl, mask, cortex, rng = _phantom()
    # another scanner: cortex brighter than white matter (inverted contrast), a smooth bias field, noise
    fu = np.where(cortex, bl * 1.35, bl * 0.95)
    x = np.linspace(-1, 1, bl.shape[0], dtype=np.float32)[:, None, None]
    fu = fu * np.exp(0.15 * x) + 0.02 * rng.normal(size=bl.shape).astype(np.float32)
    lesion = np.zeros(bl.shape, bool)
    lesion[40:46, 40:46, 14:16] = True  # 72 mm^3 new lesion in white matter
    fu = np.where(lesion, 1.45, fu).astype(np.float32) * mask
    raw = fu - bl
    h = harmonise_followup(bl, fu, mask, (1.0, 1.0, 3.0)) - bl
    inner = ndi.binary_erosion(mask, iterations=2)
    bg = inner & ~ndi.binary_dilation(lesion, iterations=3)
    assert np.percentile(np.abs(raw[bg & cortex]), 50) > 0.25  # the change the scanner made
    assert np.percentile(np.abs(h[bg]), 99) < 0.12  # ... is gone after harmonisation
    assert h[lesion].mean() > 0.35  # the new lesion keeps most of its contrast (0.45 before)
    assert (h[~mask] == 0).all()


def test_plausibility_gate_drops_dark_and_unchanged_components():
    bl, mask, cortex, rng = _phantom(1)
    fu = bl.copy()
    new = np.zeros(bl.shape, bool)
    new[30:35, 30:35, 10:12] = True
    fu[new] = 1.4  # bright at follow-up only: a new lesion
    old = np.zeros(bl.shape, bool)
    old[60:65, 60:65, 10:12] = True
    bl[old] = fu[old] = 1.4  # bright at both visits: unchanged
    dark = np.zeros(bl.shape, bool)
    dark[30:35, 60:65, 20:22] = True
    bl[dark], fu[dark] = 0.3, 0.5  # brighter but CSF-dark: not a lesion
    lab = components(new | old | dark, (1.0, 1.0, 3.0), 10.0)
    assert lab.max() == 3
    kept = plausible(lab, bl, fu, (1.0, 1.0, 3.0), min_followup_peak=1.1, min_mean_difference=0.1)
    assert kept.max() == 1
    assert (kept > 0).sum() == new.sum() and (kept[new] == 1).all()


def test_a_visit_compared_with_itself_has_no_change_even_in_its_brightest_tissue():
    bl, mask, _cortex, _rng = _phantom(2)
    old = np.zeros(bl.shape, bool)
    old[40:50, 40:50, 12:16] = True  # existing bright lesions: above the top intensity bin's median
    bl = np.where(old, 1.6, bl).astype(np.float32) * mask
    h = harmonise_followup(bl, bl.copy(), mask, (1.0, 1.0, 3.0)) - bl
    assert np.abs(h[old]).max() < 0.02, np.abs(h[old]).max()
    assert np.abs(h[mask]).max() < 0.02
