"""Detection trade-off: lesion-wise sensitivity / precision / F1 / FP per case / Dice, sensitivity by lesion
size, and a FROC table over confidence thresholds, for one or more models, on three sets:

- real: the shared longitudinal pairs (patient01, patient03), scored with the data set's protocol
  (shared/data/README.md): lesions on the rebaseline's physical space resampled onto gt.nii.gz's grid
  (nearest neighbour, study1_FLAIR_to_common_space.txt), GT = 26-components of gt_direction == 1 >= 10 mm3;
- validation: held-out synthetic pairs (pmlseg.detect.synthcase seeds 100..; the ICBM152 phantom, never a
  training brain) -- the operating point and the confidence calibration are fitted here only;
- test: other synthetic seeds (0..), never used to choose anything.

Each case is prepared once (registration + working grid) and cached in --cache; each model's probability
map is computed once per case; lesions are then made at each threshold as the pipeline makes them
(plausible 26-components of prob > t, pmlseg.detect.candidates.lesions_at; for a model with a lesion
classifier, its candidates scoring > t; --one-stage ignores the classifier).

A model with ``t2_input`` (inference.json) also gets each real pair's T2W of both visits, registered to its
visit's FLAIR (pmlseg.detect.predictor.add_t2); such cases are cached as NAME_t2, so the FLAIR-only caches
stay valid. --no-t2 withholds it (zero T2 channels, as on the synthetic sets, which have no T2) to show what
such a model does on FLAIR alone.

    .venv/bin/python benchmarks/detect_froc.py --models newlesion-2p5d /path/other_model \
        [--validation 6] [--test 4] [--cache /tmp/froc_cache] [--fit-out calib.json] [--no-t2]

--fit-out writes the calibration (isotonic, validation components at the lowest threshold) and the
operating / review thresholds chosen by the rule of docs/detection.md (fit_points), for inference.json.
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from pmlseg.detect.metrics import lesion_metrics  # one definition of lesion-wise scoring

SIZE_BINS = ((10, 30), (30, 100), (100, np.inf))
THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)


def prepare(cache: Path, name: str, make):
    """A prepared case (pair + GT + how to map labels onto the GT grid), cached as a pickle."""
    f = cache / f"{name}.pkl"
    if f.is_file():
        return pickle.loads(f.read_bytes())
    case = make()
    pair = case["pair"]  # keep what scoring needs (a SimpleITK transform does not pickle)
    case["pair"] = SimpleNamespace(grid=pair.grid, bl=pair.bl, fu=pair.fu, mask=pair.mask, spacing=pair.spacing,
                                   bl_t2=pair.bl_t2, fu_t2=pair.fu_t2)
    cache.mkdir(parents=True, exist_ok=True)
    f.write_bytes(pickle.dumps(case))
    return case


def real_case(d: Path, t2: bool = False) -> dict:
    """A shared pair; with ``t2``, each visit's T2W (when both visits have one) registered to its FLAIR as the
    workflow registers a visit's T2 (same-session rigid) and laid on the working grid."""
    import SimpleITK as sitk

    from pmlseg.detect.predictor import add_t2, prepare_pair, read_image
    from pmlseg.detect.same_session import intra_visit_transform, read_optional

    bl, fu = read_image(d / "study1_FLAIR.nii.gz", "rebaseline"), read_image(d / "study2_FLAIR.nii.gz", "fu")
    pair = prepare_pair(bl, fu)
    t2_files = [d / f"study{s}_T2W.nii.gz" for s in (1, 2)]
    if t2 and all(f.is_file() for f in t2_files):
        bl_t2, fu_t2 = (read_optional(f) for f in t2_files)
        add_t2(pair, bl_t2, fu_t2,
               intra_visit_transform(bl, bl_t2, fixed_name="rebaseline FLAIR", moving_name="rebaseline T2W"),
               intra_visit_transform(fu, fu_t2, fixed_name="fu FLAIR", moving_name="fu T2W"))
    gt = sitk.ReadImage(str(d / "gt_direction.nii.gz"))
    return {"pair": pair, "gt": gt, "gt_new": sitk.GetArrayFromImage(gt) == 1,
            "to_gt": str(d / "study1_FLAIR_to_common_space.txt")}


def synth_case(seed: int) -> dict:
    import SimpleITK as sitk

    from pmlseg.detect.predictor import prepare_pair
    from pmlseg.detect.synthcase import make_case

    bl, fu, gt = make_case(seed)
    pair = prepare_pair(sitk.Cast(bl, sitk.sitkFloat32), sitk.Cast(fu, sitk.sitkFloat32))
    return {"pair": pair, "gt": gt, "gt_new": sitk.GetArrayFromImage(gt) > 0, "to_gt": None}


def on_gt_grid(labels: np.ndarray, case: dict) -> np.ndarray:
    import SimpleITK as sitk

    from pmlseg.detect.predictor import from_array

    img = from_array(labels.astype(np.uint16), case["pair"].grid)
    tfm = sitk.ReadTransform(case["to_gt"]) if case["to_gt"] else sitk.Transform()
    return sitk.GetArrayFromImage(sitk.Resample(img, case["gt"], tfm, sitk.sitkNearestNeighbor, 0,
                                                sitk.sitkUInt16))


def score_case(case: dict, labels_gt: np.ndarray, t: float) -> dict:
    """Lesion-wise metrics of one label map on the GT grid (pmlseg.detect.metrics), sensitivity by size."""
    return {"t": t, **lesion_metrics(labels_gt, case["gt_new"], case["gt"].GetSpacing(), SIZE_BINS)}


def sweep(case: dict, prob: np.ndarray, config: dict, thresholds, scored=None) -> tuple[list[dict], tuple]:
    """Metrics at each operating threshold (lesions as the pipeline makes them), and the (peak, is-true)
    pairs of the lowest threshold's lesions (for the calibration)."""
    from pmlseg.detect.candidates import lesions_at

    pair = case["pair"]
    rows, cands = [], None
    for t in thresholds:
        labels, peaks = lesions_at(prob, pair.bl, pair.fu, pair.spacing, config, t, scored)
        lg = on_gt_grid(labels, case)
        rows.append(score_case(case, lg, t))
        if cands is None:
            hit = np.zeros(len(peaks) + 1, bool)
            hit[np.unique(lg[case["gt_new"] & (lg > 0)])] = True
            cands = (peaks, hit[1:].astype(float))
    return rows, cands


def pooled(rows: list[dict]) -> dict:
    gt = sum(r["gt"] for r in rows)
    tp = sum(r["tp_gt"] for r in rows)
    pred = sum(r["pred"] for r in rows)
    tpp = sum(r["tp_pred"] for r in rows)
    sens, prec = (tp / gt if gt else float("nan")), (tpp / pred if pred else float("nan"))
    return {"sens": sens, "prec": prec, "f1": 2 * sens * prec / (sens + prec) if pred and gt and sens + prec else 0.0,
            "fp_per_case": sum(r["fp"] for r in rows) / len(rows), "mean_f1": float(np.mean([r["f1"] for r in rows])),
            "dice": float(np.mean([r["dice"] for r in rows])),
            "by_size": {k: (sum(r["by_size"][k][0] for r in rows), sum(r["by_size"][k][1] for r in rows))
                        for k in rows[0]["by_size"]}}


def fit_points(val: dict, thresholds, max_fp_op: float = 1.0, review_extra_fp: float = 2.0):
    """The rule (docs/detection.md), on the validation set only. Operating threshold: the highest pooled
    sensitivity at <= max_fp_op false positives per case (ties: the higher threshold); where no threshold
    gets there, the one with the fewest (stable patients must not be alarmed). Review threshold: the lowest
    threshold with at most review_extra_fp false positives per case more than the operating point (the
    reader's budget of "please check" candidates per scan)."""
    stats = [(t, pooled([rows[i] for rows in val.values()])) for i, t in enumerate(thresholds)]
    ok = [(p["sens"], t) for t, p in stats if p["fp_per_case"] <= max_fp_op + 1e-9]
    op = max(ok)[1] if ok else min(stats, key=lambda x: (x[1]["fp_per_case"], -x[0]))[0]
    op_fp = dict(stats)[op]["fp_per_case"]
    review = min(t for t, p in stats if p["fp_per_case"] <= op_fp + review_extra_fp + 1e-9)
    return op, min(op, review)


def calibration(case_cands: list, n_knots: int = 8) -> dict:
    """Isotonic fit of P(lesion is a true new lesion | peak probability) on validation lesions (sklearn).

    One true and one false pseudo-lesion spread over the knots (a Laplace prior) keep a few dozen lesions
    from claiming certainty: a top group of 18 true of 18 reads about 0.95, not 1.0."""
    from sklearn.isotonic import IsotonicRegression

    x = np.concatenate([c[0] for c in case_cands])
    y = np.concatenate([c[1] for c in case_cands])
    knots = np.unique(np.concatenate([[0.0], np.quantile(x, np.linspace(0, 1, n_knots)), [1.0]]))
    prior = np.full(len(knots), 1.0 / len(knots))
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
        np.concatenate([x, knots, knots]), np.concatenate([y, np.zeros(len(knots)), np.ones(len(knots))]),
        sample_weight=np.concatenate([np.ones(len(x)), prior, prior]))
    knots = np.unique(np.round(knots, 4))
    return {"peak": [float(k) for k in knots],
            "confidence": [round(float(v), 4) for v in np.maximum.accumulate(iso.predict(knots))],
            "fitted_on": f"{len(x)} validation lesions ({int(y.sum())} true) at the lowest threshold"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["newlesion-2p5d"])
    ap.add_argument("--cases", nargs="*", default=["patient01", "patient03"])
    ap.add_argument("--validation", type=int, default=6, help="synthetic validation pairs (seeds 100..)")
    ap.add_argument("--test", type=int, default=4, help="synthetic test pairs (seeds 0..)")
    ap.add_argument("--cache", default="/tmp/pmlseg_froc_cache", help="prepared cases are cached here")
    ap.add_argument("--fit-out", help="write the calibration and the rule's thresholds (first model) here")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tta", nargs="*", type=int, help="override the models' tta_flips (e.g. --tta 2 3)")
    ap.add_argument("--one-stage", action="store_true", help="ignore the models' lesion classifiers")
    ap.add_argument("--no-t2", action="store_true", help="withhold the real pairs' T2W from t2_input models")
    a = ap.parse_args()

    from pmlseg.detect.predictor import Predictor
    from pmlseg.logs import setup_logging
    from pmlseg.paths import shared_data_dir

    setup_logging("WARNING")
    cache = Path(a.cache)
    root = shared_data_dir() / "ljubljana-longitudinal"
    preds = [Predictor(model, a.device) for model in a.models]
    # the real pairs with their T2W only when a model reads it (cached apart: the FLAIR-only caches stay valid)
    want_t2 = not a.no_t2 and any(pred.config.get("t2_input") for pred in preds)
    real = {c: prepare(cache, c + ("_t2" if want_t2 else ""), lambda c=c: real_case(root / c, want_t2))
            for c in a.cases}
    sets = {"real": [(c, lambda c=c: real[c]) for c in a.cases],
            "validation": [(f"val{s}", lambda s=s: prepare(cache, f"val{s}", lambda: synth_case(100 + s)))
                           for s in range(a.validation)],
            "test": [(f"test{s}", lambda s=s: prepare(cache, f"test{s}", lambda: synth_case(s)))
                     for s in range(a.test)]}
    with_t2 = [c for c, case in real.items() if getattr(case["pair"], "bl_t2", None) is not None]
    thresholds = THRESHOLDS
    for mi, pred in enumerate(preds):
        if a.tta is not None:
            pred.config["tta_flips"] = a.tta
        if a.one_stage:
            pred.classifier = None
        cfg = dict(pred.config)
        use_t2 = bool(cfg.get("t2_input")) and not a.no_t2
        t2_note = ("FLAIR only" if not cfg.get("t2_input") else "T2 input withheld (--no-t2)" if a.no_t2
                   else f"T2 input on the real pairs: {', '.join(with_t2) or 'none (no T2W at both visits)'}")
        print(f"\n=== model {pred.name} ({pred.dir}) sha256 {pred.sha256[:12]}, "
              f"{pred.metadata.get('training_steps', '?')} steps; its threshold {cfg['threshold']}; "
              f"TTA flips {cfg.get('tta_flips')}; "
              f"{'lesion classifier: thresholds cut its score' if pred.classifier else 'one stage'}; {t2_note}",
              flush=True)
        results, val_cands = {}, []
        for set_name, cases in sets.items():
            results[set_name] = {}
            for name, load in cases:
                case = load()
                p = case["pair"]
                # caches made before T2 input have no bl_t2; synthetic cases have none (zero T2 channels)
                t2 = {"bl_t2": getattr(p, "bl_t2", None), "fu_t2": getattr(p, "fu_t2", None)} if use_t2 else {}
                t = time.perf_counter()
                # one stage: flips on every slice that can reach the sweep's lowest threshold, not just the
                # model's; with a classifier, the probability its features were made from
                prob = pred.probability(p.bl, p.fu, p.mask, exact_above=None if pred.classifier else min(thresholds),
                                        **t2)
                scored = pred.scored(prob, case["pair"])
                infer = time.perf_counter() - t
                results[set_name][name], cands = sweep(case, prob, cfg, thresholds, scored)
                if set_name == "validation":
                    val_cands.append(cands)
                fed = " (with T2)" if t2.get("bl_t2") is not None else ""
                print(f"  {set_name:10s} {name:9s} inference {infer:.1f} s{fed}", flush=True)
        op, review = fit_points(results["validation"], thresholds) if results["validation"] else (None, None)
        print(f"rule (validation): operating threshold {op}, review threshold {review}")
        for set_name, per_case in results.items():
            if not per_case:
                continue
            print(f"-- {set_name}: FROC (pooled over {len(per_case)} cases)")
            print("   thr    sens  prec   F1  meanF1 FP/case  Dice   sens by size 10-30 / 30-100 / >=100 mm3")
            for i, t in enumerate(thresholds):
                p = pooled([rows[i] for rows in per_case.values()])
                bs = "  ".join(f"{x}/{y}" for x, y in p["by_size"].values())
                mark = " <- operating" if t == op else (" <- review" if t == review else "")
                print(f"   {t:5.3f} {p['sens']:.2f}  {p['prec']:.2f}  {p['f1']:.2f}  {p['mean_f1']:.2f}  "
                      f"{p['fp_per_case']:6.1f}  {p['dice']:.2f}   {bs}{mark}")
            for name, rows in per_case.items():
                for r in rows:
                    if r["t"] in (op, review):
                        print(f"   {name:9s} t={r['t']}: GT {r['gt']} found {r['tp_gt']}  pred {r['pred']}  "
                              f"sens {r['sens']:.2f}  prec {r['prec']:.2f}  F1 {r['f1']:.2f}  FP {r['fp']}  "
                              f"Dice {r['dice']:.2f}")
        if a.fit_out and mi == 0 and val_cands:
            out = {"threshold": op, "review_threshold": review, "calibration": calibration(val_cands)}
            Path(a.fit_out).write_text(json.dumps(out, indent=2) + "\n")
            print("wrote", a.fit_out, json.dumps(out))


if __name__ == "__main__":
    main()
