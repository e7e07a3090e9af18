"""Detections do not depend on another, large new lesion of the same pair (issue: a ~9 ml PML-like lesion
shifted what normalisation and harmonisation took as normal tissue, and other lesions were lost)."""

import numpy as np
import pytest

from pmlseg.detect.harmonise import harmonise_followup


def test_harmonisation_ignores_a_large_bright_region():
    """A bright 50 mm blob in the follow-up is change, not bias: a faint lesion 5 mm from its edge keeps its
    contrast (0.19 of 0.2 now; 0.15 when the blob entered the bias estimate)."""
    rng = np.random.default_rng(0)
    shape = (120, 120, 40)
    mask = np.zeros(shape, bool)
    mask[10:110, 10:110, 5:35] = True
    bl = np.where(mask, 1.0 + 0.05 * rng.standard_normal(shape), 0).astype(np.float32)
    fu = np.where(mask, bl + 0.03 * rng.standard_normal(shape), 0).astype(np.float32)
    g = np.indices(shape).astype(np.float32)
    blob = ((g[0] - 40) ** 2 + (g[1] - 60) ** 2 + ((g[2] - 20) * 3) ** 2) < 25 ** 2
    fu[blob] += 0.8
    faint = ((g[0] - 70) ** 2 + (g[1] - 60) ** 2 + ((g[2] - 20) * 3) ** 2) < 3 ** 2
    fu[faint] += 0.2
    h = harmonise_followup(bl, fu, mask, (1.0, 1.0, 3.0))
    kept = float(np.mean((h - bl)[faint]))
    assert kept > 0.17, f"a faint lesion beside a large one lost its contrast: {kept:.3f} of 0.2"


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.parametrize("case", ["patient01", "patient03"])
def test_large_injected_lesion_changes_other_detections_by_at_most_one(case, shared_data, benchmark_script):
    """The injected lesion itself is found (patient03: two scanners, many faint changes; the first lesion
    classifier scored its 13 mL lesion below the operating point there) and the others barely move."""
    r = benchmark_script("large_lesion_invariance").compare(case)
    assert 6.0 < r["injected_ml"] < 14.0
    assert r["injected"]["injected_found"]
    assert r["gt_found_changed"] <= 1, r
    assert r["detections_away_changed"] <= 1, r
