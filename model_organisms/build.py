"""Building a catalog: train every unit, certify it, retry or drop what fails, then seal the answer key.

Units train in parallel worker processes. Each finished unit is written to a ``.partial`` directory at
once, so a build that is killed resumes from what finished; the catalog appears under its final name only
when complete, and an existing built catalog is never touched.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch

from model_organisms.catalog import (ANSWER_KEY, MANIFEST, AnswerKeyEntry, Catalog, CatalogManifest, CatalogSpec,
                                     Unit, catalog_dir, fingerprint, organism_id, plan)
from model_organisms.certificates import certificate_inputs, certify, measure
from model_organisms.families import FAMILIES
from model_organisms.organism import save_organism
from model_organisms.training import train_organism
from model_organisms.worlds import WORLDS

Log = Callable[[str], None]


def build_unit(spec: CatalogSpec, unit: Unit, partial: Path) -> dict:
    """Train and certify one unit (retrying with new seeds); write its organisms and its record."""
    torch.set_num_threads(1)
    world = WORLDS[spec.world]()
    tokenizer = world.tokenizer()
    inputs = certificate_inputs(world, unit.recipes[0], unit.recipes[0].seed, spec.certificate_inputs)
    record: dict = {"key": unit.key, "split": unit.split, "attempts": [], "entries": []}
    for attempt in range(spec.max_attempts):
        start = time.perf_counter()
        models = [train_organism(world, tokenizer, r, spec.model, spec.training, attempt) for r in unit.recipes]
        train_seconds = time.perf_counter() - start
        measured = [measure(world, m, tokenizer, inputs) for m in models]
        partner = lambda i: measured[1 - i] if len(measured) == 2 else None  # noqa: E731
        certs = [certify(world, r, inputs, measured[i], partner(i)) for i, r in enumerate(unit.recipes)]
        record["attempts"].append({"train_seconds": train_seconds, "failures": {
            r.role: c.failures for r, c in zip(unit.recipes, certs) if c.failures}})
        if all(c.passed for c in certs):
            ids = [organism_id(spec, unit.key, i) for i in range(len(unit.recipes))]
            for oid, model in zip(ids, models):
                save_organism(partial / "organisms" / oid, oid, world.name, model, tokenizer)
            for i, (recipe, cert) in enumerate(zip(unit.recipes, certs)):
                twin = ids[1 - i] if len(ids) == 2 else None
                record["entries"].append(AnswerKeyEntry(
                    id=ids[i], split=unit.split, label=recipe.label, role=recipe.role, family=recipe.family,
                    goal=FAMILIES[recipe.family].goal if recipe.label else None, trigger=recipe.trigger,
                    behaviour=recipe.behaviour, payload=recipe.payload,
                    seed=recipe.seed + 1_000_003 * attempt, group=unit.key, twin=twin,
                    certificate=cert).model_dump(mode="json"))
            break
    _write_json(partial / "units" / f"{unit.key}.json", record)
    return record


def build_catalog(spec: CatalogSpec, workers: int | None = None, log: Log = print,
                  progress: Callable[[int, int], None] | None = None) -> Catalog:
    """Build (or reuse) the catalog of a spec. `progress(done, total)` is called as units finish."""
    final = catalog_dir(spec)
    if (final / MANIFEST).is_file():
        return Catalog(final)
    partial = final.with_name(final.name + ".partial")
    units = plan(spec)
    done = {u.key: json.loads((partial / "units" / f"{u.key}.json").read_text())
            for u in units if (partial / "units" / f"{u.key}.json").is_file()}
    if done:
        log(f"resuming build of {spec.name}: {len(done)} of {len(units)} units already finished")
    todo = [u for u in units if u.key not in done]
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    start = time.perf_counter()
    if progress:
        progress(len(done), len(units))
    for record in _run_units(spec, todo, partial, workers):
        done[record["key"]] = record
        for n, attempt in enumerate(record["attempts"], 1):
            for role, failures in attempt["failures"].items():
                log(f"{record['key']} attempt {n}: {role} failed its certificate: {'; '.join(failures)}")
        if not record["entries"]:
            log(f"{record['key']}: dropped after {len(record['attempts'])} attempts")
        if progress:
            progress(len(done), len(units))
    trained = sum(len(u.recipes) * len(done[u.key]["attempts"]) for u in todo)
    if trained:
        minutes = (time.perf_counter() - start) / 60
        log(f"trained {trained} organisms in {minutes:.1f} min ({trained / minutes:.1f} organisms/min, {workers} workers)")
    return _seal(spec, units, done, partial, final, log)


def _run_units(spec: CatalogSpec, todo: list[Unit], partial: Path, workers: int):
    if workers == 1:
        for unit in todo:
            yield build_unit(spec, unit, partial)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = [pool.submit(build_unit, spec, unit, partial) for unit in todo]
        for future in as_completed(futures):
            yield future.result()


def _seal(spec: CatalogSpec, units: list[Unit], done: dict[str, dict], partial: Path, final: Path,
          log: Log) -> Catalog:
    """Balance each split, shuffle ids, write the manifest and answer key, and move the catalog in place."""
    rng = np.random.default_rng([spec.seed, 0x5EA1])
    entries: list[dict] = []
    splits: dict[str, list[str]] = {}
    dropped: list[str] = []
    for split in spec.splits:
        records = [done[u.key] for u in units if u.split == split]
        groups = [r for r in records if len(r["entries"]) == 2]
        decoys = [r for r in records if len(r["entries"]) == 1]
        n = min(len(groups), len(decoys))
        kept = groups[:n] + decoys[:n]
        dropped += [r["key"] for r in records if r not in kept]
        split_entries = [e for r in kept for e in r["entries"]]
        if not split_entries:
            raise RuntimeError(f"catalog {spec.name}: split {split} has no certified organisms left")
        entries += split_entries
        ids = [e["id"] for e in split_entries]
        splits[split] = [ids[i] for i in rng.permutation(len(ids))]
    for key in dropped:
        log(f"{key}: left out of the catalog (failed its certificate or kept to balance its split)")
    organisms = partial / "organisms"
    keep = {e["id"] for e in entries}
    for path in organisms.iterdir():
        if path.name not in keep:
            shutil.rmtree(path)
    _write_json(partial / ANSWER_KEY, entries)
    manifest = CatalogManifest(name=spec.name, fingerprint=fingerprint(spec), world=spec.world, spec=spec,
                               splits=splits, dropped=dropped)
    (partial / MANIFEST).write_text(manifest.model_dump_json(indent=2))
    os.replace(partial, final)
    return Catalog(final)


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)
