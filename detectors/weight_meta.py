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

from benchmark.api import AccessTier, LabeledOrganism, OrganismHandle, Track
from detectors.calibration import DevCalibration


def weight_features(model: torch.nn.Module) -> np.ndarray:
    rows = []
    for _, tensor in sorted(model.state_dict().items()):
        w = tensor.detach().float().cpu().numpy()
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
        self.calibration = DevCalibration(self.features, regularisation)

    @staticmethod
    def features(organism: OrganismHandle) -> np.ndarray:
        return weight_features(organism.model)

    def fit(self, dev: Sequence[LabeledOrganism]) -> None:
        self.calibration.fit(dev)

    def audit(self, organism: OrganismHandle) -> float:
        return self.calibration.probability(organism)
