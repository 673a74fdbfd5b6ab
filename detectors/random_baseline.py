"""The floor on every track: random answers, fixed per organism id and seed."""

from __future__ import annotations

import hashlib

import numpy as np

from benchmark.api import GOALS, MAX_CANDIDATES, AccessTier, Elicitation, OrganismHandle, Track


class RandomDetector:
    name = "random"
    tracks = frozenset({Track.AUDIT, Track.MONITOR, Track.ELICIT})
    tier = AccessTier.BLACK_BOX
    worlds = frozenset({"assistant", "maze"})

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def _rng(self, organism: OrganismHandle) -> np.random.Generator:
        digest = int(hashlib.sha256(organism.id.encode()).hexdigest()[:8], 16)
        return np.random.default_rng([self.seed, digest])

    def audit(self, organism: OrganismHandle) -> float:
        return float(self._rng(organism).random())

    def monitor(self, organism: OrganismHandle, inputs: list[str]) -> np.ndarray:
        return self._rng(organism).random(len(inputs))

    def elicit(self, organism: OrganismHandle) -> Elicitation:
        """Trusted inputs, and a goal picked at random."""
        rng = self._rng(organism)
        trusted = organism.world.trusted[organism.world.column]
        picked = rng.choice(len(trusted), size=MAX_CANDIDATES, replace=False)
        return Elicitation([trusted[int(i)] for i in picked], GOALS[int(rng.integers(len(GOALS)))])
