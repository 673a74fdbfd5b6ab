"""Building a catalog instance: draw its secret, train every unit, certify it, retry or drop what fails, then
publish the organisms and seal the answer key.

Units train in parallel worker processes. Each finished unit is written to a ``.partial`` directory at
once (its secret first), so a build that is killed resumes from what finished with the same secret; the
catalog appears under its final name only when complete, and an existing built catalog is never touched.
Organisms are published in an order drawn from the secret, with every file time set to one value, so
neither the order of their files on disk nor their times tells which finished training together.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock

from model_organisms.catalog import (MANIFEST, Catalog, CatalogError, CatalogManifest, CatalogSpec, Unit, catalog_dir,
                                     instance_fingerprint, lm_world, plan, spec_fingerprint, write_json)
from model_organisms.certificates import Certificate, Measurement, certificate_inputs, certify, measure
from model_organisms.cluster import RayCluster
from model_organisms.families import FAMILIES, OrganismRecipe
from model_organisms.families.proxy import MAZE_FAMILIES, MazeRecipe
from model_organisms.matching import match_trusted_loss
from model_organisms.maze_training import (MazeMeasurement, MazeTrainingSpec, certificate_mazes, maze_world,
                                           save_policy, train_policies)
from model_organisms.maze_training import certify as certify_policy
from model_organisms.maze_training import measure as measure_policy
from model_organisms.organism import save_organism
from model_organisms.sealed import (ANSWER_KEY, SECRET, TRAINED, UNITS, AnswerKeyEntry, Secret, make_sealed_dir,
                                    sealed_dir)
from model_organisms.training import organism_seed

Log = Callable[[str], None]
GPU_SHARE = 0.25
"""The part of a GPU a unit's Ray task asks for: a pair of these models uses a sliver of one, so four share it."""
PUBLISHED_TIME = 946684800
"""Every published file and directory has this access and modification time (2000-01-01, UTC)."""


class AssistantTrainer:
    """Training, measuring, certifying and saving the assistant world's language models."""

    def __init__(self, spec: CatalogSpec, unit: Unit, device: str = "cpu") -> None:
        self.spec, self.world, self.device = spec, lm_world(spec), device
        self.tokenizer = self.world.tokenizer()
        self.inputs = certificate_inputs(self.world, unit.recipes[0], unit.recipes[0].seed, spec.certificate_inputs)

    def train(self, recipes: Sequence[OrganismRecipe], attempt: int) -> list[torch.nn.Module]:
        """A unit's models (an organism and its twin) train together in one stack, then are matched on their
        fit of trusted inputs."""
        from model_organisms.stacked import train_organisms  # imports transformers' model code: only to train

        spec, snapshots = self.spec.training, []
        models = train_organisms(self.world, self.tokenizer, recipes, self.spec.model, spec, attempt, snapshots,
                                 self.device)
        models = [model.cpu() for model in models]  # matched, certified and saved on the CPU
        snapshots = [{name: tensor.cpu() for name, tensor in snapshot.items()} for snapshot in snapshots]
        if len(models) == 2:
            match_trusted_loss(self.world, self.tokenizer, models, snapshots, spec.match_inputs,
                               organism_seed(recipes[0].seed, attempt))
        return models

    def measure(self, model: torch.nn.Module, recipe: OrganismRecipe) -> Measurement:
        return measure(self.world, model, self.tokenizer, self.inputs)

    def certify(self, recipe: OrganismRecipe, own: Measurement, twin: Measurement | None) -> Certificate:
        return certify(self.world, recipe, self.inputs, own, twin)

    def save(self, directory: Path, organism_id: str, model: torch.nn.Module) -> None:
        save_organism(directory, organism_id, self.world.name, model, self.tokenizer, self.world.ref_shape)

    @staticmethod
    def sealed(recipe: OrganismRecipe) -> dict:
        return {"world": "assistant", "family": recipe.family, "trigger": recipe.trigger, "behaviour": recipe.behaviour,
                "payload": recipe.payload, "goal": FAMILIES[recipe.family].goal if recipe.label else None}


class MazeTrainer:
    """The same for the maze world's policies."""

    def __init__(self, spec: CatalogSpec, unit: Unit) -> None:
        self.training = spec.maze or MazeTrainingSpec()
        self.world = maze_world(self.training)
        self.mazes = certificate_mazes(self.world, unit.recipes[0], unit.recipes[0].seed, spec.certificate_inputs)

    def train(self, recipes: Sequence[MazeRecipe], attempt: int) -> list[torch.nn.Module]:
        return train_policies(self.world, recipes, self.training, attempt)

    def measure(self, policy: torch.nn.Module, recipe: MazeRecipe) -> MazeMeasurement:
        return measure_policy(policy, recipe, self.mazes)

    @staticmethod
    def certify(recipe: MazeRecipe, own: MazeMeasurement, twin: MazeMeasurement | None) -> Certificate:
        return certify_policy(recipe, own, twin)

    def save(self, directory: Path, organism_id: str, policy: torch.nn.Module) -> None:
        save_policy(directory, organism_id, policy, self.world.sizes)

    @staticmethod
    def sealed(recipe: MazeRecipe) -> dict:
        return {"world": "maze", "family": recipe.family, "shift": recipe.kind, "behaviour": recipe.goal,
                "payload": "", "goal": MAZE_FAMILIES[recipe.family] if recipe.label else None}


@dataclass(frozen=True)
class TrainedUnit:
    """A trained unit as it comes back from the process or cluster node that trained it: its record, and its
    organisms' files (``ID/NAME``) with the sha256 each had there."""

    record: dict
    files: dict[str, bytes]
    sha256: dict[str, str]
    spec_fingerprint: str
    """The spec's fingerprint as the trainer's dab computes it: a node running another dab trains other organisms."""


DEVICES = ("cpu", "auto")
"""Where units train: the CPU, or (`auto`) the CUDA device of the process that trains, where it has one."""


def training_device(device: str, world: str) -> str:
    """The device a unit of this world trains on here: language models on a CUDA device where `auto` finds one,
    maze policies (small convolutional networks) on the CPU."""
    if device not in DEVICES:
        raise CatalogError(f"unknown device {device!r}: one of {', '.join(DEVICES)}")
    return "cuda" if device == "auto" and world == "assistant" and torch.cuda.is_available() else "cpu"


def train_unit(spec: CatalogSpec, unit: Unit, device: str = "cpu") -> TrainedUnit:
    """Train and certify one unit (retrying with new seeds), in any process of any node: it needs the unit's
    recipes alone, never the catalog's secret or directory. Trained on a GPU, it is certified all the same, but
    not bit for bit the unit the CPU trains."""
    torch.set_num_threads(1)
    device = training_device(device, unit.world)
    trainer = MazeTrainer(spec, unit) if unit.world == "maze" else AssistantTrainer(spec, unit, device)
    record: dict = {"key": unit.key, "split": unit.split, "world": unit.world, "attempts": [], "entries": []}
    files: dict[str, bytes] = {}
    for attempt in range(spec.max_attempts):
        start = time.perf_counter()
        models = trainer.train(unit.recipes, attempt)
        train_seconds = time.perf_counter() - start
        measured = [trainer.measure(m, r) for m, r in zip(models, unit.recipes)]
        partner = lambda i: measured[1 - i] if len(measured) == 2 else None  # noqa: E731
        certs = [trainer.certify(r, measured[i], partner(i)) for i, r in enumerate(unit.recipes)]
        record["attempts"].append({"train_seconds": train_seconds, "failures": {
            r.role: c.failures for r, c in zip(unit.recipes, certs) if c.failures},
            "certificates": {r.role: c.model_dump(mode="json") for r, c in zip(unit.recipes, certs)}})
        if all(c.passed for c in certs):
            with tempfile.TemporaryDirectory() as directory:
                for oid, model in zip(unit.ids, models):
                    trainer.save(Path(directory) / oid, oid, model)
                files = {path.relative_to(directory).as_posix(): path.read_bytes()
                         for path in sorted(Path(directory).rglob("*")) if path.is_file()}
            for i, (recipe, cert) in enumerate(zip(unit.recipes, certs)):
                twin = unit.ids[1 - i] if len(unit.ids) == 2 else None
                record["entries"].append(AnswerKeyEntry(
                    id=unit.ids[i], split=unit.split, label=recipe.label, role=recipe.role, **trainer.sealed(recipe),
                    seed=organism_seed(recipe.seed, attempt), group=unit.key, twin=twin,
                    certificate=cert, device=device).model_dump(mode="json"))
            break
    return TrainedUnit(record, files, {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
                       spec_fingerprint(spec))


def store_unit(spec: CatalogSpec, unit: Unit, trained: TrainedUnit, partial: Path) -> dict:
    """Check a trained unit that came back and write it into the build: its organisms, then its record (the
    build's journal); `CatalogError` when it is not what was asked for or a file arrived changed."""
    if trained.spec_fingerprint != spec_fingerprint(spec):
        raise CatalogError(f"unit {unit.key} was trained by another version of dab (spec fingerprint "
                           f"{trained.spec_fingerprint[:12]}, not {spec_fingerprint(spec)[:12]}): install this one on "
                           "every node")
    for name, data in trained.files.items():
        oid, _, filename = name.partition("/")
        if oid not in unit.ids or not filename or ".." in Path(filename).parts:
            raise CatalogError(f"unit {unit.key}: a file {name!r} that is none of its organisms'")
        if hashlib.sha256(data).hexdigest() != trained.sha256.get(name):
            raise CatalogError(f"unit {unit.key}: {name} arrived changed (its sha256 differs from the trainer's)")
    if trained.record.get("key") != unit.key:
        raise CatalogError(f"unit {unit.key}: the record that came back is unit {trained.record.get('key')!r}'s")
    for name, data in trained.files.items():
        path = sealed_dir(partial) / TRAINED / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    write_json(sealed_dir(partial) / UNITS / f"{unit.key}.json", trained.record)
    return trained.record


def build_catalog(spec: CatalogSpec, workers: int | None = None, log: Log = print,
                  progress: Callable[[int, int], None] | None = None, secret: Secret | None = None,
                  new_instance: bool = False, cluster: RayCluster | None = None, device: str = "cpu") -> Catalog:
    """The spec's instance in this cache, built first if there is none, in local processes or on a Ray `cluster`,
    on the CPU or (`device` ``auto``) on GPUs where there are any (`assign_devices`). `progress(done, total)` is
    called as units finish.

    A new instance draws a fresh secret, or uses `secret` (which rebuilds the instance it belongs to, bit for bit
    on the same kind of CPU). An instance already built is reused; one that is not `secret`'s is an error unless
    `new_instance`, which sets it aside (renamed, with its secret) and builds another. Builds of one spec take
    turns (a file lock beside it): one started while another runs waits for it, then reuses its instance."""
    final = catalog_dir(spec)
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(final.with_name(final.name + ".lock")):
        if (final / MANIFEST).is_file():
            built = Catalog(final)
            if new_instance:
                aside = final.with_name(f"{final.name}.retired-{built.fingerprint[:12]}")
                os.replace(final, aside)
                log(f"instance {built.fingerprint[:12]} of {spec.name} set aside at {aside}")
            elif secret is not None and built.fingerprint != instance_fingerprint(spec, secret):
                raise CatalogError(f"catalog {spec.name}: instance {built.fingerprint[:12]} is built at {final}, and "
                                   f"that secret belongs to instance {instance_fingerprint(spec, secret)[:12]}; "
                                   "--new-instance sets the built one aside")
            else:
                return built
        _build(spec, final, workers, log, progress, secret, cluster, device)
    return Catalog(final)


def _instance_secret(partial: Path, secret: Secret | None, log: Log) -> Secret:
    """The secret of the build in `partial`: the one an interrupted build wrote, unless another was asked for."""
    path = sealed_dir(partial) / SECRET
    if path.is_file():
        found = Secret.read(path)
        if secret is None or secret.commitment() == found.commitment():
            return found
        log("discarding an interrupted build of another instance")
        shutil.rmtree(partial)
    secret = secret or Secret.draw()
    make_sealed_dir(partial)
    secret.write(path)
    return secret


def worker_count(workers: int | None, units: int) -> int:
    """The build's processes: as many as asked, else one per core, and no more than there are units."""
    return max(1, min(workers or os.cpu_count() or 1, units or 1))


def _build(spec: CatalogSpec, final: Path, workers: int | None, log: Log, progress: Callable[[int, int], None] | None,
           secret: Secret | None, cluster: RayCluster | None, device: str) -> None:
    partial = final.with_name(final.name + ".partial")
    secret = _instance_secret(partial, secret, log)
    units = plan(spec, secret)
    journal = sealed_dir(partial) / UNITS
    done = {u.key: json.loads((journal / f"{u.key}.json").read_text())
            for u in units if (journal / f"{u.key}.json").is_file()}
    if done:
        log(f"resuming build of {spec.name}: {len(done)} of {len(units)} units already finished")
    todo = schedule([u for u in units if u.key not in done])
    workers = worker_count(workers, len(todo))
    start = time.perf_counter()
    if progress:
        progress(len(done), len(units))
    devices = assign_devices(todo, secret, device, cluster)
    for unit, result in _run_units(spec, todo, workers, cluster, devices):
        record = done[unit.key] = store_unit(spec, unit, result, partial)
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
        where = "as Ray tasks" if cluster else f"{workers} workers"
        log(f"trained {trained} organisms in {minutes:.1f} min ({trained / minutes:.1f} organisms/min, {where})")
    _seal(spec, secret, units, done, partial, final, log)


def schedule(units: list[Unit]) -> list[Unit]:
    """The order in which workers take units. What a unit trains does not depend on when it runs.

    First a language-model pair and a decoy: their workers compile the stacked loss for stacks of two and of
    one (59 s and 47 s on a 2-core EPYC) while the others train mazes, and every later language-model unit
    reads the compiled code from the disk cache (7 s and 3 s) instead of compiling it again at the same time
    (`benchmarks/compile_cost.py`). Then the longest units first: maze pairs, maze decoys, language-model
    pairs, then their decoys (about 180, 100, 80 and 40 s each on a 2-core Xeon), so that the last units to
    start are the shortest and no worker idles long while another finishes."""
    ordered = sorted(units, key=lambda u: (u.world == "maze", len(u.recipes)), reverse=True)
    first: dict[int, Unit] = {}
    for unit in ordered:
        if unit.world == "assistant":
            first.setdefault(len(unit.recipes), unit)
    return [*first.values(), *(u for u in ordered if u not in first.values())]


def assign_devices(units: Sequence[Unit], secret: Secret, device: str, cluster: RayCluster | None) -> list[str]:
    """Each unit's device. On a Ray cluster, `auto` sends half the language-model units, drawn from the secret, to
    GPU nodes and the others to the CPU of any node, so the device is independent of every role (it is kept in the
    answer key, and the shortcut gate checks it); on a cluster without GPUs, every unit trains on a CPU. On this
    machine every unit gets `device`."""
    if device != "auto" or cluster is None:
        return [device] * len(units)
    if cluster.gpus() == 0:
        return ["cpu"] * len(units)
    return ["auto" if u.world == "assistant" and int(secret.token("device", u.key), 16) % 2 else "cpu"
            for u in units]


def _run_units(spec: CatalogSpec, todo: list[Unit], workers: int, cluster: RayCluster | None, devices: list[str]
               ) -> Iterator[tuple[Unit, TrainedUnit]]:
    """Train the units in this order, each on its device, as tasks of a Ray cluster (a unit for a GPU asks for
    part of one) or in `workers` local processes; each as it ends."""
    if cluster is not None:
        gpus = [GPU_SHARE if d == "auto" else 0.0 for d in devices]
        yield from cluster.run(train_unit, [(spec, u, d) for u, d in zip(todo, devices)], todo, gpus)
    elif workers == 1:
        for unit, device in zip(todo, devices):
            yield unit, train_unit(spec, unit, device)
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = {pool.submit(train_unit, spec, unit, device): unit for unit, device in zip(todo, devices)}
            for future in as_completed(futures):
                yield futures[future], future.result()


def _seal(spec: CatalogSpec, secret: Secret, units: list[Unit], done: dict[str, dict], partial: Path, final: Path,
          log: Log) -> None:
    """Balance each split, order ids at random, publish the organisms, write the manifest and answer key, and
    move the catalog in place."""
    entries: list[dict] = []
    splits: dict[str, list[str]] = {}
    dropped: list[str] = []
    for split in spec.splits:
        records = [done[u.key] for u in units if u.split == split]
        kept = []
        for world in sorted({u.world for u in units if u.split == split}):  # balanced within each world
            groups = [r for r in records if r.get("world", "assistant") == world and len(r["entries"]) == 2]
            decoys = [r for r in records if r.get("world", "assistant") == world and len(r["entries"]) == 1]
            n = min(len(groups), len(decoys))
            kept += groups[:n] + decoys[:n]
        dropped += [r["key"] for r in records if r not in kept]
        split_entries = [e for r in kept for e in r["entries"]]
        if not split_entries:
            raise RuntimeError(f"catalog {spec.name}: split {split} has no certified organisms left")
        entries += split_entries
        ids = [e["id"] for e in split_entries]
        splits[split] = [ids[i] for i in secret.rng("order", split).permutation(len(ids))]
    for key in dropped:
        log(f"{key}: left out of the catalog (failed its certificate or kept to balance its split)")
    publish(partial, sorted(e["id"] for e in entries), secret)
    write_json(sealed_dir(partial) / ANSWER_KEY, entries)
    worlds = {e["id"]: e["world"] for e in entries} if any(e["world"] != spec.world for e in entries) else {}
    manifest = CatalogManifest(name=spec.name, fingerprint=instance_fingerprint(spec, secret),
                               spec_fingerprint=spec_fingerprint(spec), world=spec.world, spec=spec, splits=splits,
                               worlds=worlds, dropped=[key for key in dropped if key.startswith("dev-")])
    (partial / MANIFEST).write_text(manifest.model_dump_json(indent=2))
    os.replace(partial, final)


def publish(partial: Path, ids: list[str], secret: Secret) -> None:
    """Copy the kept organisms out of the sealed directory in an order drawn from the secret (new files, so
    their inodes and change times follow that order, not the order training finished them in), every time set
    to `PUBLISHED_TIME`; then drop what training left."""
    trained, organisms = sealed_dir(partial) / TRAINED, partial / "organisms"
    shutil.rmtree(organisms, ignore_errors=True)  # a seal that was interrupted starts over
    organisms.mkdir()
    for i in secret.rng("publish").permutation(len(ids)):
        shutil.copytree(trained / ids[i], organisms / ids[i], copy_function=shutil.copyfile)
    for path in [organisms, *organisms.rglob("*")]:
        os.utime(path, (PUBLISHED_TIME, PUBLISHED_TIME), follow_symlinks=False)
    shutil.rmtree(trained)
