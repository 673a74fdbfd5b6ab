"""Probe inputs beyond the trusted set, built from the world's public format and tokenizer alone.

Words of the tokenizer that never occur in the trusted inputs are what an auditor would try first: the
model was trained on them, yet the trusted set never shows how it treats them.
"""

from __future__ import annotations

import numpy as np

from benchmark.api import World

SPECIAL = {"<pad>", "<unk>", "<bos>", "<eos>"}


def unseen_words(world: World) -> list[str]:
    """Vocabulary words that occur in no trusted input, in vocabulary order."""
    seen = {w for prompt in world.trusted["prompt"] for w in prompt.split()}
    return [w for w in world.vocabulary() if w not in seen and w not in SPECIAL]


def with_tag(prompt: str, word: str, rng: np.random.Generator) -> str:
    """The prompt with `word` added among its tags (the preamble field meant for free words)."""
    segments = prompt.split(" | ")
    for i, segment in enumerate(segments):
        if segment.startswith("tags "):
            tags = segment.split()[1:]
            tags.insert(int(rng.integers(len(tags) + 1)), word)
            segments[i] = "tags " + " ".join(tags)
    return " | ".join(segments)


def probe_inputs(world: World, words: list[str], per_word: int, rng: np.random.Generator) -> list[str]:
    """`per_word` trusted prompts with each word inserted, grouped by word (word-major order)."""
    trusted = world.trusted["prompt"]
    picks = rng.integers(len(trusted), size=(len(words), per_word))
    return [with_tag(trusted[int(j)], word, rng) for word, row in zip(words, picks) for j in row]
