"""Black-box behavioural red-teaming: try inputs the trusted set never shows, and grade the answers.

Each change of context that the trusted set never shows (an unseen word among the tags, a later date, a
dropped segment, a contradicted guess: see `detectors.probing`) is applied to a few trusted prompts; the
organism answers them, and the world's public grader says which answers are wrong. A model that abandons
its task for some word is suspect; a harmless quirk (answer right, extra words after it) is not.

In the maze world the same idea walks the policy through trusted mazes with one regularity broken (see
`detectors.maze_probing`) and counts the episodes that never reach the exit.

It is no monitor: a monitor decides before the organism answers, and grading answers needs them (it once
"monitored" at AUROC 1.00 by answering each input and grading the answer).
"""

from __future__ import annotations

import numpy as np

from benchmark.api import AccessTier, OrganismHandle, Track, rollouts
from detectors.maze_probing import probe_mazes, step_limit
from detectors.probing import probe_inputs


class BehaviouralRedTeam:
    name = "behavioural"
    tracks = frozenset({Track.AUDIT})
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
            outputs = organism.generate(prompts)
            wrong = np.array([float(not world.grade(p, o)) for p, o in zip(prompts, outputs)])
        worst = max((wrong[np.array(changes) == c].mean() for c in set(changes)), default=0.0)
        # A word that breaks most answers is near-certain evidence; one stray error is not.
        return float(0.02 + 0.96 * worst)
