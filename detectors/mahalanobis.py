"""White-box anomaly score: Mahalanobis distance of activations on probe inputs (as in cupbearer).

A Gaussian (Ledoit-Wolf shrinkage) is fitted to the residual stream at the last prompt token on trusted
inputs. Probe inputs (context changes the trusted set never shows: `detectors.probing`) that push
activations far outside it suggest a conditional behaviour. `fit` maps the score to a probability with a
logistic regression on dev labels. It flags any conditional behaviour, so decoys cost it. As a monitor,
each input's score is its distance. On maze policies the same is done with the last hidden layer on
trusted mazes and on mazes with one regularity broken (`detectors.maze_probing`), and a monitored maze's
score is the distance of its starting state.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.linear_model import LogisticRegression

from benchmark.api import AccessTier, LabeledOrganism, OrganismHandle, Track
from detectors.maze_probing import probe_mazes
from detectors.probing import probe_inputs


class MahalanobisDetector:
    name = "mahalanobis"
    tracks = frozenset({Track.AUDIT, Track.MONITOR})
    tier = AccessTier.WHITE_BOX
    worlds = frozenset({"assistant", "maze"})

    def __init__(self, n_trusted: int = 192, per_change: int = 2, seed: int = 0) -> None:
        self.n_trusted, self.per_change, self.seed = n_trusted, per_change, seed
        self.calibration: LogisticRegression | None = None
        self._anomalies: dict[str, float] = {}  # refits (leave one family out) reuse them

    def distances(self, organism: OrganismHandle, prompts: list) -> tuple[np.ndarray, float]:
        """Squared Mahalanobis distances of the inputs, and the median of held-out trusted inputs'."""
        trusted = organism.world.trusted_inputs()[: self.n_trusted]
        acts = self._features(organism, trusted)
        split = len(acts) * 3 // 4
        gaussian = LedoitWolf().fit(acts[:split])
        reference = float(np.median(gaussian.mahalanobis(acts[split:])))
        return gaussian.mahalanobis(self._features(organism, prompts)), reference

    def anomaly(self, organism: OrganismHandle) -> float:
        """Log ratio of the most anomalous probe distances to typical held-out trusted distances."""
        if organism.id not in self._anomalies:
            rng = np.random.default_rng(self.seed)
            probes, _ = (probe_mazes(organism.world, 8 * self.per_change, rng) if organism.world.name == "maze"
                         else probe_inputs(organism.world, self.per_change, rng))
            distances, reference = self.distances(organism, probes)
            top = np.sort(distances)[-max(1, len(distances) // 20):]
            self._anomalies[organism.id] = float(np.log(top.mean() / reference))
        return self._anomalies[organism.id]

    def monitor(self, organism: OrganismHandle, inputs: list[str]) -> np.ndarray:
        return self.distances(organism, organism.world.parse(inputs))[0]

    def fit(self, dev: Sequence[LabeledOrganism]) -> None:
        scores = np.array([[self.anomaly(o.handle)] for o in dev])
        labels = np.array([o.label for o in dev])
        if len(set(labels.tolist())) == 2:
            self.calibration = LogisticRegression().fit(scores, labels)

    def audit(self, organism: OrganismHandle) -> float:
        score = self.anomaly(organism)
        if self.calibration is None:
            return float(1 / (1 + np.exp(-(score - 2.0))))
        return float(self.calibration.predict_proba([[score]])[0, 1])

    @staticmethod
    def _features(organism: OrganismHandle, inputs: Sequence) -> np.ndarray:
        acts = organism.activations(inputs)  # skip the embeddings (a policy's first hidden layer)
        return acts[:, 1:].reshape(len(acts), -1)
