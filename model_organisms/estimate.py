"""How long a build will take here: the plan's training steps times step times measured now, on this machine.

A step is timed as a build computes it (a unit's models stacked, the loss unfused, forward and backward, the
batch drawn), a few times after one to warm up; a unit is its steps times that, and the units are spread over
the workers longest first. Compiling, certificates, matching and retries are not timed, so a build takes longer
than this says (`docs/performance.md` compares the two).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from model_organisms.catalog import CatalogSpec, Unit, lm_world
from model_organisms.maze_policy import MazePolicy, MazePolicyConfig
from model_organisms.maze_training import MazeTrainingSpec, maze_world, sample_states
from model_organisms.stacked import Packed, StackedLlama, _losses, pack, sample_stacked_batch
from model_organisms.training import fresh_model


def assistant_step(spec: CatalogSpec, unit: Unit) -> Callable[[], None]:
    """One training step of a language-model unit (its models stacked, the loss unfused)."""
    world = lm_world(spec)
    tokenizer = world.tokenizer()
    stack = StackedLlama([fresh_model(spec.model, tokenizer, recipe.seed) for recipe in unit.recipes])
    rngs = [np.random.default_rng(recipe.seed) for recipe in unit.recipes]

    def step() -> None:
        batch = Packed(*pack(*sample_stacked_batch(world, tokenizer, unit.recipes, rngs, spec.training)))
        _losses(stack.params, stack.layers, stack.heads, stack.eps, stack.cos, stack.sin, batch).sum().backward()
    return step


def maze_step(spec: CatalogSpec, unit: Unit) -> Callable[[], None]:
    """One training step of a maze unit: its batch of states, then a step of each of its policies."""
    training = spec.maze or MazeTrainingSpec()
    world, rng = maze_world(training), np.random.default_rng(unit.recipes[0].seed)
    policies = [MazePolicy(MazePolicyConfig()) for _ in unit.recipes]

    def step() -> None:
        obs, actions = map(torch.from_numpy, sample_states(world, unit.recipes, rng, training))
        for policy, own in zip(policies, actions):
            F.cross_entropy(policy(obs), own).backward()
    return step


def seconds_per_step(step: Callable[[], None], samples: int = 3) -> float:
    step()  # the first step allocates
    start = time.perf_counter()
    for _ in range(samples):
        step()
    return (time.perf_counter() - start) / samples


def estimate_seconds(spec: CatalogSpec, units: list[Unit], workers: int) -> float:
    """Wall seconds to train `units` with `workers` processes, one thread each, from step times measured now."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a build worker
    try:
        per_kind: dict[tuple[str, int], float] = {}
        for unit in units:
            kind = (unit.world, len(unit.recipes))
            if kind not in per_kind:
                step = maze_step(spec, unit) if unit.world == "maze" else assistant_step(spec, unit)
                steps = (spec.maze or MazeTrainingSpec()).steps if unit.world == "maze" else spec.training.steps
                per_kind[kind] = seconds_per_step(step) * steps
    finally:
        torch.set_num_threads(threads)
    loads = [0.0] * max(1, workers)
    for seconds in sorted((per_kind[(u.world, len(u.recipes))] for u in units), reverse=True):
        loads[loads.index(min(loads))] += seconds  # the longest first, to the least loaded worker
    return max(loads)
