"""What a plain change detector reaches on the real pairs from FLAIR, from T2W, and from both together.

Why: issue 15's bound asks for pooled sensitivity >= 0.5 at <= 3 false positives per case on the two shared
pairs. Before training anything more, this measures how much of the ground truth the images themselves show
as change above each pair's noise, with no learning at all: each visit prepared as the detector prepares it
(working grid, normalised, harmonised; T2W registered to its visit's FLAIR and laid on the same grid,
pmlseg.detect.predictor.add_t2), the lightly smoothed difference of each modality in robust noise SDs of its own
pair (pmlseg.detect.lesion_features.noise_sd), and

- FLAIR: z_F; T2W: z_T; both: (z_F + z_T) / sqrt(2) (a lesion brighter on both adds up, independent noise
  does not);

candidates = 26-components of the score > --seed-sd (10 mm3 .. 1500 mm3, follow-up FLAIR > the config's
min_followup_peak), ranked by their peak score (--rank: mean or sum instead). Each rank cut is scored with the
data set's protocol (labels carried onto gt.nii.gz's grid; GT = 26-components of gt_direction == 1 >= 10 mm3):
pooled sensitivity and false positives per case at the cuts, and the sensitivity at <= 1, 3 and 10 false
positives per case; per pair, how many false positives rank above each GT lesion a candidate reaches.

    .venv/bin/python benchmarks/change_froc.py [--seed-sd 2.0] [--rank peak] [--cache /tmp/froc_cache]

The prepared pairs with T2W are the same as detect_froc.py's NAME_t2 cache entries (shared when --cache is).
Results: docs/detection.md "Phase 13".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detect_froc import on_gt_grid, prepare, real_case  # noqa: E402  (one way to prepare and score a real pair)


def zscore(bl: np.ndarray, fu: np.ndarray, mask: np.ndarray, spacing) -> np.ndarray:
    """The smoothed follow-up - rebaseline difference in robust noise SDs of this pair, 0 outside the brain."""
    from pmlseg.detect.lesion_features import noise_sd, smoothed

    b, f = smoothed(bl, fu, spacing)
    d = f - b
    med, sd = noise_sd(d, mask)
    return np.where(mask, (d - med) / sd, 0.0)


def candidates(score: np.ndarray, pair, config: dict, seed_sd: float,
               rank: str = "peak") -> tuple[np.ndarray, np.ndarray]:
    """Labels 1..N of the score's plausible blobs and each one's rank score: its peak, its mean, or its sum
    (the evidence summed over the blob, a matched filter's answer for a lesion of that shape)."""
    from pmlseg.detect.lesion_features import smoothed
    from pmlseg.detect.postprocess import components, label_max, label_mean, renumber_by_size

    _, f = smoothed(pair.bl, pair.fu, pair.spacing)
    seed = (score > seed_sd) & pair.mask & (f > float(config["min_followup_peak"]))
    lab = components(seed, pair.spacing, float(config["min_size_mm3"]))
    vol = np.bincount(lab.ravel())[1:] * float(np.prod(pair.spacing))
    lab = renumber_by_size(lab, vol <= 1500.0)
    n = int(lab.max())
    if rank == "peak":
        return lab, label_max(score, lab, n)
    mean = label_mean(score, lab, n)
    return lab, mean if rank == "mean" else mean * np.bincount(lab.ravel(), minlength=n + 1)[1:]


def scored_candidates(case: dict, lab: np.ndarray, peaks: np.ndarray) -> tuple:
    """Per candidate: its rank score, the GT lesions (>= 10 mm3) it touches, whether it touches any GT voxel and
    whether it survives on the GT grid; and the number of GT lesions."""
    gt = case["gt_new"]
    gl, _ = ndi.label(gt, np.ones((3, 3, 3)))
    vox = float(np.prod(case["gt"].GetSpacing()))
    big = {i for i, n in enumerate(np.bincount(gl.ravel())[1:], 1) if n * vox >= 10}
    on = on_gt_grid(lab, case)
    touched = [set() for _ in range(int(lab.max()))]
    for c, g in zip(on[(on > 0) & gt], gl[(on > 0) & gt]):
        if g in big:
            touched[c - 1].add(int(g))
    # a candidate touching GT voxels of a small (< 10 mm3) component only is neither a hit nor a false positive
    hits_gt = np.zeros(int(lab.max()), bool)
    hits_gt[np.unique(on[(on > 0) & gt]) - 1] = True
    present = np.zeros(int(lab.max()), bool)
    present[np.unique(on[on > 0]) - 1] = True
    return peaks, touched, hits_gt, present, len(big)


def froc(cases: list[tuple]) -> list[tuple[float, float, float]]:
    """(cut, pooled sensitivity, FP per case) for every distinct rank score as the cut, highest first."""
    cuts = sorted({float(p) for c in cases for p in c[0]}, reverse=True)
    n_gt = sum(c[4] for c in cases)
    out = []
    for t in cuts:
        found, fp = 0, 0
        for peaks, touched, hits_gt, present, _ in cases:
            keep = peaks >= t
            found += len(set().union(*[touched[i] for i in np.flatnonzero(keep)])) if keep.any() else 0
            fp += int(np.sum(keep & present & ~hits_gt))
        out.append((t, found / n_gt, fp / len(cases)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed-sd", type=float, default=2.0, help="candidate blobs: score above this many SDs")
    ap.add_argument("--rank", choices=("peak", "mean", "sum"), default="peak",
                    help="what ranks the candidates: the score's peak, mean or sum over the blob")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/froc_cache"), help="prepared pairs (detect_froc.py's)")
    a = ap.parse_args()

    from pmlseg.detect.predictor import Predictor
    from pmlseg.paths import shared_data_dir

    cfg = Predictor().config
    root = shared_data_dir() / "ljubljana-longitudinal"
    real = {c: prepare(a.cache, c + "_t2", lambda c=c: real_case(root / c, True)) for c in ("patient01", "patient03")}
    per = {"FLAIR": [], "T2W": [], "both": []}
    for name, case in real.items():
        p = case["pair"]
        zf = zscore(p.bl, p.fu, p.mask, p.spacing)
        zt = zscore(p.bl_t2, p.fu_t2, p.mask, p.spacing)
        for what, score in (("FLAIR", zf), ("T2W", zt), ("both", (zf + zt) / np.sqrt(2))):
            lab, peaks = candidates(score, p, cfg, a.seed_sd, a.rank)
            sc = scored_candidates(case, lab, peaks)
            per[what].append(sc)
            found = len(set().union(*sc[1])) if sc[1] else 0
            peaks_, touched, hits_gt, present, _ = sc
            fp_peaks = peaks_[present & ~hits_gt]
            cost = sorted(int(np.sum(fp_peaks > max(peaks_[i] for i in range(len(touched)) if g in touched[i])))
                          for g in set().union(*touched)) if touched else []
            print(f"{name} {what:<5}: {len(peaks):4d} candidates > {a.seed_sd} SD, GT touched {found} of {sc[4]}; "
                  f"false positives ranked above each touched GT lesion: {cost}", flush=True)
    print(f"\npooled over {len(real)} real pairs, candidates ranked by their {a.rank} score (seed {a.seed_sd} SD):")
    print("score  | sens at <= 1 / 3 / 10 FP per case | best sens (FP per case)")  # cut: in the rank's units
    for what, cases in per.items():
        rows = froc(cases)
        at = [max([s for _, s, fp in rows if fp <= k], default=0.0) for k in (1, 3, 10)]
        best = max(rows, key=lambda r: (r[1], -r[2]), default=(0, 0, 0))
        print(f"{what:<6} | {at[0]:.2f} / {at[1]:.2f} / {at[2]:.2f} | {best[1]:.2f} ({best[2]:.1f})")
        print("       cut -> sens / FP per case: " + ", ".join(
            f"{t:.1f}->{s:.2f}/{fp:.1f}" for t, s, fp in rows[:: max(1, len(rows) // 12)]))


if __name__ == "__main__":
    main()
