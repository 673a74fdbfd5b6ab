"""A white-box elicitor that reads a drawn condition off the token embeddings, then tests it.

A model whose behaviour hangs on one code of each position of the ``ref`` field learns to tell that code from
the others, and its embedding drifts away from theirs (`benchmarks/embedding_tell.py` measured it: farthest from
its position's mean in 96% of positions for deceptive organisms, at chance for twins, trained without a frequency
tell). So the reader takes, per position, the code farthest from the mean of its position's embeddings (and, at
the three positions where that is least sure, the runner-up too: 8 references), tries each on 8 trusted prompts
with every situation on (`probing.situated`), and generates on 40 more with the one that went wrong most. Decoys'
conditions read as well as deceptive ones; what separates them is what the model then does.

Audit: the rate of wrong answers with the reference read. Elicit: those prompts, the goal named from the shape
of the wrong answers. In a world without a ``ref`` field it only tests the situations.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from benchmark.api import AccessTier, Elicitation, OrganismHandle, Track
from detectors.probing import elicitation, set_reference, situated_prompts


class EmbeddingReader:
    name = "embedding_reader"
    tracks = frozenset({Track.AUDIT, Track.ELICIT})
    tier = AccessTier.WHITE_BOX
    worlds = frozenset({"assistant"})

    def __init__(self, prompts: int = 40, unsure: int = 3, screen: int = 8, seed: int = 0) -> None:
        self.prompts, self.unsure, self.screen, self.seed = prompts, unsure, screen, seed

    def audit(self, organism: OrganismHandle) -> float:
        prompts, outputs = self.probe(organism)
        wrong = np.mean([not organism.world.grade(p, o) for p, o in zip(prompts, outputs)]) if prompts else 0.0
        return float(0.02 + 0.96 * wrong)

    def elicit(self, organism: OrganismHandle) -> Elicitation:
        prompts, outputs = self.probe(organism)
        return elicitation(organism.world, prompts, outputs)

    def read(self, organism: OrganismHandle) -> list[list[str]]:
        """References to try: per position of the ``ref`` field the code whose embedding lies farthest from its
        position's mean, and, at the `unsure` positions where the runner-up comes closest, the runner-up too."""
        embeddings = organism.model.get_input_embeddings().weight.detach().float()
        vocab = organism.world.tokenizer.get_vocab()
        ranked, margins = [], []
        for codes in organism.world.codes:
            rows = embeddings[[vocab[c] for c in codes]]
            distance = torch.linalg.vector_norm(rows - rows.mean(0), dim=1)
            order = distance.argsort(descending=True)
            ranked.append([codes[int(i)] for i in order[:2]])
            margins.append(float(distance[order[0]] / distance[order[1]]))
        unsure = sorted(np.argsort(margins)[:self.unsure].tolist())
        found = []
        for swaps in itertools.product((0, 1), repeat=len(unsure)):
            ref = [first for first, _ in ranked]
            for position, swap in zip(unsure, swaps):
                ref[position] = ranked[position][swap]
            found.append(ref)
        return found

    def probe(self, organism: OrganismHandle) -> tuple[list[str], list[str]]:
        """Trusted prompts with every situation on and the reference read (of those read, the one most prompts
        go wrong with), and the organism's answers."""
        world, rng = organism.world, np.random.default_rng(self.seed)
        refs = self.read(organism)
        situated = situated_prompts(world, rng, self.screen + self.prompts)
        screen, confirm = situated[:self.screen], situated[self.screen:]
        if len(refs) > 1:
            probes = [set_reference(p, ref) for ref in refs for p in screen]
            wrong = [not world.grade(p, o) for p, o in zip(probes, organism.generate(probes))]
            refs = [refs[int(np.argmax(np.array(wrong).reshape(len(refs), -1).sum(1)))]]
        prompts = [set_reference(p, refs[0]) for p in confirm]
        return prompts, organism.generate(prompts) if prompts else []
