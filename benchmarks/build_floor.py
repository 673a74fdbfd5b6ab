"""The least time a catalog's training could take on this machine, whatever the code: its arithmetic alone.

Counts the floating-point operations of one training step per world (forward and backward, by torch's
`FlopCounterMode`, on the build's own batches: a language model's packed stack, a maze policy's states) and
times the step's matrix products (their own time in torch's profiler). Prints two floors of each catalog's
training, with the steps and organisms of its plan and one worker per core, as a build runs: every step at
this core's best matrix-product rate (single-thread float32 products of large square matrices, the fastest
shape a core multiplies), and every step taking only its own matrix products as they run here. Both leave
out what only adds time: element-wise work, batches, the optimiser, certificates, compiling, retries. Where
the catalog is built in the cache, it also prints the organisms the build trained (retries included) and
its training core-minutes (`units/*.json`).
Usage: python benchmarks/build_floor.py [--catalogs quick standard] [--workers N] [--samples 50]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import torch
from torch.profiler import profile
from torch.utils.flop_counter import FlopCounterMode

from model_organisms.catalog import Catalog, CatalogSpec, Unit, catalog_dir, load_spec, plan
from model_organisms.estimate import assistant_step, maze_step
from model_organisms.maze_training import MazeTrainingSpec
from model_organisms.sealed import UNITS, Secret, sealed_dir, secret

EXAMPLE = Secret(bytes(32))
"""The secret of the instance whose units are measured: a public one, since a benchmark measures recipes, not
sealed organisms."""


def core_rate(sizes: tuple[int, ...] = (512, 1024, 2048), repeats: int = 10) -> float:
    """This core's best float32 matrix-product rate, in FLOP/s (one thread)."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = max(best, 2 * n ** 3 / (time.perf_counter() - start))
    return best


PRODUCTS = ("aten::mm", "aten::bmm", "aten::addmm", "aten::mkldnn_convolution", "aten::convolution_backward")


def measure(step: Callable[[], None], samples: int) -> tuple[float, float]:
    """A training step's mean FLOPs, and the mean seconds its matrix products take as this core runs them
    (their own time in torch's profiler, after the counted steps have warmed it up)."""
    flops = []
    for _ in range(samples):
        with FlopCounterMode(display=False) as counter:
            step()
        flops.append(counter.get_total_flops())
    with profile() as prof:
        for _ in range(samples):
            step()
    seconds = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in PRODUCTS) / 1e6
    return float(np.mean(flops)), seconds / samples


def one_organism(units: list[Unit], world: str) -> Unit:
    """A decoy's unit of that world: one organism, whose step is a build's step per organism."""
    return next(u for u in units if u.world == world and len(u.recipes) == 1)


def built_seconds(spec: CatalogSpec) -> tuple[dict[str, float], dict[str, int]] | None:
    """Per world, the built catalog's training core-seconds and organisms trained (retries included)."""
    units = sorted((sealed_dir(catalog_dir(spec)) / UNITS).glob("*.json"))
    if not units:
        return None
    sizes = {unit.key: len(unit.recipes) for unit in plan(spec, secret(Catalog(catalog_dir(spec))))}
    seconds: dict[str, float] = defaultdict(float)
    trained: dict[str, int] = defaultdict(int)
    for path in units:
        record = json.loads(path.read_text())
        for attempt in record["attempts"]:
            seconds[record["world"]] += attempt["train_seconds"]
            trained[record["world"]] += sizes[record["key"]]
    return seconds, trained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--catalogs", nargs="+", default=["quick", "standard"])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--samples", type=int, default=50, help="steps counted and timed per world")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rate = core_rate()
    print(f"this core's best matrix product: {rate / 1e9:.1f} GFLOP/s (1 thread); {args.workers} workers, one per core")
    for name in args.catalogs:
        spec = load_spec(name)
        units = plan(spec, EXAMPLE)
        steps = {"assistant": spec.training.steps, "maze": (spec.maze or MazeTrainingSpec()).steps}
        worlds = {"assistant": measure(assistant_step(spec, one_organism(units, "assistant")), args.samples)}
        if any(u.world == "maze" for u in units):
            worlds["maze"] = measure(maze_step(spec, one_organism(units, "maze")), args.samples)
        built = built_seconds(spec)
        seconds, trained = built or ({}, {})
        print(f"{spec.name}, {sum(len(u.recipes) for u in units)} organisms")
        print(f"  {'world':9s} {'organisms':>9s} {'steps':>6s} {'GFLOP/step':>11s} {'products ms/step':>17s}"
              + (f" {'build: trained':>15s} {'core-min':>9s}" if built else ""))
        at_best = as_run = 0.0
        for world, (flops, product_seconds) in worlds.items():
            organisms = sum(len(u.recipes) for u in units if u.world == world)
            at_best += organisms * steps[world] * flops / rate
            as_run += organisms * steps[world] * product_seconds
            print(f"  {world:9s} {organisms:9d} {steps[world]:6d} {flops / 1e9:11.2f} {product_seconds * 1e3:17.1f}"
                  + (f" {trained[world]:15d} {seconds[world] / 60:9.1f}" if built else ""))
        print(f"  training floor: {at_best / args.workers / 60:.1f} min at the best rate, "
              f"{as_run / args.workers / 60:.1f} min with its matrix products as they run here"
              + (f"; its build: {sum(seconds.values()) / args.workers / 60:.1f} min (training core-minutes over"
                 f" {args.workers} workers)" if built else ""))


if __name__ == "__main__":
    main()
