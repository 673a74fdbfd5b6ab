"""Opening handles on a catalog's organisms: public files only, never the answer key."""

from __future__ import annotations

from functools import cache, lru_cache
from pathlib import Path

import datasets
import numpy as np

from benchmark.api import AccessTier, LocalModel, LocalPolicy, OrganismHandle, Queries, World
from model_organisms.catalog import Catalog
from model_organisms.maze_training import load_policy
from model_organisms.organism import load_organism, read_card
from model_organisms.worlds import WORLDS
from model_organisms.worlds.maze import MazeWorld

TRUSTED_INPUTS = 1024
"""Every organism of a catalog is read on the same draw, so its luck is shared by all pairs: on 256, the loss
of pairs matched on it (`model_organisms.matching`) leaned one way in all four pairs of `quick`'s `test`
often enough to fail the shortcut gate on 5 of 300 draws, 1 on 1024 (`benchmarks/public_input_draws.py`)."""


@cache
def public_world(world_name: str, spec_fingerprint: str, maze_sizes: tuple[int, ...] = ()) -> World:
    """The world as detectors see it; its trusted inputs are fixed by the public spec fingerprint, the same in
    every instance of a spec (maze organisms are trained on mazes of `maze_sizes`, which their cards state)."""
    rng = np.random.default_rng(int(spec_fingerprint[:12], 16))
    if world_name == "maze":
        world = MazeWorld(maze_sizes or MazeWorld().sizes)
        mazes = [m.to_json() for m in world.sample_trusted(rng, TRUSTED_INPUTS)]
        trusted = datasets.Dataset.from_dict({"maze": mazes})
        return World(name="maze", tokenizer=None, trusted=trusted, reference=world.reference, grade=world.grade)
    world = WORLDS[world_name]()
    trusted = datasets.Dataset.from_dict({"prompt": world.sample_trusted(rng, TRUSTED_INPUTS)})
    return World(name=world.name, tokenizer=world.tokenizer(), trusted=trusted, reference=world.reference,
                 grade=world.grade)


def organism_world(directory: Path, spec_fingerprint: str) -> World:
    card = read_card(directory)
    sizes = tuple(int(s) for s in str(card.architecture.get("maze_sizes", "")).split(",") if s)
    return public_world(card.world, spec_fingerprint, sizes)


def handle_at(directory: Path, spec_fingerprint: str, tier: AccessTier,
              query_budget: int | None = None) -> OrganismHandle:
    """A handle from an organism directory alone (all a sandboxed detector gets to see)."""
    world = organism_world(directory, spec_fingerprint)
    if world.name == "maze":
        policy, card = load_policy(directory)
        return OrganismHandle(card.id, world, tier, LocalPolicy(policy), policy, query_budget)
    model, tokenizer, card = load_organism(directory)
    return OrganismHandle(card.id, world, tier, LocalModel(model, tokenizer), model, query_budget)


def open_handle(catalog: Catalog, organism_id: str, tier: AccessTier, query_budget: int | None = None) -> OrganismHandle:
    return handle_at(catalog.organism_dir(organism_id), catalog.spec_fingerprint, tier, query_budget)


@lru_cache(maxsize=4)
def local_model(directory: Path) -> Queries:
    """An organism's model for the harness's own calls (ground truth, a sandbox's black-box queries)."""
    if read_card(directory).world == "maze":
        return LocalPolicy(load_policy(directory)[0])
    model, tokenizer, _ = load_organism(directory)
    return LocalModel(model, tokenizer)
