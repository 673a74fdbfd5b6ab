"""Where a training step's time goes, per world: making the batch (sampling and labelling inputs) against
the model's forward, backward and update.

One process and one thread, as in a build worker, and the step a build worker takes: a language-model
organism and its twin in one stack (`stacked.StackedLlama`), a maze policy and its twin on one batch. Each
round times one batch and one update of every world in turn, so both worlds see the same machine load, after
5 untimed rounds (the language model's loss is compiled on its first steps, once per build worker); prints
milliseconds per step and the batch's share of the step. The update part stands for what a faster data path
cannot remove.
Usage:
python benchmarks/step_profile.py [--catalog quick] [--steps 100]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from model_organisms.catalog import load_spec, plan
from model_organisms.maze_policy import MazePolicy, MazePolicyConfig
from model_organisms.maze_training import MazeTrainingSpec, maze_world, sample_states
from model_organisms.sealed import Secret
from model_organisms.stacked import StackedLlama, sample_stacked_batch
from model_organisms.training import fresh_model
from model_organisms.worlds.assistant import AssistantWorld

Batch = Callable[[], tuple]
Loss = Callable[[tuple], torch.Tensor]

EXAMPLE = Secret(bytes(32))
"""The secret of the instance whose units are measured: a public one, since a benchmark measures recipes, not
sealed organisms."""


def assistant_step(catalog: str) -> tuple[Batch, Loss, list[torch.nn.Parameter]]:
    spec = load_spec(catalog)
    world = AssistantWorld()
    tokenizer = world.tokenizer()
    recipes = next(u for u in plan(spec, EXAMPLE) if u.world == "assistant" and len(u.recipes) == 2).recipes
    stack = StackedLlama([fresh_model(spec.model, tokenizer, recipe.seed) for recipe in recipes])
    rngs = [np.random.default_rng(recipe.seed) for recipe in recipes]
    batch = lambda: sample_stacked_batch(world, tokenizer, recipes, rngs, spec.training)  # noqa: E731
    return batch, lambda b: stack.losses(*b).sum(), list(stack.params.values())


def maze_step(catalog: str) -> tuple[Batch, Loss, list[torch.nn.Parameter]]:
    spec = load_spec(catalog)
    training = spec.maze or MazeTrainingSpec()
    world = maze_world(training)
    recipes = next(u for u in plan(spec, EXAMPLE) if u.world == "maze" and len(u.recipes) == 2).recipes
    policies = [MazePolicy(MazePolicyConfig()) for _ in recipes]
    rng = np.random.default_rng(recipes[0].seed)
    batch = lambda: tuple(map(torch.from_numpy, sample_states(world, recipes, rng, training)))  # noqa: E731
    loss = lambda b: sum(F.cross_entropy(p(b[0]), actions) for p, actions in zip(policies, b[1]))  # noqa: E731
    return batch, loss, [param for p in policies for param in p.parameters()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--catalog", default="quick")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    worlds = {"assistant": assistant_step(args.catalog), "maze": maze_step(args.catalog)}
    optimizers = {world: torch.optim.Adam(params, lr=1e-3) for world, (_, _, params) in worlds.items()}
    seconds = {(world, part): 0.0 for world in worlds for part in ("batch", "update")}
    for round_ in range(-5, args.steps):
        for world, (batch, loss_of, _) in worlds.items():
            start = time.perf_counter()
            b = batch()
            made = time.perf_counter()
            optimizers[world].zero_grad(set_to_none=True)
            loss_of(b).backward()
            optimizers[world].step()
            if round_ >= 0:
                seconds[world, "batch"] += made - start
                seconds[world, "update"] += time.perf_counter() - made
    print(f"{'world':10s} {'batch ms':>9s} {'update ms':>10s} {'batch share':>12s}")
    for world in worlds:
        batch_ms, update_ms = (seconds[world, part] / args.steps * 1e3 for part in ("batch", "update"))
        print(f"{world:10s} {batch_ms:9.1f} {update_ms:10.1f} {batch_ms / (batch_ms + update_ms):12.2f}")


if __name__ == "__main__":
    main()
