"""The second stage: a lesion-level gradient-boosting classifier over candidate lesions, stored as JSON.

Why JSON and numpy rather than a pickled scikit-learn model: the model folder must load anywhere with a
checksum and no code execution, and scoring a few hundred candidates through a few hundred shallow trees is
a handful of numpy operations. ``export`` writes a fitted ``sklearn.ensemble.GradientBoostingClassifier``
(binary, log-loss); ``LesionClassifier.score`` gives the same probabilities as its ``predict_proba``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pmlseg.errors import PmlsegError


class LesionClassifier:
    """P(candidate is a true new lesion | its lesion_features row)."""

    def __init__(self, spec: dict, source: str = "lesion classifier"):
        try:
            self.features = list(spec["features"])
            self.init = float(spec["init"])
            self.learning_rate = float(spec["learning_rate"])
            self.trees = [{k: np.asarray(t[k], float if k in ("threshold", "value") else int)
                           for k in ("feature", "threshold", "left", "right", "value")} for t in spec["trees"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise PmlsegError(f"{source}: not a lesion classifier ({exc})") from None
        from pmlseg.detect.lesion_features import CANDIDATES

        self.candidates = dict(CANDIDATES, **spec.get("candidates", {}))

    @classmethod
    def load(cls, path: Path) -> "LesionClassifier":
        try:
            return cls(json.loads(Path(path).read_text()), str(path))
        except ValueError as exc:
            raise PmlsegError(f"{path}: unreadable lesion classifier ({exc})") from None

    def decision(self, X: np.ndarray) -> np.ndarray:
        """Raw log-odds (sklearn's decision_function; its trees compare float32 features)."""
        X = np.asarray(X, np.float32).astype(np.float64)
        raw = np.full(len(X), self.init)
        rows = np.arange(len(X))
        for t in self.trees:
            node = np.zeros(len(X), int)
            while True:
                f = t["feature"][node]
                inner = f >= 0
                if not inner.any():
                    break
                go_left = X[rows, np.maximum(f, 0)] <= t["threshold"][node]
                node = np.where(inner, np.where(go_left, t["left"][node], t["right"][node]), node)
            raw += self.learning_rate * t["value"][node]
        return raw

    def score(self, X: np.ndarray) -> np.ndarray:
        from scipy.special import expit

        return expit(self.decision(X))


def export(clf, features, candidates: dict | None = None, **info) -> dict:
    """A fitted binary GradientBoostingClassifier (log-loss) as the JSON spec LesionClassifier reads."""
    init = float(clf._raw_predict_init(np.zeros((1, clf.n_features_in_)))[0, 0])
    trees = []
    for est in clf.estimators_[:, 0]:
        t = est.tree_
        trees.append({"feature": [int(v) if v >= 0 else -1 for v in t.feature],
                      "threshold": [float(v) for v in t.threshold],
                      "left": [int(v) for v in t.children_left], "right": [int(v) for v in t.children_right],
                      "value": [float(v) for v in t.value[:, 0, 0]]})
    return {"kind": "sklearn GradientBoostingClassifier (log-loss), exported", "features": list(features),
            "init": init, "learning_rate": float(clf.learning_rate), "candidates": candidates or {}, **info,
            "trees": trees}
