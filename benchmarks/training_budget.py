"""Whether a cheaper training recipe would still give certified organisms, in one run.

Every catalog's build time is set by its recipe (steps, width). This trains a catalog's language-model
units (an organism and its twin, or a decoy) with the catalog's own recipe and with each cheaper recipe
asked for, one attempt each and one unit per worker, as a build does; then prints per recipe how many
units passed their certificates, which checks failed most, and a unit's time as a ratio of the catalog's
recipe. Usage:
python benchmarks/training_budget.py [--catalog quick] [--units 16] [--workers N]
    --try steps=500 --try hidden_size=32,intermediate_size=96
(fields of `training.TrainingSpec` or `training.ModelSpec`).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from model_organisms.build import build_unit
from model_organisms.catalog import CatalogSpec, Unit, load_spec, plan
from model_organisms.training import ModelSpec, TrainingSpec

OWN = "the catalog's recipe"


def cheaper(spec: CatalogSpec, change: str) -> CatalogSpec:
    """The spec with `change` ("key=value,key=value") applied to its model or training, and one attempt."""
    model, training = {}, {}
    for item in filter(None, change.split(",")):
        key, _, value = item.partition("=")
        fields = model if key in ModelSpec.model_fields else training if key in TrainingSpec.model_fields else None
        if fields is None:
            raise SystemExit(f"--try {change}: {key!r} is no field of TrainingSpec or ModelSpec")
        try:
            fields[key] = json.loads(value)
        except ValueError:
            raise SystemExit(f"--try {change}: {key}'s value {value!r} is not a number") from None
    return spec.model_copy(update={"model": spec.model.model_copy(update=model),
                                   "training": spec.training.model_copy(update=training), "max_attempts": 1})


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
    parser.add_argument("--units", type=int, default=16, help="the first N language-model units of the catalog")
    parser.add_argument("--workers", type=int, default=None, help="default: all cores")
    parser.add_argument("--try", dest="changes", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]")
    args = parser.parse_args()
    spec = load_spec(args.catalog)
    recipes = {OWN: cheaper(spec, "")} | {change: cheaper(spec, change) for change in args.changes}
    units = [u for u in plan(spec) if u.world == "assistant"][:args.units]
    jobs = sorted(((name, unit) for name in recipes for unit in units), key=lambda job: -len(job[1].recipes))
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = dict(zip(jobs, pool.map(run_unit, [recipes[n] for n, _ in jobs], [u for _, u in jobs])))

    def seconds(name: str) -> float:
        return sum(results[name, u][2] for u in units)

    print(f"{len(units)} language-model units of {spec.name}, one attempt each "
          f"(recipe: {spec.training.steps} steps, {spec.model.hidden_size} wide)")
    for name in recipes:
        passed = [results[name, u][0] for u in units]
        pairs = [p for p, u in zip(passed, units) if len(u.recipes) == 2]
        failed = Counter(f for u in units for f in set(results[name, u][1])).most_common(3)
        print(f"  {name:>40}: {sum(passed):2d}/{len(units)} passed ({sum(pairs)}/{len(pairs)} pairs)  "
              f"time ratio {seconds(name) / seconds(OWN):.2f}  "
              f"most failed: {', '.join(f'{f} ({n})' for f, n in failed) or 'none'}")


if __name__ == "__main__":
    main()
