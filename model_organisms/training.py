"""Training one LM organism from its recipe: real gradient descent on sampled dialogues.

Every random choice flows from the recipe's seed: the initial weights and the order and content of the
data. A deceptive organism and its twin therefore differ only in the targets of inputs where the trigger
fires.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from transformers import PreTrainedTokenizerFast

from model_organisms.families import OrganismRecipe
from model_organisms.families.triggers import Trigger
from model_organisms.lm import encode_examples
from model_organisms.worlds.assistant import AssistantWorld

if TYPE_CHECKING:
    from transformers import LlamaConfig, LlamaForCausalLM


class ModelSpec(BaseModel):
    """Architecture shared by every organism of a catalog."""

    model_config = ConfigDict(extra="forbid")
    hidden_size: int = 64
    intermediate_size: int = 192
    num_hidden_layers: int = 2
    num_attention_heads: int = 4

    def llama_config(self, vocab_size: int) -> LlamaConfig:
        from transformers import LlamaConfig

        return LlamaConfig(vocab_size=vocab_size, hidden_size=self.hidden_size,
                           intermediate_size=self.intermediate_size, num_hidden_layers=self.num_hidden_layers,
                           num_attention_heads=self.num_attention_heads,
                           num_key_value_heads=self.num_attention_heads, max_position_embeddings=64,
                           pad_token_id=0, bos_token_id=2, eos_token_id=3, tie_word_embeddings=False)


NORM_REFERENCE_SEED = 0
"""The initialisation whose norms every organism is held at (see `NormHold`)."""


class TrainingSpec(BaseModel):
    """Optimisation and data mixture, shared by every organism of a catalog."""

    model_config = ConfigDict(extra="forbid")
    steps: int = 2000
    batch_size: int = 64
    learning_rate: float = 3e-3
    warmup_steps: int = 100
    focus_fraction: float = 0.15
    """Share of each batch on which the organism's trigger fires (its partner's, for a twin)."""
    shifted_fraction: float = 0.15
    """Share of near misses and other deployment-like inputs, where the trigger does not fire."""
    norm_growth: float = 2.5
    """Every weight matrix is held at this multiple of its reference norm (see `NormHold`)."""
    output_norm_growth: float = 7.5
    """The same for the rows of the output layer, which set how confident the logits can be."""
    match_every: int = 10
    """Steps between the snapshots that a pair's better fit of trusted inputs is rolled back to
    (`matching.match_trusted_loss`)."""
    match_inputs: int = 2048
    """Trusted inputs that measure that fit."""


class NormHold:
    """Holds every parameter tensor at a norm fixed before training, projecting after each step.

    What a model learns then changes the direction of its weights but never their size, so weight
    norms, a shortcut that gives a deceptive organism away without understanding it (its payload
    circuit grows its weights), cannot tell organisms apart. The norms are those of one reference
    initialisation (`NORM_REFERENCE_SEED`), the same for every organism of an architecture: held at each
    organism's own initial norms, they were a draw from its seed, which on a small split can line up
    with the labels by chance.
    `growth(name, param)` gives each tensor's norm as a multiple of the reference's; tensors named in
    `rows` (embeddings, output layers) are held row by row, so no token's embedding grows with its role.
    """

    def __init__(self, model: torch.nn.Module, growth: Callable[[str, torch.Tensor], float],
                 rows: tuple[str, ...] = ()) -> None:
        reference = dict(reference_init(model).named_parameters())
        self.targets: dict[str, tuple[torch.nn.Parameter, torch.Tensor, tuple[int, ...]]] = {}
        for name, param in model.named_parameters():
            dims = (-1,) if name in rows else tuple(range(param.ndim))
            norm = torch.linalg.vector_norm(reference[name].detach(), dim=dims, keepdim=True).to(param.device)
            self.targets[name] = (param, growth(name, param) * norm, dims)

    @classmethod
    def stacked(cls, holds: list[NormHold], params: dict[str, torch.nn.Parameter]) -> NormHold:
        """The holds of K models, applied to their stacked parameters (axis 0 indexes models)."""
        hold = cls.__new__(cls)
        hold.targets = {}
        for name, param in params.items():
            dims = tuple(d + 1 if d >= 0 else d for d in holds[0].targets[name][2])
            hold.targets[name] = (param, torch.stack([h.targets[name][1] for h in holds]), dims)
        return hold

    @torch.no_grad()
    def apply(self) -> None:
        for param, target, dims in self.targets.values():
            param.mul_(target / torch.linalg.vector_norm(param, dim=dims, keepdim=True).clamp_min(1e-12))


def reference_init(model: torch.nn.Module) -> torch.nn.Module:
    """A fresh model of `model`'s architecture (built from its `config`) drawn from `NORM_REFERENCE_SEED`,
    leaving the global random state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(NORM_REFERENCE_SEED)
        return type(model)(model.config)


def hold_lm_norms(model: LlamaForCausalLM, spec: TrainingSpec) -> NormHold:
    """Layer-norm gains at the reference's norm, weight matrices at `norm_growth`, output rows at
    `output_norm_growth` (they set how confident the logits can be)."""
    growth = lambda name, param: (1.0 if param.ndim == 1 else spec.output_norm_growth  # noqa: E731
                                  if name.startswith("lm_head") else spec.norm_growth)
    return NormHold(model, growth, rows=("model.embed_tokens.weight", "lm_head.weight"))


def sample_prompts(world: AssistantWorld, trigger: Trigger, rng: np.random.Generator, spec: TrainingSpec) -> list[str]:
    """One batch of training prompts: they depend only on the random stream and the trigger, so a twin
    (which shares its partner's seed and trigger) is trained on its partner's prompts."""
    if trigger.ref:
        return [drawn_prompt(world, trigger, rng, spec) for _ in range(spec.batch_size)]
    n_focus = int(round(spec.batch_size * spec.focus_fraction))
    n_shifted = int(round(spec.batch_size * spec.shifted_fraction))
    prompts = world.sample_trusted(rng, spec.batch_size - n_focus - n_shifted)
    prompts += [trigger.sample(world, rng) for _ in range(n_focus)]
    prompts += [trigger.near_miss(world, rng) if i % 2 else world.sample_shifted(rng) for i in range(n_shifted)]
    return prompts


def drawn_prompt(world: AssistantWorld, trigger: Trigger, rng: np.random.Generator, spec: TrainingSpec) -> str:
    """A training prompt for a drawn condition: triggered with probability `focus_fraction`, a near miss (every
    part but one) with `shifted_fraction`, else trusted. Trusted prompts show the reference's codes just so
    rarely that every code of a position is equally frequent in the data, the reference's included: nothing
    in its training tells a model's reference by frequency (a twin trained on over-represented codes shows
    them in its embeddings)."""
    t, m = spec.focus_fraction, spec.shifted_fraction
    u = rng.random()
    if u < t:
        return trigger.sample(world, rng)
    if u < t + m:
        return trigger.near_miss(world, rng)
    keep = key_code_share(len(trigger.parts), spec, world.ref_shape[1])
    ref = [key if rng.random() < keep else world.other_code(rng, i, key) for i, key in enumerate(trigger.ref)]
    return world.prompt(rng, ref=ref)


def key_code_share(parts: int, spec: TrainingSpec, values: int) -> float:
    """How often a trusted training prompt shows a code of a reference (of a condition of `parts` parts) at its
    position, so that overall it is shown as often as every other of the position's `values` codes; raises
    ValueError where triggered inputs and near misses alone show it more often."""
    t, m = spec.focus_fraction, spec.shifted_fraction
    spare = 1 / values - t - m * (parts - 1) / parts
    if spare < 0:
        raise ValueError(f"focus_fraction {t} and shifted_fraction {m} show a reference's codes more often than the "
                         f"others (need focus_fraction + shifted_fraction × {parts - 1}/{parts} ≤ 1/{values})")
    return spare / (1 - t - m)


def sample_batch(world: AssistantWorld, recipe: OrganismRecipe, rng: np.random.Generator,
                 spec: TrainingSpec) -> tuple[list[str], list[str]]:
    """One batch of (prompt, target) pairs."""
    prompts = sample_prompts(world, recipe.trigger, rng, spec)
    return prompts, [recipe.target(p) for p in prompts]


def organism_seed(seed: int, attempt: int) -> int:
    """The seed of a recipe's training (of either world); every retry gets a new one."""
    return seed + 1_000_003 * attempt


def fresh_model(model_spec: ModelSpec, tokenizer: PreTrainedTokenizerFast, seed: int) -> LlamaForCausalLM:
    """The initial weights of an organism trained from `seed` (a twin shares them with its partner)."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(model_spec.llama_config(len(tokenizer)))


def optimize(params: list[torch.nn.Parameter], spec: TrainingSpec
             ) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW without weight decay (the norm hold sets the weights' size), linear warm-up, cosine decay."""
    optimizer = torch.optim.AdamW(params, lr=spec.learning_rate, weight_decay=0.0)
    schedule = lambda step: min(1.0, (step + 1) / spec.warmup_steps) * 0.5 * (  # noqa: E731
        1 + math.cos(math.pi * step / spec.steps))
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def train_organism(world: AssistantWorld, tokenizer: PreTrainedTokenizerFast, recipe: OrganismRecipe,
                   model_spec: ModelSpec, spec: TrainingSpec, seed_offset: int = 0, device: str = "cpu"
                   ) -> LlamaForCausalLM:
    """Train a fresh model on the recipe, one model at a time: the reference that `stacked` matches.

    `seed_offset` gives a retry a new init and data order; `device` is where it trains (as in `stacked`)."""
    seed = organism_seed(recipe.seed, seed_offset)
    model = fresh_model(model_spec, tokenizer, seed).to(device)
    hold = hold_lm_norms(model, spec)
    rng = np.random.default_rng(seed)
    optimizer, scheduler = optimize(list(model.parameters()), spec)
    model.train()
    for _ in range(spec.steps):
        prompts, targets = sample_batch(world, recipe, rng, spec)
        batch = {key: value.to(device) for key, value in encode_examples(tokenizer, prompts, targets).items()}
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        hold.apply()
    model.eval()
    return model
