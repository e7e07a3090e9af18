"""The detector's second stage: candidates and their lesion-level features, the classifier stored as JSON
(the same probabilities as scikit-learn's), its checksum, and a tiny fit that the pipeline then uses."""

import json
import shutil

import numpy as np
import pytest
from scipy import ndimage as ndi

from pmlseg.detect.lesion_classifier import LesionClassifier, export
from pmlseg.detect.lesion_features import FEATURES, candidate_labels, lesion_features
from pmlseg.detect.predictor import DEFAULT_MODEL, Predictor, resolve_model
from pmlseg.errors import PmlsegError

CONFIG = {"min_size_mm3": 10.0, "min_followup_peak": 1.1, "min_mean_difference": 0.1}


def test_exported_classifier_gives_sklearns_probabilities():
    from sklearn.ensemble import GradientBoostingClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 6))
    y = X[:, 0] + 0.5 * X[:, 1] ** 2 - X[:, 2] * X[:, 3] + rng.normal(size=600) > 1
    clf = GradientBoostingClassifier(n_estimators=60, max_depth=3, subsample=0.8, random_state=0).fit(X, y)
    spec = json.loads(json.dumps(export(clf, list("abcdef"))))  # through JSON text, as shipped
    Xt = rng.normal(size=(400, 6)).astype(np.float32) * 3
    lc = LesionClassifier(spec)
    np.testing.assert_allclose(lc.decision(Xt), clf.decision_function(Xt), rtol=0, atol=1e-12)
    np.testing.assert_allclose(lc.score(Xt), clf.predict_proba(Xt)[:, 1], rtol=0, atol=1e-12)
    with pytest.raises(PmlsegError, match="not a lesion classifier"):
        LesionClassifier({"features": ["a"]}, "x.json")


def _phantom(rng):
    """A smooth ellipsoid 'brain' (median 1) with two new blobs at follow-up: one deep, one at the edge."""
    shape, spacing = (120, 140, 30), (1.0, 1.0, 3.0)
    zz, yy, xx = np.meshgrid(np.arange(shape[2]) * 3.0, np.arange(shape[1]), np.arange(shape[0]), indexing="ij")
    r = ((xx - 60) / 50) ** 2 + ((yy - 70) / 60) ** 2 + ((zz - 45) / 40) ** 2
    mask = (r < 1).transpose(2, 1, 0)
    bl = (mask * (1 + ndi.gaussian_filter(rng.normal(0, 0.05, shape), 1.0))).astype(np.float32)
    fu = (bl + mask * ndi.gaussian_filter(rng.normal(0, 0.05, shape), 1.0)).astype(np.float32)
    deep = np.zeros(shape, bool)
    deep[56:64, 66:74, 14:16] = True
    fu[deep] += 0.5
    return bl, fu, mask, spacing, deep


def test_difference_blobs_become_candidates_with_telling_features():
    """A bright new blob the network missed (probability 0) is still a candidate; its features say what a
    reader would: deep below the surface, clearly brighter than at the rebaseline and than around it."""
    bl, fu, mask, spacing, deep = _phantom(np.random.default_rng(1))
    prob = np.zeros(bl.shape, np.float32)
    lab = candidate_labels(prob, bl, fu, mask, spacing, CONFIG)
    assert lab.max() >= 1
    blob = np.bincount(lab[deep]).argmax()
    assert blob > 0, "the new blob is a candidate"
    X = lesion_features(lab, prob, bl, fu, mask, spacing)
    row = dict(zip(FEATURES, X[blob - 1]))
    assert row["prob_max"] == 0 and row["from_network"] == 0
    assert row["depth_mm"] > 25 and row["diff_mean"] > 0.3 and row["shell_contrast"] > 0.3
    assert row["n_slices"] == 2 and 2.3 < row["log_volume"] < 2.8  # 8 x 8 x 2 voxels of 3 mm3
    # the network's own components are candidates too, whatever the difference image says
    prob[40:50, 60:70, 8:10] = 0.6
    fu[40:50, 60:70, 8:10] += 0.3
    lab2 = candidate_labels(prob, bl, fu, mask, spacing, CONFIG)
    net = lab2[45, 65, 8]
    assert net > 0 and lesion_features(lab2, prob, bl, fu, mask, spacing)[net - 1, FEATURES.index("from_network")] == 1
    assert (lab2 == net).sum() == 200, "the network's component alone, not joined to the difference around it"
    # a faint change over a whole lobe (two scanners' cortical contrast) is no candidate: too large
    fu2 = fu.copy()
    fu2[10:45, 20:120, 3:25] += 0.25 * mask[10:45, 20:120, 3:25]
    lab3 = candidate_labels(np.zeros_like(prob), bl, fu2, mask, spacing, CONFIG)
    assert lab3[30, 70, 12] == 0 and lab3[60, 70, 15] > 0, "the lobe is dropped, the deep blob stays"


@pytest.mark.slow
@pytest.mark.shared
def test_a_fitted_classifier_is_checked_and_used_by_the_pipeline(tmp_path, shared_data):
    """pmlseg train-classifier on two fresh pairs: the JSON is named with its sha256 in metadata.json, the
    Predictor loads it (and refuses it tampered), and detection cuts its scores: every lesion at the
    operating point is a candidate scoring above it."""
    from pmlseg.cli import main
    from pmlseg.detect import candidates
    from pmlseg.detect.train_classifier import case_arrays

    model = tmp_path / "m"
    shutil.copytree(resolve_model(DEFAULT_MODEL), model)
    meta = json.loads((model / "metadata.json").read_text())
    meta.pop("lesion_classifier", None)
    (model / "metadata.json").write_text(json.dumps(meta))
    (model / "lesion_classifier.json").unlink(missing_ok=True)
    assert main(["train-classifier", "--model", str(model), "--pairs", "2", "--icbm", "0", "--pml", "0",
                 "--cache", str(tmp_path / "cache")]) == 0
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["pair0.npz", "pair1.npz"]
    entry = json.loads((model / "metadata.json").read_text())["lesion_classifier"]
    assert entry["file"] == "lesion_classifier.json" and entry["cases"] == 2 and entry["true"] >= 1
    pred = Predictor(model, "cpu")
    assert pred.classifier is not None and pred.classifier.features == list(FEATURES)

    from pmlseg.detect.train import DEFAULT_RECIPE, load_sources

    sources, shapes = load_sources(DEFAULT_RECIPE, shared_data)
    bl, fu, mask, spacing, truth = case_arrays("pair", 7, sources, shapes)

    class Pair:
        pass

    Pair.bl, Pair.fu, Pair.mask, Pair.spacing = bl, fu, mask, spacing
    prob = pred.probability(bl, fu, mask)
    cand, score = pred.scored(prob, Pair)
    assert len(score) == cand.max() and ((0 <= score) & (score <= 1)).all()
    cfg = dict(pred.config, threshold=float(np.median(score)), review_threshold=None)
    (lab, conf), _ = candidates.operating_and_possible(prob, bl, fu, spacing, cfg, (cand, score))
    kept = np.unique(cand[lab > 0])
    assert len(kept) == lab.max() == (score > cfg["threshold"]).sum()

    spec = json.loads((model / "lesion_classifier.json").read_text())
    spec["init"] += 1.0
    (model / "lesion_classifier.json").write_text(json.dumps(spec))
    with pytest.raises(PmlsegError, match=r"lesion_classifier\.json.*sha256"):
        Predictor(model, "cpu")


def test_candidates_on_the_brains_box_are_the_whole_volumes():
    """scored_candidates works on the brain's box: the same labels and scores as on the whole volume."""
    from pmlseg.detect.candidates import scored_candidates

    bl, fu, mask, spacing, _ = _phantom(np.random.default_rng(2))
    pad = [(30, 25), (20, 40), (3, 2)]  # the brain well inside a larger grid, as on a real working grid
    bl, fu, mask = np.pad(bl, pad), np.pad(fu, pad), np.pad(mask, pad)
    prob = np.zeros(bl.shape, np.float32)
    prob[70:80, 80:90, 11:13] = 0.7
    fu[70:80, 80:90, 11:13] += 0.3
    stump = LesionClassifier({"features": list(FEATURES), "init": 0.0, "learning_rate": 1.0, "trees": [
        {"feature": [0, -1, -1], "threshold": [2.0, 0, 0], "left": [1, -1, -1], "right": [2, -1, -1],
         "value": [0.0, -1.0, 1.0]}]})
    labels, score = scored_candidates(prob, bl, fu, mask, spacing, CONFIG, stump)
    whole = candidate_labels(prob, bl, fu, mask, spacing, CONFIG)
    assert whole.max() >= 2 and np.array_equal(labels, whole)
    np.testing.assert_array_equal(score, stump.score(lesion_features(whole, prob, bl, fu, mask, spacing)))
