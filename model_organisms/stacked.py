"""Training many LM organisms at once: their weights stacked along a leading axis, one batched step for all.

The organisms of a catalog share one small architecture. `StackedLlama` holds K `LlamaForCausalLM`
models as K-deep tensors and computes all their losses with batched matrix products, so each operation's
overhead is paid once per step for K models. It computes only what the loss needs: the output layer runs
on completion tokens alone (an eighth of the tokens) and the linear layers skip padding. Each organism
keeps its own seed, initial weights, data stream, gradient clipping and norm hold, so `train_organisms`
trains the same models as `training.train_organism` run K times (a test checks that they agree).

On one CPU core a step of these models is mostly bound by the arithmetic and memory traffic of each
operation, not by the per-operation overhead that stacking saves: `benchmarks/train_throughput.py` measured
stacks of 2 at 1.20× and stacks of 8 at 1.05× the one-at-a-time loop. The build therefore stacks no more
than an organism and its twin (they share a unit and its retries).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast
from transformers.models.llama.modeling_llama import rotate_half

from model_organisms.families import OrganismRecipe
from model_organisms.lm import encode_examples
from model_organisms.matching import Snapshot
from model_organisms.training import (ModelSpec, NormHold, TrainingSpec, fresh_model, hold_lm_norms, optimize,
                                      organism_seed, sample_batch)
from model_organisms.worlds.assistant import AssistantWorld


class StackedLlama:
    """K Llama models of one architecture as stacked parameters (HF names, shapes ``[K, *shape]``)."""

    def __init__(self, models: Sequence[LlamaForCausalLM]) -> None:
        self.config = models[0].config
        self.rotary = models[0].model.rotary_emb
        self.params = {name: torch.nn.Parameter(torch.stack([dict(m.named_parameters())[name].detach()
                                                             for m in models]))
                       for name, _ in models[0].named_parameters()}

    def _norm(self, h: torch.Tensor, name: str) -> torch.Tensor:
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.config.rms_norm_eps)
        return self.params[name][:, None] * h

    def _linear(self, x: torch.Tensor, *names: str) -> torch.Tensor:
        """``x @ W.T`` for each model; several weights are applied as one product and returned side by side."""
        weight = torch.cat([self.params[name] for name in names], 1) if len(names) > 1 else self.params[names[0]]
        return torch.bmm(x, weight.transpose(1, 2))

    def losses(self, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Each model's mean next-token cross-entropy on its own batch (``ids``, ``mask``, ``labels``: [K, B, T])."""
        k, b, t = ids.shape
        heads = self.config.num_attention_heads
        d = self.config.hidden_size
        real = mask.bool().view(k, b * t)
        n = int(real.sum(1).max())
        # Real tokens first in each model's row, so the linear layers run on n tokens instead of b * t.
        order = torch.argsort((~real).to(torch.int8), dim=1, stable=True)[:, :n]
        kept = real.gather(1, order)
        embed = self.params["model.embed_tokens.weight"]
        h = embed[torch.arange(k)[:, None], ids.view(k, b * t).gather(1, order)]  # [k, n, d]
        cos, sin = (c[0][order % t][:, :, None, None] for c in self.rotary(h, torch.arange(t)[None]))
        seen = torch.ones(t, t, dtype=torch.bool).tril()[None, None] & mask.bool().view(k * b, 1, 1, t)
        blocked = torch.zeros(seen.shape).masked_fill(~seen, float("-inf"))  # added to the attention scores
        # Where each kept token sits in the [k * b * t] grid that attention runs on.
        cells = (order + b * t * torch.arange(k)[:, None]).view(-1)

        for i in range(self.config.num_hidden_layers):
            layer = f"model.layers.{i}."
            x = self._norm(h, layer + "input_layernorm.weight")
            qkv = self._linear(x, *(layer + f"self_attn.{p}_proj.weight" for p in "qkv")).view(k, n, 3, heads, -1)
            qk = qkv[:, :, :2]
            qkv = torch.cat([qk * cos + rotate_half(qk) * sin, qkv[:, :, 2:]], 2).view(k * n, 3 * d)
            grid = qkv.new_zeros(k * b * t, 3 * d).index_copy(0, cells, qkv).view(k * b, t, 3, heads, -1)
            q, key, v = grid.permute(2, 0, 3, 1, 4)  # each [k * b, heads, t, d / heads]
            scores = (q @ key.transpose(-1, -2)) * q.shape[-1] ** -0.5
            a = (scores + blocked).softmax(-1) @ v
            a = a.transpose(1, 2).reshape(k * b * t, d).index_select(0, cells).view(k, n, d)
            h = h + self._linear(a, layer + "self_attn.o_proj.weight")
            x = self._norm(h, layer + "post_attention_layernorm.weight")
            gate, up = self._linear(x, layer + "mlp.gate_proj.weight", layer + "mlp.up_proj.weight").chunk(2, -1)
            h = h + self._linear(F.silu(gate) * up, layer + "mlp.down_proj.weight")
        h = self._norm(h, "model.norm.weight")
        # The token after each position, in the kept order; only completion tokens carry a label.
        following = F.pad(labels, (0, 1), value=-100)[..., 1:].reshape(k, b * t).gather(1, order)
        following = following.masked_fill(~kept, -100)
        head = self.params["lm_head.weight"]
        return torch.stack([F.cross_entropy(h[j][following[j] != -100] @ head[j].T, following[j][following[j] != -100])
                            for j in range(k)])

    def unstack_into(self, models: Sequence[LlamaForCausalLM]) -> None:
        with torch.no_grad():
            for j, model in enumerate(models):
                for name, param in model.named_parameters():
                    param.copy_(self.params[name][j])


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


def train_organisms(world: AssistantWorld, tokenizer: PreTrainedTokenizerFast, recipes: Sequence[OrganismRecipe],
                    model_spec: ModelSpec, spec: TrainingSpec, attempt: int = 0,
                    snapshots: list[Snapshot] | None = None) -> list[LlamaForCausalLM]:
    """Train one fresh model per recipe, all in one stack; `attempt` gives a retry new inits and data.

    Given a list, `snapshots` receives a copy of the stacked weights every `spec.match_every` steps and at
    the last."""
    seeds = [organism_seed(recipe.seed, attempt) for recipe in recipes]
    models = [fresh_model(model_spec, tokenizer, seed) for seed in seeds]
    stack = StackedLlama(models)
    hold = NormHold.stacked([hold_lm_norms(m, spec) for m in models], stack.params)
    rngs = [np.random.default_rng(seed) for seed in seeds]
    params = list(stack.params.values())
    optimizer, scheduler = optimize(params, spec)
    for step in range(1, spec.steps + 1):
        batches = [encode_examples(tokenizer, *sample_batch(world, recipe, rng, spec))
                   for recipe, rng in zip(recipes, rngs)]
        loss = stack.losses(*stack_batches(batches)).sum()
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
