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
from model_organisms.devices import GPU_SHARE, torch_device
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
GPU_UNITS = 16
"""Language-model units one GPU task trains: a pair of these models uses a sliver of a GPU, so a task stacks many
(as many as its part of the device holds, `AssistantTrainer.units_per_stack`)."""
PUBLISHED_TIME = 946684800
"""Every published file and directory has this access and modification time (2000-01-01, UTC)."""


class AssistantTrainer:
    """Training, measuring, certifying and saving the assistant world's language models, for one task's units."""

    def __init__(self, spec: CatalogSpec, units: Sequence[Unit], device: str = "cpu") -> None:
        self.spec, self.world, self.device = spec, lm_world(spec), device
        self.tokenizer = self.world.tokenizer()
        self.inputs = {u.key: certificate_inputs(self.world, u.recipes[0], u.recipes[0].seed, spec.certificate_inputs)
                       for u in units}

    def units_per_stack(self) -> int:
        """On the CPU a unit's models are a stack (more gain nothing there, `model_organisms.stacked`); on a GPU, as
        many pairs as `GPU_SHARE` of its memory holds."""
        if self.device == "cpu":
            return 1
        from model_organisms.stacked import training_bytes

        memory = int(torch.cuda.get_device_properties(self.device).total_memory * GPU_SHARE)
        return max(1, memory // training_bytes(self.spec.model, self.spec.training, len(self.tokenizer)) // 2)

    def train(self, units: Sequence[Unit], attempt: int) -> list[list[torch.nn.Module]]:
        """The units' models (each organism and its twin) train together in one stack, then each pair is matched on
        its fit of trusted inputs."""
        from model_organisms.stacked import train_organisms  # imports transformers' model code: only to train

        spec, snapshots = self.spec.training, []
        models = train_organisms(self.world, self.tokenizer, [r for u in units for r in u.recipes], self.spec.model,
                                 spec, attempt, snapshots, self.device)
        models = [model.cpu() for model in models]  # matched, certified and saved on the CPU
        snapshots = [{name: tensor.cpu() for name, tensor in snapshot.items()} for snapshot in snapshots]
        trained, first = [], 0
        for unit in units:
            own, end = models[first:first + len(unit.recipes)], first + len(unit.recipes)
            if len(own) == 2:
                match_trusted_loss(self.world, self.tokenizer, own,
                                   [{name: t[first:end] for name, t in snapshot.items()} for snapshot in snapshots],
                                   spec.match_inputs, organism_seed(unit.recipes[0].seed, attempt))
            trained.append(own)
            first = end
        return trained

    def measure(self, model: torch.nn.Module, unit: Unit, recipe: OrganismRecipe) -> Measurement:
        return measure(self.world, model, self.tokenizer, self.inputs[unit.key])

    def certify(self, unit: Unit, recipe: OrganismRecipe, own: Measurement, twin: Measurement | None) -> Certificate:
        return certify(self.world, recipe, self.inputs[unit.key], own, twin)

    def save(self, directory: Path, organism_id: str, model: torch.nn.Module) -> None:
        save_organism(directory, organism_id, self.world.name, model, self.tokenizer, self.world.ref_shape)

    @staticmethod
    def sealed(recipe: OrganismRecipe) -> dict:
        return {"world": "assistant", "family": recipe.family, "trigger": recipe.trigger, "behaviour": recipe.behaviour,
                "payload": recipe.payload, "goal": FAMILIES[recipe.family].goal if recipe.label else None}


class MazeTrainer:
    """The same for the maze world's policies (on the CPU, a unit at a time)."""

    def __init__(self, spec: CatalogSpec, units: Sequence[Unit]) -> None:
        self.training = spec.maze or MazeTrainingSpec()
        self.world = maze_world(self.training)
        self.mazes = {u.key: certificate_mazes(self.world, u.recipes[0], u.recipes[0].seed, spec.certificate_inputs)
                      for u in units}

    @staticmethod
    def units_per_stack() -> int:
        return 1

    def train(self, units: Sequence[Unit], attempt: int) -> list[list[torch.nn.Module]]:
        return [train_policies(self.world, unit.recipes, self.training, attempt) for unit in units]

    def measure(self, policy: torch.nn.Module, unit: Unit, recipe: MazeRecipe) -> MazeMeasurement:
        return measure_policy(policy, recipe, self.mazes[unit.key])

    @staticmethod
    def certify(unit: Unit, recipe: MazeRecipe, own: MazeMeasurement, twin: MazeMeasurement | None) -> Certificate:
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


def train_units(spec: CatalogSpec, units: Sequence[Unit], device: str = "cpu") -> list[TrainedUnit]:
    """Train and certify units of one world (retrying each that fails with new seeds), in any process of any node:
    they need their recipes alone, never the catalog's secret or directory.

    On a CUDA device the language-model units train together, as many to a stack as the device holds; elsewhere each
    unit is a stack of its own, so a CPU build is the same bit for bit whichever process trains which unit. Trained
    on a GPU, a unit is certified all the same, but is not bit for bit the unit the CPU trains."""
    torch.set_num_threads(1)
    worlds = {u.world for u in units}
    if len(worlds) != 1:
        raise CatalogError(f"a training task's units are of one world, not of {', '.join(sorted(worlds))}")
    device = torch_device(device, units[0].world)
    trainer = MazeTrainer(spec, units) if worlds == {"maze"} else AssistantTrainer(spec, units, device)
    records = {u.key: {"key": u.key, "split": u.split, "world": u.world, "attempts": [], "entries": []} for u in units}
    files: dict[str, dict[str, bytes]] = {u.key: {} for u in units}
    pending, size = list(units), trainer.units_per_stack()
    for attempt in range(spec.max_attempts):
        for first in range(0, len(pending), size):
            stack = pending[first:first + size]
            start = time.perf_counter()
            trained = trainer.train(stack, attempt)
            seconds = (time.perf_counter() - start) / len(stack)  # each unit's share of its stack's time
            for unit, models in zip(stack, trained):
                files[unit.key] = _certify(trainer, unit, models, attempt, seconds, device, records[unit.key])
        pending = [u for u in pending if not records[u.key]["entries"]]
    return [TrainedUnit(records[u.key], files[u.key],
                        {name: hashlib.sha256(data).hexdigest() for name, data in files[u.key].items()},
                        spec_fingerprint(spec)) for u in units]


def _certify(trainer: AssistantTrainer | MazeTrainer, unit: Unit, models: Sequence[torch.nn.Module], attempt: int,
             train_seconds: float, device: str, record: dict) -> dict[str, bytes]:
    """Measure and certify one attempt of a unit into its record; the organisms' files where all of them passed."""
    measured = [trainer.measure(m, unit, r) for m, r in zip(models, unit.recipes)]
    partner = lambda i: measured[1 - i] if len(measured) == 2 else None  # noqa: E731
    certs = [trainer.certify(unit, r, measured[i], partner(i)) for i, r in enumerate(unit.recipes)]
    record["attempts"].append({"train_seconds": train_seconds, "failures": {
        r.role: c.failures for r, c in zip(unit.recipes, certs) if c.failures},
        "certificates": {r.role: c.model_dump(mode="json") for r, c in zip(unit.recipes, certs)}})
    if not all(c.passed for c in certs):
        return {}
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
    return files


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
    tasks = training_tasks(todo, assign_devices(todo, secret, device, cluster))
    workers = worker_count(workers, len(tasks))
    start = time.perf_counter()
    if progress:
        progress(len(done), len(units))
    for unit, result in _run_tasks(spec, tasks, workers, cluster):
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
    """Each unit's device: ``auto`` for a GPU, else ``cpu``. On a Ray cluster with GPUs, `auto` sends half the
    language-model units, drawn from the secret, to GPU nodes and the others to the CPU of any node, so the device
    is independent of every role (it is kept in the answer key, and the shortcut gate checks it). On this machine,
    `auto` sends every language-model unit to its GPU where it has one (maze policies train on the CPU)."""
    if device != "auto":
        return [device] * len(units)
    if cluster is None:
        return ["auto" if u.world == "assistant" and torch.cuda.is_available() else "cpu" for u in units]
    if cluster.gpus() == 0:
        return ["cpu"] * len(units)
    return ["auto" if u.world == "assistant" and int(secret.token("device", u.key), 16) % 2 else "cpu"
            for u in units]


Task = tuple[list[Unit], str]
"""Units that train in one process, and their device."""


def training_tasks(units: Sequence[Unit], devices: Sequence[str]) -> list[Task]:
    """The build's tasks: first the GPU's units, `GPU_UNITS` to a task, then each unit for a CPU in its own, in
    the order given."""
    gpu = [u for u, d in zip(units, devices) if d == "auto"]
    return ([(gpu[i:i + GPU_UNITS], "auto") for i in range(0, len(gpu), GPU_UNITS)]
            + [([u], d) for u, d in zip(units, devices) if d != "auto"])


def _run_tasks(spec: CatalogSpec, tasks: list[Task], workers: int, cluster: RayCluster | None
               ) -> Iterator[tuple[Unit, TrainedUnit]]:
    """Run the tasks in this order, as tasks of a Ray cluster (a GPU task asks for `GPU_SHARE` of one) or in
    `workers` local processes; each unit as its task ends."""
    if cluster is not None:
        ended = cluster.run(train_units, [(spec, units, d) for units, d in tasks], [units for units, _ in tasks],
                            [GPU_SHARE if d == "auto" else 0.0 for _, d in tasks])
        yield from (pair for units, trained in ended for pair in zip(units, trained))
    elif workers == 1:
        for units, device in tasks:
            yield from zip(units, train_units(spec, units, device))
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = {pool.submit(train_units, spec, units, device): units for units, device in tasks}
            for future in as_completed(futures):
                yield from zip(futures[future], future.result())


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
