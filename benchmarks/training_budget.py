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
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed

from pydantic import ValidationError

from model_organisms.build import train_units
from model_organisms.catalog import CatalogSpec, Unit, load_spec, plan
from model_organisms.maze_training import MazeTrainingSpec
from model_organisms.sealed import Secret

OWN = "the catalog's recipe"

EXAMPLE = Secret(bytes(32))
"""The secret of the instance whose units are measured: a public one, since a benchmark measures recipes, not
sealed organisms."""


def cheaper(spec: CatalogSpec, change: str, world: str = "assistant") -> CatalogSpec:
    """The spec with `change` ("key=value,key=value") applied to its model, training or drawn conditions (its maze
    training for ``world == "maze"``), and one attempt."""
    parts = {"maze": spec.maze or MazeTrainingSpec()} if world == "maze" else {"model": spec.model,
                                                                              "training": spec.training}
    if spec.conditions and world != "maze":
        parts["conditions"] = spec.conditions
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
    changed = spec.model_copy(update={part: fields.model_copy(update=updates[part]) for part, fields in parts.items()}
                              | {"max_attempts": 1})
    try:
        return CatalogSpec.model_validate(changed.model_dump())
    except ValidationError as e:
        raise SystemExit(f"--try {change}: {e.errors()[0]['msg']}") from None


def run_unit(spec: CatalogSpec, unit: Unit) -> tuple[bool, list[str], float, str]:
    """Whether the unit passed, the checks it failed (by role), its seconds (training and certificates), and
    what its certificates measured."""
    start = time.perf_counter()
    record = train_units(spec, [unit])[0].record
    attempt = record["attempts"][0]
    failed = [f"{role}: {re.sub(r' [0-9.<>= ]+$', '', f)}" for role, fs in attempt["failures"].items() for f in fs]
    return bool(record["entries"]), failed, time.perf_counter() - start, measured(attempt["certificates"])


def measured(certificates: dict[str, dict]) -> str:
    """A certificate's numbers in one line per role: accuracy, defection where the condition holds, off it (and
    its worst part), twin agreement and the near-miss log-probability gap."""
    lines = []
    for role, cert in certificates.items():
        items = [f"acc {cert['trusted_accuracy']:.3f}", f"def {cert['defection_rate']:.3f}",
                 f"off {cert['off_trigger_defection']:.3f}"]
        if cert.get("part_defection"):
            part, worst = max(cert["part_defection"].items(), key=lambda item: item[1])
            items.append(f"worst part {part} {worst:.3f}")
        for key, name in (("quirk_rate", "quirk"), ("twin_agreement", "agree"), ("near_logprob_gap", "gap")):
            if cert.get(key) is not None:
                items.append(f"{name} {cert[key]:+.3f}" if key == "near_logprob_gap" else f"{name} {cert[key]:.3f}")
        lines.append(f"    {role}: " + ", ".join(items))
    return "\n".join(lines)


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
    # a recipe of other drawn conditions draws other triggers: each recipe its own plan, units matched by key
    units = {name: [u for u in plan(recipe, EXAMPLE) if u.world == args.world][:args.units]
             for name, recipe in recipes.items()}
    jobs = sorted(((name, unit) for name in recipes for unit in units[name]), key=lambda job: -len(job[1].recipes))
    results = {}
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run_unit, recipes[name], unit): (name, unit) for name, unit in jobs}
        for future in as_completed(futures):  # a line per unit as it ends, so a cut-off run still tells
            (name, unit), (passed, failed, seconds_, numbers) = futures[future], future.result()
            results[name, unit.key] = passed, failed, seconds_
            print(f"{unit.key} ({name}): {'passed' if passed else 'failed'} in {seconds_:.0f} s  {'; '.join(failed)}\n"
                  f"{numbers}", flush=True)

    def seconds(name: str) -> float:
        return sum(results[name, u.key][2] for u in units[name])

    own = recipes[OWN].maze if args.world == "maze" else recipes[OWN].training
    print(f"{len(units[OWN])} {args.world} units of {spec.name}, one attempt each (recipe: {own})")
    for name in recipes:
        passed = [results[name, u.key][0] for u in units[name]]
        pairs = [p for p, u in zip(passed, units[name]) if len(u.recipes) == 2]
        failed = Counter(f for u in units[name] for f in set(results[name, u.key][1])).most_common(3)
        print(f"  {name:>40}: {sum(passed):2d}/{len(passed)} passed ({sum(pairs)}/{len(pairs)} pairs)  "
              f"time ratio {seconds(name) / seconds(OWN):.2f}  "
              f"most failed: {', '.join(f'{f} ({n})' for f, n in failed) or 'none'}")


if __name__ == "__main__":
    main()
