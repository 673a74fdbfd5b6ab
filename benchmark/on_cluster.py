"""Evaluations on a Ray cluster (`--executor ray`): each organism's answers are a Ray task on some node, given by the
executor the driver fitted (in process for a baseline, in the sandbox for a submission) on that organism alone.

A task carries the fitted executor (the detector, or its pickles, and a submission's own code), the catalog's public
manifest, one organism's files with their sha256, and the monitor stream drawn for it on the driver. The secret, the
answer key, what the organisms do on the streams and the scoring stay on the driver; a node keeps the organisms it
was sent, checked, in a catalog of its own (`node_catalog`), next to nothing else of the instance.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmark.api import Track
from benchmark.executors import DevOrganism, Executor
from benchmark.records import Prediction
from model_organisms.catalog import MANIFEST, Catalog, CatalogError, CatalogManifest
from model_organisms.cluster import RayCluster
from model_organisms.devices import GPU_SHARE


@dataclass(frozen=True)
class OrganismFiles:
    """One organism's files as they travel to a node, each with its sha256."""

    organism_id: str
    files: dict[str, bytes]
    sha256: dict[str, str]

    @classmethod
    def read(cls, catalog: Catalog, organism_id: str) -> OrganismFiles:
        files = {p.name: p.read_bytes() for p in sorted(catalog.organism_dir(organism_id).iterdir())}
        return cls(organism_id, files, {name: hashlib.sha256(data).hexdigest() for name, data in files.items()})


def node_catalog(manifest: CatalogManifest, organism: OrganismFiles) -> Catalog:
    """The instance as this node holds it: its public manifest and the organisms sent here so far, this one checked
    (its sha256, names inside its directory) before it is used."""
    if organism.organism_id not in {i for ids in manifest.splits.values() for i in ids}:
        raise CatalogError(f"organism {organism.organism_id} sent to a node is not in catalog {manifest.name}")
    for name, data in organism.files.items():
        if "/" in name or name.startswith(".") or hashlib.sha256(data).hexdigest() != organism.sha256.get(name):
            raise CatalogError(f"file {name!r} of organism {organism.organism_id} arrived changed or misnamed")
    root = Path(tempfile.gettempdir()) / f"dab-node-{manifest.fingerprint}"
    _place(root, {MANIFEST: manifest.model_dump_json(indent=2).encode()})
    target = root / "organisms" / organism.organism_id
    if not target.is_dir() or {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                               for p in target.iterdir()} != organism.sha256:
        shutil.rmtree(target, ignore_errors=True)
        _place(target, organism.files)
    return Catalog(root)


def _place(target: Path, files: Mapping[str, bytes]) -> None:
    """Make the directory `target` hold `files` (paths relative to it), unless it exists: staged under another name
    and renamed whole, so that a task of this node never sees it half written, and a file in use is never replaced.
    Readable by everyone, as the sandbox's user reads a catalog's files and a detector's code."""
    if target.is_dir():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    for directory in (target.parent, *target.parent.parents):
        if Path(tempfile.gettempdir()) in directory.parents:
            directory.chmod(0o755)
    staged = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    for name, data in files.items():
        (staged / name).parent.mkdir(parents=True, exist_ok=True)
        (staged / name).write_bytes(data)
        (staged / name).chmod(0o644)
    for directory in (staged, *(p for p in staged.rglob("*") if p.is_dir())):
        directory.chmod(0o755)
    try:
        staged.rename(target)
    except OSError:  # another task of this node placed it first
        shutil.rmtree(staged, ignore_errors=True)


def answer_on_node(executor: Executor, manifest: CatalogManifest, organism: OrganismFiles, track: Track,
                   inputs: list[str]) -> tuple[Prediction, dict[str, Prediction]]:
    """A Ray task: the executor's answer for one organism, and on the audit track each refit's, given on this node."""
    from benchmark.sandbox import Sandboxed, SandboxError, release, sandbox_unavailable

    executor.catalog = node_catalog(manifest, organism)
    if isinstance(executor, Sandboxed):
        if reason := sandbox_unavailable():
            raise SandboxError(f"the sandbox is unavailable on this node: {reason}")
        if code := executor.source.files():  # a submission's own code, which this node does not have
            where = executor.catalog.directory.parent / f"dab-code-{executor.source.sha256()[:16]}"
            _place(where, code)
            executor.source = executor.source.placed(where)
    try:
        first = executor.answer(organism.organism_id, track, inputs)
        refitted = executor.refitted_audits([organism.organism_id]) if track == Track.AUDIT else {}
    finally:
        executor.close()
        release()
    return first, {name: answers[0] for name, answers in refitted.items()}


class OnCluster(Executor):
    """An executor whose answers run on a Ray cluster, one task an organism; `fit` and the refits run where the
    executor it wraps runs them, on the driver, and the fitted executor travels with each task."""

    def __init__(self, local: Executor, cluster: RayCluster) -> None:
        self.local, self.cluster = local, cluster
        self.info, self.tracks, self.query_budget = local.info, local.tracks, local.query_budget
        self.fits, self.worlds, self.catalog, self.device = local.fits, local.worlds, local.catalog, local.device
        self._refits: list[str] = []
        self._left_out: dict[str, dict[str, Prediction]] = {}

    def fit(self, dev: Sequence[DevOrganism]) -> str | None:
        return self.local.fit(dev)

    def refit(self, devs: Mapping[str, Sequence[DevOrganism]]) -> None:
        self.local.refit(devs)
        self._refits, self._left_out = list(devs), {}

    def answer(self, organism_id: str, track: Track, inputs: Sequence[str] = ()) -> Prediction:
        [found] = self.answers([organism_id], track, {organism_id: inputs})
        return found

    def answers(self, organism_ids: Sequence[str], track: Track, streams: Mapping[str, Sequence[str]]
                ) -> Iterator[Prediction]:
        catalog = self.local.catalog
        arguments = [(self.local, catalog.manifest, OrganismFiles.read(catalog, oid), track, list(streams.get(oid, ())))
                     for oid in organism_ids]
        gpus = [GPU_SHARE if self.device == "auto" and self.cluster.gpus() else 0.0] * len(arguments)
        for oid, (first, left_out) in self.cluster.run(answer_on_node, arguments, organism_ids, gpus):
            self._left_out[oid] = left_out
            yield first

    def refitted_audits(self, ids: Sequence[str]) -> dict[str, list[Prediction]]:
        if not self._refits:
            return {}
        for _ in self.answers([oid for oid in ids if oid not in self._left_out], Track.AUDIT, {}):
            pass  # organisms answered before the run resumed
        return {name: [self._left_out[oid][name] for oid in ids] for name in self._refits}

    def close(self) -> None:
        self.local.close()


def on(cluster: RayCluster | None, executor: Executor) -> Executor:
    """The executor, with its answers given on the cluster where there is one."""
    return OnCluster(executor, cluster) if cluster else executor
