"""A leaderboard host: a directory holding its configuration, results database and uploads, and the worker that
evaluates queued submissions on the sealed `test` split of its catalog instance (and on `holdout` when a round
closes).

The worker is a process of its own: the web process (`leaderboard.host_app`) never reads a catalog, and runs
`confined` where it cannot. Each submission runs in the sandbox (on this machine, or on the nodes of a Ray cluster),
organism by organism, journaled in the results database, so a worker killed mid-evaluation resumes where it stopped
and scores every organism once.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict, Field

from benchmark.api import DEFAULT_QUERY_BUDGET, Track
from benchmark.harness import catalog_ref, evaluate, planned_runs
from benchmark.limits import Limits
from benchmark.on_cluster import on
from benchmark.registry import UnknownDetector, resolve
from benchmark.sandbox import Sandboxed, SandboxError
from benchmark.wheels import BadWheel, unpack
from leaderboard.host_app import HostLimits
from leaderboard.host_store import HostStore, Submission
from model_organisms.bundle import write_bundle
from model_organisms.catalog import Catalog, CatalogError, cache_root, open_catalog
from model_organisms.cluster import RayCluster

CONFIG = "host.json"
DB = "results.sqlite"
UPLOADS = "uploads"
LOCK = "worker.lock"
BUNDLE = "bundle.tar.gz"
"""The catalog's public `dev` bundle (`model_organisms.bundle`), which the web process serves for `dab pull`."""


class HostConfig(BaseModel):
    """What `dab host init` fixes: the catalog instance and the limits every submission gets."""

    model_config = ConfigDict(extra="forbid")
    catalog: str
    fingerprint: str
    """The instance's, so that a rebuilt cache is noticed rather than scored against."""
    upload_bytes: int = Field(default=HostLimits.upload_bytes, ge=1)
    per_day: int = Field(default=HostLimits.per_day, ge=1)
    disk_bytes: int = Field(default=HostLimits.disk_bytes, ge=1)
    query_budget: int = Field(default=DEFAULT_QUERY_BUDGET, ge=1)
    bundle_sha256: str | None = None
    """What the operator gives researchers out of band, for `dab pull URL --sha256` (None: no bundle)."""

    @property
    def limits(self) -> HostLimits:
        return HostLimits(self.upload_bytes, self.per_day, self.disk_bytes)

    @classmethod
    def read(cls, directory: Path) -> HostConfig:
        path = directory / CONFIG
        if not path.is_file():
            raise CatalogError(f"{directory} is no dab host (run `dab host init` there)")
        return cls.model_validate_json(path.read_text())


def init(directory: Path, catalog: Catalog, version: str, **limits: int) -> HostConfig:
    """Make `directory` a host of this catalog instance (one with sealed `test` and `holdout` splits), with the
    public bundle of its `dev` split."""
    catalog.ids("test"), catalog.ids("holdout")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / UPLOADS).mkdir(exist_ok=True)
    bundle = write_bundle(catalog, directory / BUNDLE, version)
    config = HostConfig(catalog=catalog.name, fingerprint=catalog.fingerprint, bundle_sha256=bundle, **limits)
    (directory / CONFIG).write_text(config.model_dump_json(indent=2))
    HostStore(directory / DB)
    return config


def confined(directory: Path, argv: list[str]) -> list[str]:
    """`argv` (the web process) in a bubblewrap where the file system is read-only but for the host's directory,
    the catalog cache (each instance's secret and answer key) is empty, and no capability is left: a web process
    taken over by its input reaches neither the key nor anything outside the host's files."""
    directory = directory.resolve()
    (directory / "tmp").mkdir(exist_ok=True)  # its temporary files' place, /tmp being read-only
    return ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", str(cache_root().resolve()),
            "--bind", str(directory), str(directory), "--setenv", "TMPDIR", str(directory / "tmp"), "--unshare-pid",
            "--unshare-ipc", "--unshare-uts", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--", *argv]


def host_catalog(config: HostConfig) -> Catalog:
    catalog = open_catalog(config.catalog)
    if catalog.fingerprint != config.fingerprint:
        raise CatalogError(f"the cache holds instance {catalog.fingerprint[:12]} of {config.catalog}, not the host's "
                           f"{config.fingerprint[:12]}")
    return catalog


class Cancelled(Exception):
    pass


def evaluate_submission(store: HostStore, catalog: Catalog, config: HostConfig, submission: Submission,
                        uploads: Path, limits: Limits = Limits(), cluster: RayCluster | None = None) -> None:
    """Every track the detector answers on the submission's sealed split, in the sandbox (of each node that answers
    for an organism, on a `cluster`); a run stored already (before a kill) is not run again, and one interrupted
    resumes from its journal."""
    split = submission.split
    try:
        upload = uploads / submission.source / submission.filename
        source = unpack(upload, upload.parent / "wheel") if upload.suffix == ".whl" else resolve(str(upload))
        first = Sandboxed(source, catalog, limits, query_budget=config.query_budget)  # checks the contract
    except (UnknownDetector, SandboxError, BadWheel) as e:
        store.finish(submission.id, "failed", str(e))
        return
    runs = planned_runs(first, catalog, split, set(Track))
    sizes = [len(catalog.ids(split, world)) for world, _ in runs]
    for i, (world, track) in enumerate(runs):
        executor = first if i == 0 else Sandboxed(source, catalog, limits, query_budget=config.query_budget)
        if store.has_run(executor.info, catalog_ref(catalog, split, world), track, executor.query_budget):
            executor.close()
            continue

        def progress(done: int, total: int, before: int = sum(sizes[:i])) -> None:
            if store.submission(submission.id).state == "cancelled":
                raise Cancelled
            store.progress(submission.id, before + done, sum(sizes))
        try:
            evaluate(on(cluster, executor), catalog, split, track, store, progress=progress, world=world)
        except Cancelled:
            return
    store.progress(submission.id, sum(sizes), sum(sizes))
    store.finish(submission.id, "scored")


def work(directory: Path, once: bool = False, poll_seconds: float = 1.0,
         log: Callable[[str], None] = print, cluster: RayCluster | None = None) -> None:
    """Evaluate queued submissions one at a time, resuming one left running (with `once`, until none is left), on a
    Ray `cluster` if given. One worker a host: a second one is refused while the first holds the lock (the kernel
    frees it when one dies)."""
    config = HostConfig.read(directory)
    store, catalog = HostStore(directory / DB), host_catalog(config)
    try:
        with FileLock(directory / LOCK, blocking=False), cluster.session() if cluster else contextlib.nullcontext():
            _work(directory, config, store, catalog, once, poll_seconds, log, cluster)
    except Timeout:
        raise CatalogError(f"another worker is evaluating for the host at {directory}") from None


def _work(directory: Path, config: HostConfig, store: HostStore, catalog: Catalog, once: bool, poll_seconds: float,
          log: Callable[[str], None], cluster: RayCluster | None) -> None:
    while True:
        submission = store.claim()
        if submission is None:
            if once:
                return
            time.sleep(poll_seconds)
            continue
        log(f"evaluating submission {submission.id} ({submission.filename}) on {submission.split}")
        try:
            evaluate_submission(store, catalog, config, submission, directory / UPLOADS, cluster=cluster)
        except Exception:  # the host's fault, not the detector's (those are recorded per organism): say so, go on
            log(traceback.format_exc())
            store.finish(submission.id, "failed", "the host could not evaluate it (its operator has the traceback)")
        log(f"submission {submission.id}: {store.submission(submission.id).state}")
