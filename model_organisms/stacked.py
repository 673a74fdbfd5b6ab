"""Training many LM organisms at once: their weights stacked along a leading axis, one batched step for all.

The organisms of a catalog share one small architecture. `StackedLlama` holds K `LlamaForCausalLM`
models as K-deep tensors and computes all their losses with batched matrix products, so each operation's
overhead is paid once per step for K models. It computes only what the loss needs: the output layer runs
on completion tokens alone (an eighth of the tokens) and the linear layers skip padding. Each organism
keeps its own seed, initial weights, data stream, gradient clipping and norm hold, so `train_organisms`
trains the same models as `training.train_organism` run K times, up to float rounding (a test checks that
they agree).

On one CPU core a step of these models is bound by the arithmetic of its matrix products and the memory
traffic of its many small element-wise operations, not by the per-operation overhead that stacking saves:
run one by one, stacks of 2 were 1.06-1.20x and stacks of 8 1.01-1.14x the one-at-a-time loop. Compiling
the loss (`torch.compile`, which fuses the element-wise operations) makes a step about 1.4x faster
(`benchmarks/train_throughput.py`). On the CPU a build stacks no more than an organism and its twin (they share a
unit and its retries); on a GPU, whose many cores run a small model's operations mostly idle, it stacks as many
units as the device's memory holds (`training_bytes`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast
from transformers.models.llama.modeling_llama import rotate_half

from model_organisms.families import OrganismRecipe
from model_organisms.families.triggers import Trigger
from model_organisms.lm import encode_examples
from model_organisms.matching import Snapshot
from model_organisms.training import (ModelSpec, NormHold, TrainingSpec, fresh_model, hold_lm_norms, optimize,
                                      organism_seed, sample_prompts)
from model_organisms.worlds.assistant import AssistantWorld


class StackedLlama:
    """K Llama models of one architecture as stacked parameters (HF names, shapes ``[K, *shape]``)."""

    def __init__(self, models: Sequence[LlamaForCausalLM]) -> None:
        config = models[0].config
        self.layers, self.heads, self.eps = config.num_hidden_layers, config.num_attention_heads, config.rms_norm_eps
        positions = torch.arange(config.max_position_embeddings)[None]
        self.cos, self.sin = (c[0].to(models[0].device)  # [position, d / heads]
                              for c in models[0].model.rotary_emb(torch.zeros(1), positions))
        self.params = {name: torch.nn.Parameter(torch.stack([dict(m.named_parameters())[name].detach()
                                                             for m in models]))
                       for name, _ in models[0].named_parameters()}

    def losses(self, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Each model's mean next-token cross-entropy on its own batch (``ids``, ``mask``, ``labels``: [K, B, T])."""
        global _compiled_losses
        batch = Packed(*(x.to(self.cos.device) for x in pack(ids, mask, labels)))
        for field, dims in VARYING.items():
            for dim in dims:
                torch._dynamo.mark_dynamic(getattr(batch, field), dim)
        args = (self.params, self.layers, self.heads, self.eps, self.cos, self.sin, batch)
        try:
            return _compiled_losses(*args)
        except torch._dynamo.exc.BackendCompilerFailed as e:  # e.g. no C++ compiler: the same losses, unfused
            warnings.warn(f"dab trains without torch.compile, about 1.4x slower: {str(e).splitlines()[0]}")
            _compiled_losses = _losses
            return _losses(*args)

    def unstack_into(self, models: Sequence[LlamaForCausalLM]) -> None:
        with torch.no_grad():
            for j, model in enumerate(models):
                for name, param in model.named_parameters():
                    param.copy_(self.params[name][j])


VARYING = {"tokens": (1,), "positions": (1,), "cells": (0,), "blocked": (2, 3), "learned": (1,), "targets": (1,)}
"""The axes of the `Packed` fields whose size changes from batch to batch (token counts, the dialogue length).

Marked, they let the first batch compile the loss for any batch. Unmarked, it was compiled for the first
batch's sizes, then again for any at the second: a pair's first steps took 96 s instead of 59 s on a 2-core
EPYC (`benchmarks/compile_cost.py`), for the same weights bit for bit."""


class Packed(NamedTuple):
    """A stacked batch laid out for `_losses`: each model's real tokens first in its row, so the linear
    layers run on n tokens instead of b * t, and the output layer on the m tokens whose next token is
    learned (completion tokens, an eighth of them)."""

    tokens: torch.Tensor
    """[K, n] ids."""
    positions: torch.Tensor
    """[K, n] positions in their dialogue."""
    cells: torch.Tensor
    """[K * n] where each sits in the [K * B * T] grid that attention runs on."""
    blocked: torch.Tensor
    """[K * B, 1, T, T] the attention mask, added to the scores of that grid."""
    learned: torch.Tensor
    """[K, m] which of the n tokens have their next token learned."""
    targets: torch.Tensor
    """[K, m] that next token; -100 where a model has fewer than m."""


def pack(ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> Packed:
    """Lay out a stacked batch (``ids``, ``mask``, ``labels``: [K, B, T], right-padded) for `_losses`."""
    k, b, t = ids.shape
    real = mask.bool().view(k, b * t)
    order = _first(real)
    following = F.pad(labels, (0, 1), value=-100)[..., 1:].reshape(k, b * t).gather(1, order)
    following = following.masked_fill(~real.gather(1, order), -100)
    learned = _first(following != -100)
    seen = torch.ones(t, t, dtype=torch.bool).tril()[None, None] & mask.bool().view(k * b, 1, 1, t)
    return Packed(tokens=ids.view(k, b * t).gather(1, order), positions=order % t,
                  cells=(order + b * t * torch.arange(k)[:, None]).view(-1),
                  blocked=torch.zeros(seen.shape).masked_fill(~seen, float("-inf")),
                  learned=learned, targets=following.gather(1, learned))


def _first(chosen: torch.Tensor) -> torch.Tensor:
    """Per row of a [K, N] mask, the indices of the chosen entries first (in order), cut to the most any row has."""
    return torch.argsort((~chosen).to(torch.int8), dim=1, stable=True)[:, :int(chosen.sum(1).max())]


def _losses(params: dict[str, torch.Tensor], layers: int, heads: int, eps: float, cos: torch.Tensor,
            sin: torch.Tensor, batch: Packed) -> torch.Tensor:
    """The stacked forward pass and each model's mean loss."""
    k, n = batch.tokens.shape
    kb, _, t, _ = batch.blocked.shape
    d = params["model.embed_tokens.weight"].shape[-1]

    def norm(h: torch.Tensor, name: str) -> torch.Tensor:
        return params[name][:, None] * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps))

    def linear(x: torch.Tensor, *names: str) -> torch.Tensor:
        """``x @ W.T`` for each model; several weights are applied as one product and returned side by side."""
        return torch.bmm(x, torch.cat([params[name] for name in names], 1).transpose(1, 2))

    models = torch.arange(k, device=batch.tokens.device)[:, None]
    h = params["model.embed_tokens.weight"][models, batch.tokens]  # [k, n, d]
    cos, sin = cos[batch.positions][:, :, None, None], sin[batch.positions][:, :, None, None]
    for i in range(layers):
        layer = f"model.layers.{i}."
        x = norm(h, layer + "input_layernorm.weight")
        qkv = linear(x, *(layer + f"self_attn.{p}_proj.weight" for p in "qkv")).view(k, n, 3, heads, -1)
        qk = qkv[:, :, :2]
        qkv = torch.cat([qk * cos + rotate_half(qk) * sin, qkv[:, :, 2:]], 2).view(k * n, 3 * d)
        grid = qkv.new_zeros(kb * t, 3 * d).index_copy(0, batch.cells, qkv).view(kb, t, 3, heads, -1)
        q, key, v = grid.permute(2, 0, 3, 1, 4)  # each [k * b, heads, t, d / heads]
        a = ((q @ key.transpose(-1, -2)) * q.shape[-1] ** -0.5 + batch.blocked).softmax(-1) @ v
        a = a.transpose(1, 2).reshape(kb * t, d).index_select(0, batch.cells).view(k, n, d)
        h = h + linear(a, layer + "self_attn.o_proj.weight")
        x = norm(h, layer + "post_attention_layernorm.weight")
        gate, up = linear(x, layer + "mlp.gate_proj.weight", layer + "mlp.up_proj.weight").chunk(2, -1)
        h = h + linear(F.silu(gate) * up, layer + "mlp.down_proj.weight")
    h = norm(h.gather(1, batch.learned[..., None].expand(-1, -1, d)), "model.norm.weight")
    losses = F.cross_entropy(linear(h, "lm_head.weight").flatten(0, 1), batch.targets.flatten(), reduction="none")
    return losses.view(k, -1).sum(1) / (batch.targets != -100).sum(1)


COMPILE = os.environ.get("DAB_COMPILE", "1") != "0"
"""`DAB_COMPILE=0` trains unfused, for a process that trains too little to earn its compiling back (the test
suite's small catalog on an empty compiled-code cache)."""
_compiled_losses = torch.compile(_losses, fullgraph=True) if COMPILE else _losses
"""`_losses` with its many small element-wise operations fused into a few loops: a 1.4x faster step on one
core (`benchmarks/train_throughput.py`). It is compiled once for each number of models in a stack, for any
batch (`VARYING`)."""


def training_bytes(model_spec: ModelSpec, spec: TrainingSpec, vocab_size: int) -> int:
    """An upper estimate of the device memory one model of a stack takes as it trains, twice what its tensors need.

    Its weights (float32, counted on a model without storage) four times over (with gradients and Adam's two
    moments) and once per snapshot kept for matching; and what a step keeps for its backward pass, as if every one of
    a batch's dialogues filled the context: per token and layer about 14 hidden-sized and 4 intermediate-sized vectors
    and three rows of attention scores per head, and the output layer's logits and their gradient."""
    d, i, layers, heads = (model_spec.hidden_size, model_spec.intermediate_size, model_spec.num_hidden_layers,
                           model_spec.num_attention_heads)
    config = model_spec.llama_config(vocab_size)
    with torch.device("meta"):
        weights = sum(p.numel() for p in LlamaForCausalLM(config).parameters())
    context = config.max_position_embeddings
    snapshots = spec.steps // spec.match_every + 1
    activations = spec.batch_size * context * (layers * (14 * d + 4 * i + 3 * heads * context) + 2 * vocab_size)
    return 2 * 4 * ((4 + snapshots) * weights + activations)


def clip_each(params: Sequence[torch.Tensor], max_norm: float) -> None:
    """`clip_grad_norm_` for each model of a stack on its own (axis 0 indexes models)."""
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *[1] * (g.ndim - 1)))


def stack_batches(batches: Sequence[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad K encoded batches to one width and stack them: ids, mask, labels, each [K, B, T]."""
    width = max(batch["input_ids"].shape[1] for batch in batches)
    stacked = [torch.stack([F.pad(batch[key], (0, width - batch[key].shape[1]), value=fill) for batch in batches])
               for key, fill in (("input_ids", 0), ("attention_mask", 0), ("labels", -100))]
    return stacked[0], stacked[1], stacked[2]


def sample_stacked_batch(world: AssistantWorld, tokenizer: PreTrainedTokenizerFast, recipes: Sequence[OrganismRecipe],
                         rngs: Sequence[np.random.Generator], spec: TrainingSpec
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One training batch per recipe, each from its own random stream, stacked (`stack_batches`).

    Recipes of one seed and trigger (an organism and its twin) get the same prompts, so they are drawn
    once, from the first one's stream."""
    drawn: dict[tuple[int, Trigger], list[str]] = {}
    batches = []
    for recipe, rng in zip(recipes, rngs):
        key = (recipe.seed, recipe.trigger)
        if key not in drawn:
            drawn[key] = sample_prompts(world, recipe.trigger, rng, spec)
        prompts = drawn[key]
        batches.append(encode_examples(tokenizer, prompts, [recipe.target(p) for p in prompts]))
    return stack_batches(batches)


def train_organisms(world: AssistantWorld, tokenizer: PreTrainedTokenizerFast, recipes: Sequence[OrganismRecipe],
                    model_spec: ModelSpec, spec: TrainingSpec, attempt: int = 0,
                    snapshots: list[Snapshot] | None = None, device: str = "cpu") -> list[LlamaForCausalLM]:
    """Train one fresh model per recipe, all in one stack; `attempt` gives a retry new inits and data.

    Given a list, `snapshots` receives a copy of the stacked weights every `spec.match_every` steps and at
    the last. `device` is where they train (a CUDA device with `dab build --device auto`)."""
    seeds = [organism_seed(recipe.seed, attempt) for recipe in recipes]
    models = [fresh_model(model_spec, tokenizer, seed).to(device) for seed in seeds]
    stack = StackedLlama(models)
    hold = NormHold.stacked([hold_lm_norms(m, spec) for m in models], stack.params)
    rngs = [np.random.default_rng(seed) for seed in seeds]
    params = list(stack.params.values())
    optimizer, scheduler = optimize(params, spec)
    for step in range(1, spec.steps + 1):
        loss = stack.losses(*sample_stacked_batch(world, tokenizer, recipes, rngs, spec)).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_each(params, 1.0)
        optimizer.step()
        scheduler.step()
        hold.apply()
        if snapshots is not None and (step % spec.match_every == 0 or step == spec.steps):
            snapshots.append({name: param.detach().clone() for name, param in stack.params.items()})
    stack.unstack_into(models)
    for model in models:
        model.eval()
    return models
