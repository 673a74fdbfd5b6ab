"""What compiling the stacked loss costs a build: its first worker compiles, the others read the disk cache.

Each build worker compiles the stacked loss (`stacked._compiled_losses`) once for stacks of two (an organism
and its twin) and once for stacks of one (a decoy). For each way of compiling, this script starts, with an
empty compiled-code cache, one process that trains the first steps of a pair and of a decoy (the worker
that compiles), then a second one on another pair and decoy (a worker that starts later, as
`build.schedule` arranges), and prints the seconds each took. "marked" is the build's way: the batch's
varying sizes are marked dynamic (`stacked.VARYING`), so the loss compiles once for any batch; "unmarked"
leaves them unmarked, as before: compiled for the first batch's sizes, then again for any at the second.
Usage: python benchmarks/compile_cost.py [--catalog quick] [--steps 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import torch

from model_organisms import stacked
from model_organisms.catalog import load_spec, plan
from model_organisms.sealed import Secret
from model_organisms.worlds.assistant import AssistantWorld

EXAMPLE = Secret(bytes(32))
"""The secret of the instance whose units are measured: a public one, since a benchmark measures recipes, not
sealed organisms."""


def train_first_steps(catalog: str, steps: int, worker: int, marked: bool) -> None:
    """The first steps of the worker's first pair and decoy of a catalog."""
    torch.set_num_threads(1)
    if not marked:
        stacked.VARYING = {}
    spec = load_spec(catalog)
    world = AssistantWorld()
    tokenizer = world.tokenizer()
    units = [u for u in plan(spec, EXAMPLE) if u.world == "assistant"]
    for size in (2, 1):
        recipes = [u for u in units if len(u.recipes) == size][worker].recipes
        start = time.perf_counter()
        training = spec.training.model_copy(update={"steps": steps})
        stacked.train_organisms(world, tokenizer, recipes, spec.model, training)
        print(f"{time.perf_counter() - start:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--catalog", default="quick")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--unmarked", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        train_first_steps(args.catalog, args.steps, args.worker, not args.unmarked)
        return
    print(f"{'compiling':10s} {'worker':8s} {'pair s':>7s} {'decoy s':>8s}")
    seconds = {}
    for way in ("unmarked", "marked"):
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
            for worker, name in enumerate(("first", "later")):
                command = [sys.executable, __file__, "--catalog", args.catalog, "--steps", str(args.steps),
                           "--worker", str(worker)] + (["--unmarked"] if way == "unmarked" else [])
                out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout.split()
                pair, decoy = map(float, out[-2:])
                seconds[way, name] = pair + decoy
                print(f"{way:10s} {name:8s} {pair:7.1f} {decoy:8.1f}")
    before = 2 * seconds["unmarked", "first"]  # both workers compiled, at the same time
    now = seconds["marked", "first"] + seconds["marked", "later"]
    print(f"two workers' first steps: before {before:.0f} s (both compile, unmarked), now {now:.0f} s: "
          f"{before / now:.2f}x less")


if __name__ == "__main__":
    main()
