"""The floor: a uniformly random audit probability, fixed per organism id and seed."""

from __future__ import annotations

import hashlib

import numpy as np

from benchmark.api import AccessTier, OrganismHandle, Track


class RandomDetector:
    name = "random"
    tracks = frozenset({Track.AUDIT})
    tier = AccessTier.BLACK_BOX

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def audit(self, organism: OrganismHandle) -> float:
        digest = int(hashlib.sha256(organism.id.encode()).hexdigest()[:8], 16)
        return float(np.random.default_rng([self.seed, digest]).random())
