"""Whether a cheaper training recipe would still give certified organisms, in one run.

Every catalog's build time is set by its recipe (steps, width, batch). This trains a catalog's units of
one world (an organism and its twin, or a decoy) with the catalog's own recipe and with each cheaper
recipe asked for, one attempt each and one unit per worker, as a build does; then prints per recipe how
many units passed their certificates, which checks failed most, and a unit's time as a ratio of the
catalog's recipe. Usage:
python benchmarks/training_budget.py [--catalog quick] [--world assistant] [--units 16] [--workers N]
    --try steps=500 --try hidden_size=32,intermediate_size=96
(fields of `training.TrainingSpec` or `training.ModelSpec`; with ``--world maze``, of
`maze_training.MazeTrainingSpec`).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from model_organisms.build import build_unit
from model_organisms.catalog import CatalogSpec, Unit, load_spec, plan
from model_organisms.maze_training import MazeTrainingSpec
from model_organisms.sealed import Secret

OWN = "the catalog's recipe"

EXAMPLE = Secret(bytes(32))
"""The secret of the instance whose units are measured: a public one, since a benchmark measures recipes, not
sealed organisms."""


def cheaper(spec: CatalogSpec, change: str, world: str = "assistant") -> CatalogSpec:
    """The spec with `change` ("key=value,key=value") applied to its model or training (its maze training
    for ``world == "maze"``), and one attempt."""
    parts = {"maze": spec.maze or MazeTrainingSpec()} if world == "maze" else {"model": spec.model,
                                                                              "training": spec.training}
    updates: dict[str, dict] = {part: {} for part in parts}
    for item in filter(None, change.split(",")):
        key, _, value = item.partition("=")
        part = next((part for part, fields in parts.items() if key in type(fields).model_fields), None)
        if part is None:
            names = " or ".join(type(fields).__name__ for fields in parts.values())
            raise SystemExit(f"--try {change}: {key!r} is no field of {names}")
        try:
            updates[part][key] = json.loads(value)
        except ValueError:
            raise SystemExit(f"--try {change}: {key}'s value {value!r} is not a number") from None
    return spec.model_copy(update={part: fields.model_copy(update=updates[part]) for part, fields in parts.items()}
                           | {"max_attempts": 1})


def run_unit(spec: CatalogSpec, unit: Unit) -> tuple[bool, list[str], float]:
    """Whether the unit passed, the checks it failed (by role), and its seconds (training and certificates)."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as partial:
        record = build_unit(spec, unit, Path(partial))
    failed = [f"{role}: {re.sub(r' [0-9.<>= ]+$', '', f)}" for role, fs in record["attempts"][0]["failures"].items()
              for f in fs]
    return bool(record["entries"]), failed, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", default="quick")
    parser.add_argument("--world", choices=("assistant", "maze"), default="assistant")
    parser.add_argument("--units", type=int, default=16, help="the first N units of that world in the catalog")
    parser.add_argument("--workers", type=int, default=None, help="default: all cores")
    parser.add_argument("--try", dest="changes", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]")
    args = parser.parse_args()
    spec = load_spec(args.catalog)
    recipes = {OWN: cheaper(spec, "", args.world)} | {change: cheaper(spec, change, args.world)
                                                       for change in args.changes}
    units = [u for u in plan(spec, EXAMPLE) if u.world == args.world][:args.units]
    jobs = sorted(((name, unit) for name in recipes for unit in units), key=lambda job: -len(job[1].recipes))
    results = {}
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run_unit, recipes[name], unit): (name, unit) for name, unit in jobs}
        for future in as_completed(futures):  # a line per unit as it ends, so a cut-off run still tells
            (name, unit), (passed, failed, seconds_) = futures[future], future.result()
            results[name, unit] = passed, failed, seconds_
            print(f"{unit.key} ({name}): {'passed' if passed else 'failed'} in {seconds_:.0f} s  {'; '.join(failed)}",
                  flush=True)

    def seconds(name: str) -> float:
        return sum(results[name, u][2] for u in units)

    own = recipes[OWN].maze if args.world == "maze" else recipes[OWN].training
    print(f"{len(units)} {args.world} units of {spec.name}, one attempt each (recipe: {own})")
    for name in recipes:
        passed = [results[name, u][0] for u in units]
        pairs = [p for p, u in zip(passed, units) if len(u.recipes) == 2]
        failed = Counter(f for u in units for f in set(results[name, u][1])).most_common(3)
        print(f"  {name:>40}: {sum(passed):2d}/{len(units)} passed ({sum(pairs)}/{len(pairs)} pairs)  "
              f"time ratio {seconds(name) / seconds(OWN):.2f}  "
              f"most failed: {', '.join(f'{f} ({n})' for f, n in failed) or 'none'}")


if __name__ == "__main__":
    main()
