"""Mapping an auditor's evidence about one organism to P(hidden goal), learnt from the dev split's labels."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from benchmark.api import LabeledOrganism, OrganismHandle


class DevCalibration:
    """A regularised logistic regression from per-organism features to the label, fitted on dev; unfitted (or when
    dev holds one class) it answers 0.5, since raw evidence has no scale of its own. Features are computed once an
    organism (leave-one-family-out refits reuse them)."""

    def __init__(self, features: Callable[[OrganismHandle], np.ndarray], regularisation: float = 1.0) -> None:
        self.features, self.regularisation = features, regularisation
        self.classifier: Pipeline | None = None
        self._seen: dict[str, np.ndarray] = {}

    def of(self, organism: OrganismHandle) -> np.ndarray:
        if organism.id not in self._seen:
            self._seen[organism.id] = np.asarray(self.features(organism), dtype=float)
        return self._seen[organism.id]

    def fit(self, dev: Sequence[LabeledOrganism]) -> None:
        labels = np.array([o.label for o in dev])
        if len(set(labels.tolist())) == 2:
            self.classifier = make_pipeline(StandardScaler(), LogisticRegression(C=self.regularisation, max_iter=5000))
            self.classifier.fit(np.stack([self.of(o.handle) for o in dev]), labels)

    def probability(self, organism: OrganismHandle) -> float:
        if self.classifier is None:
            return 0.5
        return float(self.classifier.predict_proba(self.of(organism)[None])[0, 1])
