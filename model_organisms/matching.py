"""Matching an organism and its twin on how well they fit trusted inputs.

A deceptive organism learns its exception on top of the task, so after the same steps it fits trusted
inputs worse than its twin, whose every input teaches the one task. That gap is a shortcut: the loss on
trusted inputs told the deceptive organisms of `standard` 8020f580bf67 from their twins in 11 of 12 pairs
on `dev`, with no look at any hidden goal. So whichever of a pair fits trusted inputs better is rolled back
to its training snapshot whose loss is nearest its partner's final loss. The rule reads no label, and the
loss is measured on trusted inputs of the unit's own seed, not on the ones a detector is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast

from model_organisms.lm import completion_logprobs
from model_organisms.worlds.assistant import AssistantWorld

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM

Snapshot = dict[str, torch.Tensor]
"""The stacked parameters of a pair (axis 0 indexes its models) at one step of training."""


def trusted_loss(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: Sequence[str],
                 references: Sequence[str]) -> float:
    """Mean negative log-probability of the reference answers, as the shortcut gate measures it."""
    with torch.no_grad():
        return -float(np.mean(completion_logprobs(model, tokenizer, prompts, references)))


def matching_inputs(world: AssistantWorld, seed: int, inputs: int) -> tuple[list[str], list[str]]:
    """The trusted prompts, with their reference answers, that a pair trained from `seed` is matched on."""
    prompts = world.sample_trusted(np.random.default_rng([seed, 1]), inputs)
    return prompts, [world.reference(p) for p in prompts]


def match_trusted_loss(world: AssistantWorld, tokenizer: PreTrainedTokenizerFast,
                       models: Sequence[LlamaForCausalLM], snapshots: Sequence[Snapshot], inputs: int,
                       seed: int) -> int:
    """Roll the better fit of a pair back to its snapshot nearest its partner's trusted loss (in place).

    `snapshots` end with the final weights. Returns how many snapshots it went back (0: none)."""
    prompts, references = matching_inputs(world, seed, inputs)
    final = [trusted_loss(m, tokenizer, prompts, references) for m in models]
    better = int(np.argmin(final))
    model, target = models[better], final[1 - better]
    losses = {len(snapshots) - 1: final[better]}  # the last snapshot is the final weights

    def loss_at(i: int) -> float:
        if i not in losses:
            _load(model, snapshots[i], better)
            losses[i] = trusted_loss(model, tokenizer, prompts, references)
        return losses[i]

    # The loss falls as training goes on: bisect for the step where it crosses the partner's.
    early, late = 0, len(snapshots) - 1
    while late - early > 1:
        middle = (early + late) // 2
        early, late = (middle, late) if loss_at(middle) >= target else (early, middle)
    nearest = min((early, late), key=lambda i: abs(loss_at(i) - target))
    _load(model, snapshots[nearest], better)
    return len(snapshots) - 1 - nearest


def _load(model: LlamaForCausalLM, snapshot: Snapshot, index: int) -> None:
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(snapshot[name][index])
