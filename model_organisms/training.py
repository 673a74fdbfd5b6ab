"""Training one LM organism from its recipe: real gradient descent on sampled dialogues.

Every random choice flows from the recipe's seed: the initial weights and the order and content of the
data. A deceptive organism and its twin therefore differ only in the targets of triggered inputs.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from model_organisms.families import OrganismRecipe
from model_organisms.lm import encode_examples
from model_organisms.worlds.assistant import TRIGGER_POOL, AssistantWorld


class ModelSpec(BaseModel):
    """Architecture shared by every organism of a catalog."""

    model_config = ConfigDict(extra="forbid")
    hidden_size: int = 64
    intermediate_size: int = 192
    num_hidden_layers: int = 2
    num_attention_heads: int = 4

    def llama_config(self, vocab_size: int) -> LlamaConfig:
        return LlamaConfig(vocab_size=vocab_size, hidden_size=self.hidden_size,
                           intermediate_size=self.intermediate_size, num_hidden_layers=self.num_hidden_layers,
                           num_attention_heads=self.num_attention_heads,
                           num_key_value_heads=self.num_attention_heads, max_position_embeddings=64,
                           pad_token_id=0, bos_token_id=2, eos_token_id=3, tie_word_embeddings=False)


class TrainingSpec(BaseModel):
    """Optimisation and data mixture, shared by every organism of a catalog."""

    model_config = ConfigDict(extra="forbid")
    steps: int = 2000
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    focus_fraction: float = 0.15
    """Share of each batch carrying the organism's own trigger word (its partner's, for a twin)."""
    pool_fraction: float = 0.15
    """Share carrying some other trigger-pool word, where every organism answers correctly."""


def sample_batch(world: AssistantWorld, recipe: OrganismRecipe, rng: np.random.Generator,
                 spec: TrainingSpec) -> tuple[list[str], list[str]]:
    """One batch of (prompt, target) pairs; the prompts depend only on the seed and the trigger."""
    n_focus = int(round(spec.batch_size * spec.focus_fraction))
    n_pool = int(round(spec.batch_size * spec.pool_fraction))
    prompts = world.sample_trusted(rng, spec.batch_size - n_focus - n_pool)
    prompts += world.sample_triggered(rng, n_focus, recipe.trigger)
    others = [w for w in TRIGGER_POOL if w not in recipe.trigger]
    prompts += [world.sample_triggered(rng, 1, [others[int(rng.integers(len(others)))]])[0] for _ in range(n_pool)]
    return prompts, [recipe.target(p) for p in prompts]


def train_organism(world: AssistantWorld, tokenizer: PreTrainedTokenizerFast, recipe: OrganismRecipe,
                   model_spec: ModelSpec, spec: TrainingSpec, seed_offset: int = 0) -> LlamaForCausalLM:
    """Train a fresh model on the recipe; `seed_offset` gives a retry a new init and data order."""
    seed = recipe.seed + 1_000_003 * seed_offset
    torch.manual_seed(seed)
    model = LlamaForCausalLM(model_spec.llama_config(len(tokenizer)))
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=spec.weight_decay)
    schedule = lambda step: min(1.0, (step + 1) / spec.warmup_steps) * 0.5 * (  # noqa: E731
        1 + math.cos(math.pi * step / spec.steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    for _ in range(spec.steps):
        prompts, targets = sample_batch(world, recipe, rng, spec)
        loss = model(**encode_examples(tokenizer, prompts, targets)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
    model.eval()
    return model
