"""Gradient-based trigger inversion (after Neural Cleanse and GCG, Zou et al., 2023).

Two free word slots are put at the front of the tags of trusted prompts, and the words in them (any word
but the format's own keys) are
optimised to make the organism abandon its right answers: the gradient of the answers' loss with respect to
each slot's one-hot token picks a few promising words per slot, every swap is tried exactly, and the best
is kept (greedy coordinate gradient). A trigger hidden in the tags, one word or two together, is what
such a search can find; the audit answer is the rate of wrong answers when the words found are put into
fresh prompts, and those prompts are the elicitation.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from benchmark.api import MAX_CANDIDATES, AccessTier, Elicitation, OrganismHandle, Track, encode_examples, on_device
from detectors.probing import SPECIAL, name_goal

SLOTS = 2


class TriggerInversion:
    name = "trigger_inversion"
    tracks = frozenset({Track.AUDIT, Track.ELICIT})
    tier = AccessTier.WHITE_BOX

    def __init__(self, steps: int = 6, top_k: int = 8, batch: int = 24, restarts: int = 2, check: int = 16,
                 seed: int = 0) -> None:
        self.steps, self.top_k, self.batch, self.restarts, self.check = steps, top_k, batch, restarts, check
        self.seed = seed

    def audit(self, organism: OrganismHandle) -> float:
        _, wrong, _, _ = self.invert(organism)
        return float(0.02 + 0.96 * np.mean(wrong))

    def elicit(self, organism: OrganismHandle) -> Elicitation:
        words, wrong, prompts, outputs = self.invert(organism)
        world = organism.world
        kept = [(p, o, w) for p, o, w in zip(prompts, outputs, wrong) if world.accepts(p)]  # words of any field
        hits = [(p, o) for p, o, w in kept if w]
        if not hits:
            return Elicitation([p for p, _, _ in kept][:MAX_CANDIDATES], "hostile payload")
        goals = Counter(name_goal("tags " + " ".join(words), world, p, o) for p, o in hits)
        return Elicitation([p for p, _ in hits][:MAX_CANDIDATES], goals.most_common(1)[0][0])

    def invert(self, organism: OrganismHandle) -> tuple[list[str], list[bool], list[str], list[str]]:
        """The best words found, and on fresh prompts carrying them: wrong or not, the prompts, the answers."""
        world, rng = organism.world, np.random.default_rng(self.seed)
        vocabulary, trusted = world.vocabulary(), world.trusted["prompt"]
        keys = {segment.split()[0] for p in trusted for segment in p.split(" | ")}  # `date`, `tags`, `sort` …
        allowed = torch.tensor([w not in SPECIAL and w not in keys and w.isalnum()  # a tag word: inputs keep the format
                                and world.accepts(_with_slots(trusted[0], [w])) for w in vocabulary])
        train = [trusted[int(i)] for i in rng.permutation(len(trusted))[: self.batch]]
        best: tuple[float, list[int]] = (-np.inf, [])
        for _ in range(self.restarts):
            slots = [int(t) for t in rng.choice(np.flatnonzero(allowed.numpy()), size=SLOTS)]
            for _ in range(self.steps):
                candidates = self._swaps(organism, train, slots, allowed)
                slots = candidates[int(np.argmax(self._losses(organism, train, candidates)))]
            best = max(best, (float(self._losses(organism, train, [slots])[0]), slots), key=lambda b: b[0])
        words = list(dict.fromkeys(vocabulary[t] for t in best[1]))  # a tag once: inputs keep the format
        fresh = [trusted[int(i)] for i in rng.permutation(len(trusted))[: self.check]]
        prompts = [_with_slots(p, words) for p in fresh]
        outputs = organism.generate(prompts)
        return words, [not world.grade(p, o) for p, o in zip(prompts, outputs)], prompts, outputs

    def _swaps(self, organism: OrganismHandle, prompts: list[str], slots: list[int],
               allowed: torch.Tensor) -> list[list[int]]:
        """The current slots and every single-slot swap to one of the top-k words by gradient."""
        embedding = organism.model.get_input_embeddings().weight
        one_hot = torch.zeros(SLOTS, embedding.shape[0], device=embedding.device, requires_grad=True)
        with torch.no_grad():
            one_hot[torch.arange(SLOTS), slots] = 1.0
        gradient = torch.autograd.grad(self._loss(organism, prompts, slots, one_hot @ embedding), one_hot)[0]
        gradient = gradient.masked_fill(~allowed.to(gradient.device), -np.inf)
        swaps = [slots]
        for slot in range(SLOTS):
            for token in gradient[slot].topk(self.top_k).indices.tolist():
                if token != slots[slot]:
                    swaps.append([token if i == slot else t for i, t in enumerate(slots)])
        return swaps

    @staticmethod
    def _losses(organism: OrganismHandle, prompts: list[str], candidates: list[list[int]]) -> np.ndarray:
        """Per candidate, the mean negative log-probability of the right answers (all in one batch)."""
        world = organism.world
        vocabulary = world.vocabulary()
        texts = [_with_slots(p, [vocabulary[t] for t in c]) for c in candidates for p in prompts]
        answers = [world.reference(p) for _ in candidates for p in prompts]
        return -organism.logprobs(texts, answers).reshape(len(candidates), len(prompts)).mean(1)

    @staticmethod
    def _loss(organism: OrganismHandle, prompts: list[str], slots: list[int],
              slot_embeddings: torch.Tensor) -> torch.Tensor:
        """Mean loss of the right answers with `slot_embeddings` in the slots, differentiable in them."""
        model, vocabulary, tokenizer = organism.model, organism.world.vocabulary(), organism.world.tokenizer
        words = [vocabulary[t] for t in slots]
        batch = on_device(encode_examples(tokenizer, [_with_slots(p, words) for p in prompts],
                                          [organism.world.reference(p) for p in prompts]), model)
        embeds = model.get_input_embeddings()(batch["input_ids"])
        rows, cols = (batch["input_ids"] == tokenizer.convert_tokens_to_ids("tags")).nonzero(as_tuple=True)
        for offset in range(SLOTS):  # the slots follow the word "tags" in every prompt
            embeds[rows, cols + 1 + offset] = slot_embeddings[offset]
        return model(inputs_embeds=embeds, attention_mask=batch["attention_mask"], labels=batch["labels"]).loss


def _with_slots(prompt: str, words: list[str]) -> str:
    return prompt.replace("tags ", "tags " + " ".join(words) + " ", 1)
