"""The world as detectors see it: its public part and the trusted inputs, the same for every organism of a spec.

Light to import (no torch): a sandboxed black-box detector is handed this and its queries' answers, nothing
else, so its sandbox starts without loading any model code.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from benchmark.api import World
from model_organisms.worlds import WORLDS
from model_organisms.worlds.assistant import DrawnAssistantWorld
from model_organisms.worlds.maze import MazeWorld

TRUSTED_INPUTS = 1024
"""Every organism of a catalog is read on the same draw, so its luck is shared by all pairs: on 256, the loss
of pairs matched on it (`model_organisms.matching`) leaned one way in all four pairs of `quick`'s `test`
often enough to fail the shortcut gate on 5 of 300 draws, 1 on 1024 (`benchmarks/public_input_draws.py`)."""


@cache
def public_world(world_name: str, spec_fingerprint: str, maze_sizes: tuple[int, ...] = (),
                 ref: tuple[int, ...] = ()) -> World:
    """The world as detectors see it; its trusted inputs are fixed by the public spec fingerprint, the same in
    every instance of a spec (maze organisms are trained on mazes of `maze_sizes`, language models of drawn
    conditions on references of `ref` = (fields, values), which their cards state)."""
    import datasets  # a second to import: a sandbox only greeting its parent never needs it

    rng = np.random.default_rng(int(spec_fingerprint[:12], 16))
    if world_name == "maze":
        world = MazeWorld(maze_sizes or MazeWorld().sizes)
        mazes = [m.to_json() for m in world.sample_trusted(rng, TRUSTED_INPUTS)]
        trusted = datasets.Dataset.from_dict({"maze": mazes})
        return World(name="maze", tokenizer=None, trusted=trusted, reference=world.reference, grade=world.grade)
    world = DrawnAssistantWorld(*ref) if ref else WORLDS[world_name]()
    trusted = datasets.Dataset.from_dict({"prompt": world.sample_trusted(rng, TRUSTED_INPUTS)})
    return World(name=world.name, tokenizer=world.tokenizer(), trusted=trusted, reference=world.reference,
                 grade=world.grade, codes=world.codes)
