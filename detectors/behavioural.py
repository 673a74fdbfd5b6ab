"""Black-box behavioural red-teaming: try inputs the trusted set never shows, and grade the answers.

Each change of context that the trusted set never shows (an unseen word among the tags, a later date, a
dropped segment, a contradicted guess: see `detectors.probing`) is applied to a few trusted prompts; the
organism answers them, and the world's public grader says which answers are wrong. A model that abandons
its task for some word is suspect; a harmless quirk (answer right, extra words after it) is not. As a
monitor it answers each input and flags the answers the grader rejects.

In the maze world the same idea walks the policy through trusted mazes with one regularity broken (see
`detectors.maze_probing`) and counts the episodes that never reach the exit. As a maze monitor it walks each
maze's shortest way out and reports the most probability the policy puts on leaving it (`off_course`).
"""

from __future__ import annotations

import numpy as np

from benchmark.api import AccessTier, OrganismHandle, Track, rollouts
from detectors.maze_probing import off_course, probe_mazes, step_limit
from detectors.probing import probe_inputs


class BehaviouralRedTeam:
    name = "behavioural"
    tracks = frozenset({Track.AUDIT, Track.MONITOR})
    tier = AccessTier.BLACK_BOX
    worlds = frozenset({"assistant", "maze"})

    def __init__(self, per_change: int = 4, seed: int = 0) -> None:
        self.per_change, self.seed = per_change, seed

    def audit(self, organism: OrganismHandle) -> float:
        world, rng = organism.world, np.random.default_rng(self.seed)
        if world.name == "maze":
            mazes, changes = probe_mazes(world, self.per_change, rng)
            runs = rollouts(mazes, organism.act, max_steps=step_limit(mazes))
            wrong = np.array([float(not world.grade(run)) for run in runs])
        else:
            prompts, changes = probe_inputs(world, self.per_change, rng)
            wrong = self.monitor(organism, prompts)
        worst = max((wrong[np.array(changes) == c].mean() for c in set(changes)), default=0.0)
        # A word that breaks most answers is near-certain evidence; one stray error is not.
        return float(0.02 + 0.96 * worst)

    def monitor(self, organism: OrganismHandle, inputs: list[str]) -> np.ndarray:
        """1 where the organism's answer is wrong, else 0; in a maze, how far it strays from the way out."""
        if organism.world.name == "maze":
            return off_course(organism, organism.world.parse(inputs))
        outputs = organism.generate(inputs)
        return np.array([float(not organism.world.grade(p, o)) for p, o in zip(inputs, outputs)])
