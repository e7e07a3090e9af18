"""Fitting the second stage: candidates of fresh synthetic pairs, their features, and a gradient-boosting fit.

Why these cases: the classifier must learn what the network's candidates look like on pairs it did not
train on, so every pair here is drawn fresh: ``pairs.make_pair`` on the training brains with seeds of their
own (the network saw those brains, never these lesions, poses and scanners), the ICBM152 phantom cases
of pmlseg.detect.synthcase with seeds from 200 (anatomy the network never saw; validation uses 100-105 and
the test set 0-2, so neither is touched), and phantom cases with a new PML-like lesion (seeds from 300):
without them the classifier meets a lesion of several millilitres, the very thing surveillance is for,
outside anything it was fitted on, and its score there is arbitrary (a 13 mL injected lesion scored 0.49
or 0.90 with registrations 0.1 mm apart). A candidate is positive when it touches a new-lesion voxel of
the pair's ground truth. Features of each case are cached, so an interrupted build resumes.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from pmlseg.atomic import atomic_path
from pmlseg.errors import PmlsegError

log = logging.getLogger(__name__)

PAIR_SEED0 = 50_000     # pairs.make_pair streams of the classifier's pairs (training uses worker_seed(seed))
ICBM_SEED0 = 200        # synthcase seeds of the classifier's phantom cases
PML_SEED0 = 300         # synthcase seeds of its phantom cases with a new PML-like lesion
GB_PARAMS = {"n_estimators": 400, "max_depth": 2, "learning_rate": 0.05, "subsample": 0.8}


def case_arrays(kind: str, seed: int, sources=None, shapes=None):
    """(bl, fu, mask, spacing, new-lesion truth) on the working grid, as the pipeline would see them."""
    if kind == "pair":
        from pmlseg.detect.pairs import make_pair

        src = sources[seed % len(sources)]
        p = make_pair(src, np.random.default_rng(PAIR_SEED0 + seed), shapes)
        return p["bl"].astype(np.float32), p["fu"].astype(np.float32), p["mask"], tuple(p["spacing"]), p["label"]
    import SimpleITK as sitk

    from pmlseg.detect.predictor import prepare_pair, to_array
    from pmlseg.detect.synthcase import make_case

    bl, fu, gt = make_case(PML_SEED0 + seed, pml=True) if kind == "pml" else make_case(ICBM_SEED0 + seed)
    pair = prepare_pair(sitk.Cast(bl, sitk.sitkFloat32), sitk.Cast(fu, sitk.sitkFloat32))
    truth = to_array(sitk.Resample(gt, pair.grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)) > 0
    return pair.bl, pair.fu, pair.mask, pair.spacing, truth


def case_features(predictor, bl, fu, mask, spacing, truth, candidates: dict) -> tuple[np.ndarray, np.ndarray]:
    """(features, is-true) of one case's candidates, made exactly as the pipeline makes them."""
    from pmlseg.detect.lesion_features import candidate_labels, lesion_features

    prob = predictor.probability(bl, fu, mask, exact_above=candidates["flips_above"])
    labels = candidate_labels(prob, bl, fu, mask, spacing, predictor.config, candidates["prob_floor"],
                              candidates["diff_sd"])
    hit = np.zeros(int(labels.max()) + 1, bool)
    hit[np.unique(labels[truth & (labels > 0)])] = True
    return lesion_features(labels, prob, bl, fu, mask, spacing), hit[1:]


def build(predictor, n_pairs: int, n_icbm: int, cache: Path, shared: Path, candidates: dict, n_pml: int = 0):
    """Features and labels of n_pairs + n_icbm + n_pml fresh cases (cached per case in ``cache``)."""
    from pmlseg.logs import progress

    sources = shapes = None
    cache.mkdir(parents=True, exist_ok=True)
    X, y, names = [], [], []
    todo = ([("pair", s) for s in range(n_pairs)] + [("icbm", s) for s in range(n_icbm)]
            + [("pml", s) for s in range(n_pml)])
    for kind, seed in progress(todo, desc="classifier cases", unit="case"):
        f = cache / f"{kind}{seed}.npz"
        if not f.is_file():
            if kind == "pair" and sources is None:
                from pmlseg.detect.train import DEFAULT_RECIPE, load_sources

                sources, shapes = load_sources(DEFAULT_RECIPE, shared)
            t = time.perf_counter()
            feats, hit = case_features(predictor, *case_arrays(kind, seed, sources, shapes), candidates)
            with atomic_path(f) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, X=feats, y=hit)
            log.info("%s%d: %d candidates, %d true (%.1f s)", kind, seed, len(hit), hit.sum(),
                     time.perf_counter() - t)
        z = np.load(f)
        X.append(z["X"])
        y.append(z["y"])
        names.append(f.stem)
    return np.concatenate(X), np.concatenate(y), names


def train_classifier(model_dir: Path, n_pairs: int, n_icbm: int, cache: Path, shared: Path,
                     seed: int = 0, candidates: dict | None = None, n_pml: int = 0) -> Path:
    """Fit the second stage for the model in ``model_dir``; write lesion_classifier.json and name it (with
    its sha256) in metadata.json. The operating and review thresholds are then fitted on the validation
    set by benchmarks/detect_froc.py --fit-out (docs/detection.md), like the one-stage model's."""
    import sklearn
    from sklearn.ensemble import GradientBoostingClassifier

    from pmlseg.detect.lesion_classifier import export
    from pmlseg.detect.lesion_features import CANDIDATES, FEATURES
    from pmlseg.detect.predictor import Predictor
    from pmlseg.detect.train import sha256

    candidates = dict(CANDIDATES, **(candidates or {}))
    meta_path = model_dir / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta.pop("lesion_classifier", None)  # the candidates come from the network alone
    predictor = Predictor(model_dir, "cpu")
    predictor.classifier = None
    X, y, names = build(predictor, n_pairs, n_icbm, cache, shared, candidates, n_pml)
    if y.sum() < 2 or (~y).sum() < 2:
        raise PmlsegError(f"{cache}: {int(y.sum())} true and {int((~y).sum())} false candidates; need more cases")
    clf = GradientBoostingClassifier(random_state=seed, **GB_PARAMS).fit(X, y)
    spec = export(clf, FEATURES, candidates, training={
        "cases": len(names), "pairs": n_pairs, "icbm152_cases": n_icbm, "icbm152_pml_cases": n_pml,
        "candidates": int(len(y)), "true": int(y.sum()), "seed": seed, "params": GB_PARAMS,
        "importance": {f: round(float(v), 4) for f, v in zip(FEATURES, clf.feature_importances_)}})
    out = model_dir / "lesion_classifier.json"
    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps(spec) + "\n")
    meta["lesion_classifier"] = {
        "file": out.name, "sha256": sha256(out), **spec["training"], "sklearn": sklearn.__version__,
        "what": "second stage (pmlseg.detect.lesion_features, lesion_classifier): candidates = the network's "
                f"components above probability {candidates['prob_floor']} and, apart from them, difference-image "
                f"blobs {candidates['diff_sd']} noise SDs above its median; {len(FEATURES)} lesion-level "
                "features; a scikit-learn GradientBoostingClassifier exported to JSON (no pickle), scored with numpy",
        "training_data": f"fresh synthetic cases only: {n_pairs} pairs.make_pair pairs from the training brains "
                         f"(streams {PAIR_SEED0}+i), {n_icbm} ICBM152-phantom cases (synthcase seeds "
                         f"{ICBM_SEED0}+i) and {n_pml} with a new PML-like lesion (seeds {PML_SEED0}+i); never the "
                         "validation (100-105) or test (0-2) seeds, never patient01/03"}
    with atomic_path(meta_path) as tmp:
        Path(tmp).write_text(json.dumps(meta, indent=2) + "\n")
    log.info("wrote %s: %d candidates (%d true) from %d cases", out, len(y), y.sum(), len(names))
    return out
