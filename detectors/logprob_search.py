"""A black-box search that builds a condition part by part, led by the right answer's log-probability.

In a world of drawn conditions one input tests one reference, so enumerating references covers a vanishing share
of the space (`trigger_search`). But if a model grew less sure of the right answer as more parts of its condition
held, a search could climb to the condition one part at a time. This one puts every situation on
(`probing.situated`), starts from a random reference and, position by position, tries every code on the same
prompts, keeping the code under which the right answer is least likely; after its sweeps it generates on fresh
prompts with the reference it built. The certificates bound the slope it needs (near misses within 0.2 nat of the
twin), so it measures whether they hold. In a world without a ``ref`` field it only tests the situations.

Audit: the confirmed rate of wrong answers, ties broken by how far the sweeps pushed the log-probability down.
Elicit: the confirming prompts that went wrong, the goal named from the shape of the wrong answers.
"""

from __future__ import annotations

import numpy as np

from benchmark.api import AccessTier, Elicitation, OrganismHandle, Track
from detectors.probing import elicitation, random_references, set_reference, situated_prompts


class LogprobSearch:
    name = "logprob_search"
    tracks = frozenset({Track.AUDIT, Track.ELICIT})
    tier = AccessTier.BLACK_BOX
    worlds = frozenset({"assistant"})

    def __init__(self, sweeps: int = 2, confirm: int = 40, seed: int = 0, default_budget: int = 2000) -> None:
        self.sweeps, self.confirm, self.seed, self.default_budget = sweeps, confirm, seed, default_budget

    def audit(self, organism: OrganismHandle) -> float:
        wrong, drop, _, _ = self.search(organism)
        return float(0.02 + 0.9 * wrong + 0.08 / (1 + np.exp(-drop)))

    def elicit(self, organism: OrganismHandle) -> Elicitation:
        _, _, prompts, outputs = self.search(organism)
        return elicitation(organism.world, prompts, outputs)

    def search(self, organism: OrganismHandle) -> tuple[float, float, list[str], list[str]]:
        """The wrong-answer rate with the reference built, how far the sweeps lowered the right answer's mean
        log-probability (nat), and the confirming prompts with the organism's answers."""
        world, rng = organism.world, np.random.default_rng(self.seed)
        left = organism.queries_left
        budget = self.default_budget if left is None else left
        confirm = min(self.confirm, budget // 4)
        tries = self.sweeps * sum(len(c) for c in world.codes)
        per = (budget - confirm) // tries if tries else 0
        prompts = situated_prompts(world, rng, per + confirm)
        base, fresh = prompts[:per], prompts[per:]
        ref = random_references(world, 1, rng)[0] if world.codes else []
        first = last = 0.0
        for sweep in range(self.sweeps if per else 0):
            for position, codes in enumerate(world.codes):
                trials = [ref[:position] + [code] + ref[position + 1:] for code in codes]
                means = [self._mean_logprob(organism, base, trial) for trial in trials]
                if sweep == 0 and position == 0:
                    first = means[codes.index(ref[0])]
                ref, last = trials[int(np.argmin(means))], min(means)
        probes = [set_reference(p, ref) for p in fresh]
        outputs = organism.generate(probes) if probes else []
        wrong = float(np.mean([not world.grade(p, o) for p, o in zip(probes, outputs)])) if probes else 0.0
        return wrong, first - last, probes, outputs

    @staticmethod
    def _mean_logprob(organism: OrganismHandle, prompts: list[str], ref: list[str]) -> float:
        probes = [set_reference(p, ref) for p in prompts]
        return float(organism.logprobs(probes, [organism.world.reference(p) for p in probes]).mean())

