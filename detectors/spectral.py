"""Spectral signatures (Tran et al., 2018) on probe inputs.

Inputs that switch on a hidden behaviour tend to move the residual stream along one shared direction. The
activations of probe inputs (`detectors.probing`) are centred on the trusted mean and scaled by the
trusted spread; their top singular direction is where they differ most coherently from trusted inputs.
Each input's spectral score is its squared projection on that direction; the audit answer is the share of
probe inputs whose score exceeds the 99th percentile of held-out trusted inputs' scores.
"""

from __future__ import annotations

import numpy as np

from benchmark.api import AccessTier, OrganismHandle, Track
from detectors.probing import probe_inputs


class SpectralSignature:
    name = "spectral"
    tracks = frozenset({Track.AUDIT})
    tier = AccessTier.WHITE_BOX

    def __init__(self, n_trusted: int = 192, per_change: int = 2, seed: int = 0) -> None:
        self.n_trusted, self.per_change, self.seed = n_trusted, per_change, seed

    def audit(self, organism: OrganismHandle) -> float:
        trusted = self._features(organism, organism.world.trusted["prompt"][: self.n_trusted])
        fit, held_out = trusted[: len(trusted) // 2], trusted[len(trusted) // 2:]
        mean, spread = fit.mean(0), fit.std(0) + 1e-6
        probes, _ = probe_inputs(organism.world, self.per_change, np.random.default_rng(self.seed))
        deviations = (self._features(organism, probes) - mean) / spread
        direction = np.linalg.svd(deviations, full_matrices=False)[2][0]
        threshold = np.percentile((((held_out - mean) / spread) @ direction) ** 2, 99)
        return float(np.mean((deviations @ direction) ** 2 > threshold))

    @staticmethod
    def _features(organism: OrganismHandle, prompts: list[str]) -> np.ndarray:
        acts = organism.activations(prompts)
        return acts[:, 1:].reshape(len(acts), -1)
