"""Opening handles on a catalog's organisms: public files only, never the answer key."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast

from benchmark.api import AccessDenied, AccessTier, BadInput, Maze, OrganismHandle, Queries, World
from benchmark.worlds import public_world
from model_organisms.catalog import Catalog
from model_organisms.devices import torch_device
from model_organisms.lm import (completion_logprobs, encode_examples, encode_prompts, generate, on_device,
                                readout_gradients)
from model_organisms.maze_training import load_policy
from model_organisms.organism import load_organism, read_card

class LocalModel:
    """Black-box calls answered by a model in this process."""

    def __init__(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast) -> None:
        self._model, self._tokenizer = model, tokenizer

    def generate(self, prompts: list[str], max_new_tokens: int = 12) -> list[str]:
        return generate(self._model, self._tokenizer, prompts, max_new_tokens)

    def logprobs(self, prompts: list[str], completions: list[str]) -> list[float]:
        return completion_logprobs(self._model, self._tokenizer, prompts, completions)

    def act(self, mazes: list[Maze]) -> list[list[float]]:
        raise AccessDenied("act is for maze policies; this organism is a language model")

    @torch.no_grad()
    def activations(self, prompts: list[str], completions: list[str] | None, token: int | None) -> np.ndarray:
        """See `OrganismHandle.activations`."""
        if completions is None:
            out = self._model(**on_device(encode_prompts(self._tokenizer, prompts), self._model),
                              output_hidden_states=True)
            return torch.stack([h[:, -1] for h in out.hidden_states], 1).float().cpu().numpy()
        batch = on_device(encode_examples(self._tokenizer, prompts, completions), self._model)
        answer = batch.pop("labels") != -100  # the completion's tokens and the eos
        answer &= torch.roll(answer, -1, 1)  # without the eos: the completion's tokens
        hidden = torch.stack(self._model(**batch, output_hidden_states=True).hidden_states, 1)  # (n, L+1, T, d)
        if token is None:
            weights = answer.float() / answer.sum(1, keepdim=True).clamp(min=1)
            return torch.einsum("nltd,nt->nld", hidden, weights).float().cpu().numpy()
        start, length = answer.float().argmax(1), answer.sum(1)
        at = start + (torch.full_like(length, token) if token >= 0 else length + token).clamp(0, None)
        at = torch.minimum(at, start + (length - 1).clamp(min=0))
        return hidden[torch.arange(len(prompts), device=at.device), :, at].float().cpu().numpy()

    def gradients(self, prompts: list[str], directions: np.ndarray, layer: int) -> np.ndarray:
        """See `OrganismHandle.gradients`."""
        config = self._model.config
        layer = _readout(directions, layer, config.num_hidden_layers + 1, config.hidden_size, len(prompts))
        return readout_gradients(self._model, self._tokenizer, prompts, torch.from_numpy(directions), layer).numpy()


class LocalPolicy:
    """Black-box calls answered by a maze policy in this process."""

    def __init__(self, policy: torch.nn.Module) -> None:
        self._policy = policy

    @torch.no_grad()
    def act(self, mazes: list[Maze]) -> list[list[float]]:
        if not mazes:
            return []
        obs = torch.from_numpy(np.stack([m.observation() for m in mazes]))
        return torch.softmax(self._policy(obs), -1).tolist()

    @torch.no_grad()
    def activations(self, mazes: list[Maze], completions: None, token: int | None) -> np.ndarray:
        """A policy's two fully connected layers in each maze's starting state, (mazes, 2, hidden)."""
        obs = torch.from_numpy(np.stack([m.observation() for m in mazes]))
        return torch.stack(self._policy.layers(obs)[2:], 1).numpy()

    def gradients(self, mazes: list[Maze], directions: np.ndarray, layer: int) -> np.ndarray:
        """See `OrganismHandle.gradients`: a policy's layers are its two fully connected ones."""
        layer = _readout(directions, layer, 2, self._policy.config.hidden, len(mazes))
        obs = torch.from_numpy(np.stack([m.observation() for m in mazes]))
        with torch.enable_grad():
            fc = self._policy.layers(obs)[2:]
            return torch.stack(torch.autograd.grad((fc[layer] * torch.from_numpy(directions)).sum(), fc[:layer]),
                               1).numpy()

    def generate(self, prompts: list[str], max_new_tokens: int = 12) -> list[str]:
        raise AccessDenied("generate is for language models; this organism is a maze policy (use act)")

    def logprobs(self, prompts: list[str], completions: list[str]) -> list[float]:
        raise AccessDenied("logprobs is for language models; this organism is a maze policy (use act)")


def _readout(directions: np.ndarray, layer: int, layers: int, hidden: int, n: int) -> int:
    """The read-out's layer, counted from 0, once it and its directions fit the model; else `BadInput`."""
    if not -layers <= layer < layers or layer % layers == 0 or directions.shape not in ((hidden,), (n, hidden)) \
            or not np.isfinite(directions).all():
        raise BadInput(f"a read-out is a layer from 1 to {layers - 1} (or -1) and finite directions of width {hidden}, "
                       f"one for all {n} inputs or one each")
    return layer % layers


def organism_world(directory: Path, spec_fingerprint: str) -> World:
    card = read_card(directory)
    sizes = tuple(int(s) for s in str(card.architecture.get("maze_sizes", "")).split(",") if s)
    ref = tuple(int(card.architecture[k]) for k in ("ref_fields", "ref_values") if k in card.architecture)
    return public_world(card.world, spec_fingerprint, sizes, ref)


def handle_at(directory: Path, spec_fingerprint: str, tier: AccessTier, query_budget: int | None = None,
              monitoring: bool = False, device: str = "cpu") -> OrganismHandle:
    """A handle from an organism directory alone (all a sandboxed detector gets to see), its model on `device`
    (`model_organisms.devices`)."""
    world = organism_world(directory, spec_fingerprint)
    if world.name == "maze":
        policy, card = load_policy(directory)
        return OrganismHandle(card.id, world, tier, LocalPolicy(policy), policy, query_budget, monitoring)
    model, tokenizer, card = load_organism(directory)
    model = model.to(torch_device(device, world.name))
    return OrganismHandle(card.id, world, tier, LocalModel(model, tokenizer), model, query_budget, monitoring)


def open_handle(catalog: Catalog, organism_id: str, tier: AccessTier, query_budget: int | None = None,
                monitoring: bool = False, device: str = "cpu") -> OrganismHandle:
    return handle_at(catalog.organism_dir(organism_id), catalog.spec_fingerprint, tier, query_budget, monitoring,
                     device)


@lru_cache(maxsize=4)
def local_model(directory: Path) -> Queries:
    """An organism's model for the harness's own calls (ground truth, a sandbox's black-box queries)."""
    if read_card(directory).world == "maze":
        return LocalPolicy(load_policy(directory)[0])
    model, tokenizer, _ = load_organism(directory)
    return LocalModel(model, tokenizer)
