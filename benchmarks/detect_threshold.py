"""Choose the detection threshold on held-out synthetic working-grid pairs (never on the real cases).

Pairs: pmlseg.detect.pairs.make_pair on the pmlseg.synth ICBM152 phantom (a brain the model was
not trained on) with procedural lesion shapes, seeds 1000+. Prints lesion-wise sensitivity,
precision, F1 (GT components >= 10 mm^3, 26-connected) and voxel Dice per threshold, and the
threshold with the best mean of F1 and Dice (F1 alone rewards one giant blob). Fast: no registration (pairs are already on a working grid).

    .venv/bin/python benchmarks/detect_threshold.py [--model NAME_OR_DIR] [--pairs 6] [--write]
    (--write stores the best threshold in the model's inference.json)
"""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np

THRESHOLDS = (0.1, 0.2, 0.3, 0.5, 0.7, 0.9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()

    from pmlseg.detect import pairs
    from pmlseg.detect.postprocess import components
    from pmlseg.detect.predictor import Predictor
    from pmlseg.detect.synthcase import icbm_source
    from pmlseg.logs import setup_logging

    setup_logging("WARNING")
    warnings.filterwarnings("ignore", "Mean of empty slice")
    pred = Predictor(a.model, "cpu")
    src = icbm_source()
    stats = {t: [] for t in THRESHOLDS}
    for s in range(a.pairs):
        p = pairs.make_pair(src, np.random.default_rng(1000 + s), [], slice_mm=pred.config.get("slice_mm"))
        prob = pred.probability(p["bl"].astype(np.float32), p["fu"].astype(np.float32), p["mask"])
        gt = components(p["label"], p["spacing"], 10.0)
        for t in THRESHOLDS:
            lab = components(prob > t, p["spacing"], float(pred.config["min_size_mm3"]))
            hit_gt = len(set(np.unique(gt[lab > 0])) - {0})
            hit_pred = len(set(np.unique(lab[p["label"]])) - {0})
            sens = hit_gt / gt.max() if gt.max() else np.nan
            prec = hit_pred / lab.max() if lab.max() else np.nan
            f1 = 2 * sens * prec / (sens + prec) if gt.max() and lab.max() and sens + prec > 0 else 0.0
            dice = 2 * ((lab > 0) & p["label"]).sum() / max(1, (lab > 0).sum() + p["label"].sum())
            stats[t].append((sens, prec, f1, dice, lab.max() - hit_pred))
    print(f"model {pred.name} ({pred.metadata.get('training_steps', '?')} steps), {a.pairs} synthetic pairs")
    print("threshold  sens  prec    F1  Dice  FP/pair")
    # score = mean of lesion-wise F1 and voxel Dice: F1 alone rewards one giant blob touching every lesion
    best = max(THRESHOLDS, key=lambda t: np.mean([(x[2] + x[3]) / 2 for x in stats[t]]))
    for t in THRESHOLDS:
        m = np.nanmean(np.array(stats[t], float), axis=0)
        print(f"{t:9.2f}  {m[0]:.2f}  {m[1]:.2f}  {m[2]:.2f}  {m[3]:.2f}  {m[4]:7.1f}" + ("  <- best" if t == best else ""))
    if a.write:
        from pmlseg.atomic import write_text

        cfg = json.loads((pred.dir / "inference.json").read_text())
        cfg["threshold"] = best
        cfg["threshold_selection"] = f"best mean (lesion-wise F1 + voxel Dice) / 2 on {a.pairs} held-out synthetic pairs " \
                                     "(benchmarks/detect_threshold.py)"
        write_text(pred.dir / "inference.json", json.dumps(cfg, indent=2) + "\n")
        print(f"wrote threshold {best} to {pred.dir / 'inference.json'}")


if __name__ == "__main__":
    main()
