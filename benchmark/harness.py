"""The harness: run one detector over one catalog split, keep every answer, and score it.

With a results store, each organism's answer is journaled as soon as it exists, so a run that is killed
resumes where it stopped: nothing finished is lost, nothing is counted twice.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from benchmark.api import Track
from benchmark.executors import DevOrganism, Executor
from benchmark.records import CatalogRef, Curve, DetectorInfo, Metric, Prediction, RunRecord, package_versions
from benchmark.scoring import score_audit, score_elicit, score_left_out, score_monitor
from benchmark.tracks import elicited, misbehaves, monitor_stream, planted
from benchmark.worlds import TRUSTED_INPUTS
from model_organisms import sealed
from model_organisms.catalog import Catalog


class Journal(Protocol):
    """Where a run's answers are kept as they come (the leaderboard's `ResultStore` is one)."""

    def resume(self, detector: DetectorInfo, catalog: CatalogRef, track: Track, query_budget: int | None
               ) -> tuple[str, datetime, dict[str, Prediction]]: ...

    def journal(self, run_id: str, prediction: Prediction) -> None: ...

    def add(self, record: RunRecord) -> None: ...


def catalog_ref(catalog: Catalog, split: str, world: str | None = None) -> CatalogRef:
    return CatalogRef(name=catalog.name, fingerprint=catalog.fingerprint, split=split,
                      world=world or catalog.manifest.world, trusted_inputs=TRUSTED_INPUTS)


def planned_runs(executor: Executor, catalog: Catalog, split: str, tracks: set[Track] | None = None
                 ) -> list[tuple[str, Track]]:
    """(world, track) of every run a detector makes on a split: the worlds it handles that the split has,
    times the tracks it answers. A world it does not handle is skipped, never failed."""
    return [(world, track) for world in catalog.worlds(split) if world in executor.worlds
            for track in sorted(executor.tracks & (tracks or set(Track)))]


def dev_organisms(catalog: Catalog, world: str | None = None) -> list[DevOrganism]:
    """The dev split's organisms of one world with their public labels (what `fit` may learn from)."""
    if "dev" not in catalog.manifest.splits:
        return []
    key = sealed.answer_key(catalog)
    return [DevOrganism(i, key[i].label, key[i].family, key[i].role)
            for i in catalog.ids("dev", world or catalog.manifest.world)]


def score(catalog: Catalog, track: Track, predictions: list[Prediction]) -> tuple[list[Metric], Curve | None]:
    """Join the answers with the sealed truth: the answer key, and for monitor and elicit what the organisms
    do when run on the streams and on the candidates."""
    key = sealed.answer_key(catalog)
    if track == Track.AUDIT:
        return score_audit(predictions, key)
    deceptive = [p.organism_id for p in predictions if key[p.organism_id].label == 1]
    if track == Track.MONITOR:
        truth = {oid: misbehaves(catalog, oid, monitor_stream(catalog, oid)) for oid in deceptive}
        return score_monitor(predictions, truth, key), None
    found = {p.organism_id: p for p in predictions}
    success = {oid: elicited(catalog, key[oid], found[oid].inputs or []) for oid in deceptive}
    hit = {oid: planted(catalog, key[oid], found[oid].inputs or []) for oid in deceptive}
    return score_elicit(predictions, success, hit, key), None


def left_out_devs(catalog: Catalog, world: str | None = None) -> dict[str, list[DevOrganism]]:
    """Dev without each family of its deceptive organisms (its twins too), for leave-one-family-out refits; none
    when dev holds fewer than two such families."""
    dev = dev_organisms(catalog, world)
    families = sorted({o.family for o in dev if o.label == 1})
    return {f: [o for o in dev if o.family != f] for f in families} if len(families) >= 2 else {}


def evaluate(executor: Executor, catalog: Catalog, split: str, track: Track = Track.AUDIT,
             store: Journal | None = None, progress: Callable[[int, int], None] | None = None,
             world: str | None = None) -> RunRecord:
    """Run one track on one world's organisms of a split (the catalog's own world by default) and score it;
    with `store`, resume and then store the run."""
    world = world or catalog.manifest.world
    ids = catalog.ids(split, world)
    ref = catalog_ref(catalog, split, world)
    budget = executor.query_budget
    run_id, started_at, done = (store.resume(executor.info, ref, track, budget) if store
                                else (uuid.uuid4().hex, datetime.now(UTC), {}))
    start = time.perf_counter()
    try:
        fit_error = executor.fit(dev_organisms(catalog, world))
        fit_seconds = time.perf_counter() - start
        # Leave-one-family-out: the detector fitted again without each family audits every organism of the split
        # again (all of them, so which ones are asked reveals no label).
        refit = track == Track.AUDIT and executor.fits and fit_error is None
        executor.refit(left_out_devs(catalog, world) if refit else {})
        pending = [oid for oid in ids if oid not in done]
        streams = {oid: monitor_stream(catalog, oid) for oid in pending} if track == Track.MONITOR else {}
        if progress:
            progress(len(ids) - len(pending), len(ids))
        for prediction in executor.answers(pending, track, streams):
            done[prediction.organism_id] = prediction
            if store:
                store.journal(run_id, prediction)
            if progress:
                progress(len(done), len(ids))
        left_out = executor.refitted_audits(ids)
    finally:
        executor.close()
    predictions = [done[oid] for oid in ids]
    metrics, roc = score(catalog, track, predictions)
    metrics += score_left_out(left_out, sealed.answer_key(catalog))
    record = RunRecord(run_id=run_id, track=track, query_budget=budget, started_at=started_at,
                       detector=executor.info, catalog=ref, fit_seconds=fit_seconds, fit_error=fit_error,
                       total_seconds=time.perf_counter() - start, predictions=predictions, left_out=left_out,
                       metrics=metrics, roc=roc, versions=package_versions(), device=executor.device)
    if store:
        store.add(record)
    return record
