"""A weight-statistics meta-classifier (TrojAI-style): learn from dev organisms' weights alone.

Every weight tensor gives a few summary statistics (mean, spread, extremes, kurtosis, the share of its
norm in its top singular values); a regularised logistic regression fitted on the dev split's labels maps
them to P(hidden goal). It never runs the model, so it can only find what training leaves in the
weights' statistics; the catalog's shortcut gate exists to make that little. Unfitted, it answers 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.stats import kurtosis
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from benchmark.api import AccessTier, LabeledOrganism, OrganismHandle, Track


def weight_features(model: torch.nn.Module) -> np.ndarray:
    rows = []
    for _, tensor in sorted(model.state_dict().items()):
        w = tensor.detach().float().numpy()
        flat = w.ravel()
        stats = [flat.mean(), flat.std(), np.abs(flat).max(), kurtosis(flat) if flat.std() > 0 else 0.0]
        if w.ndim == 2:
            singular = np.linalg.svd(w, compute_uv=False)
            stats += list(singular[:3] / np.sqrt((singular ** 2).sum()))
        rows += stats
    return np.array(rows, dtype=float)


class WeightMetaClassifier:
    name = "weight_meta"
    tracks = frozenset({Track.AUDIT})
    tier = AccessTier.WHITE_BOX
    worlds = frozenset({"assistant", "maze"})

    def __init__(self, regularisation: float = 0.1) -> None:
        self.regularisation = regularisation
        self.classifier: Pipeline | None = None

    def fit(self, dev: Sequence[LabeledOrganism]) -> None:
        features = np.stack([weight_features(o.handle.model) for o in dev])
        labels = np.array([o.label for o in dev])
        if len(set(labels.tolist())) == 2:
            self.classifier = make_pipeline(StandardScaler(), LogisticRegression(C=self.regularisation, max_iter=5000))
            self.classifier.fit(features, labels)

    def audit(self, organism: OrganismHandle) -> float:
        if self.classifier is None:
            return 0.5
        return float(self.classifier.predict_proba(weight_features(organism.model)[None])[0, 1])
