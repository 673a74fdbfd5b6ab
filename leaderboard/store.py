"""The results store: a SQLite file that keeps every run record for good.

The whole record is stored as JSON (so nothing is lost when scoring changes) next to indexed columns and one
row per metric (numbers as numbers) for queries. Every write is one transaction in WAL mode, so concurrent
submissions interleave safely and a killed command never leaves half a run behind. Answers of a run in
progress are journaled per organism, so the run resumes after a kill. The schema carries a version
(``PRAGMA user_version``) and migrates forward, one step at a time.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import platformdirs

from benchmark.api import Track
from benchmark.records import UNRECORDED_TRUSTED_INPUTS, CatalogRef, DetectorInfo, Prediction, RunRecord

MIGRATIONS: list[str] = [
    # 1: runs and their metrics.
    """
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY, detector TEXT NOT NULL, source_sha256 TEXT NOT NULL, tier TEXT NOT NULL,
        track TEXT NOT NULL, catalog TEXT NOT NULL, fingerprint TEXT NOT NULL, split TEXT NOT NULL,
        started_at TEXT NOT NULL, total_seconds REAL NOT NULL, record TEXT NOT NULL);
    CREATE INDEX runs_by_key ON runs (detector, source_sha256, fingerprint, split, track, tier);
    CREATE TABLE metrics (
        run_id TEXT NOT NULL REFERENCES runs (run_id), metric TEXT NOT NULL, value REAL,
        PRIMARY KEY (run_id, metric));
    """,
    # 2: per-family metrics with intervals; journal of runs in progress; submissions to sealed splits.
    """
    CREATE TABLE metrics_v2 (
        run_id TEXT NOT NULL REFERENCES runs (run_id), metric TEXT NOT NULL, family TEXT NOT NULL DEFAULT '',
        value REAL, ci_low REAL, ci_high REAL, PRIMARY KEY (run_id, metric, family));
    INSERT INTO metrics_v2 (run_id, metric, value) SELECT run_id, metric, value FROM metrics;
    DROP TABLE metrics;
    ALTER TABLE metrics_v2 RENAME TO metrics;
    CREATE TABLE pending (
        run_key TEXT PRIMARY KEY, run_id TEXT NOT NULL, started_at TEXT NOT NULL);
    CREATE TABLE answers (
        run_id TEXT NOT NULL, organism_id TEXT NOT NULL, prediction TEXT NOT NULL,
        PRIMARY KEY (run_id, organism_id));
    CREATE TABLE submissions (
        detector TEXT NOT NULL, catalog TEXT NOT NULL, split TEXT NOT NULL, submitted_at TEXT NOT NULL);
    """,
    # 3: a host's API tokens (hashes) and its queue of submissions (`leaderboard.host_store`).
    """
    CREATE TABLE tokens (name TEXT PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL);
    CREATE TABLE host_submissions (
        id TEXT PRIMARY KEY, token TEXT NOT NULL, filename TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
        state TEXT NOT NULL, reason TEXT, organisms_done INTEGER NOT NULL, organisms INTEGER,
        created_at TEXT NOT NULL, finished_at TEXT, split TEXT NOT NULL, source TEXT NOT NULL);
    CREATE INDEX host_queue ON host_submissions (state, created_at);
    CREATE INDEX host_quota ON host_submissions (token, created_at);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(Exception):
    pass


def default_db_path() -> Path:
    """``$DAB_DB`` or ``results.sqlite`` in the user's data directory."""
    return Path(os.environ.get("DAB_DB") or Path(platformdirs.user_data_dir("dab")) / "results.sqlite")


def run_key(detector: DetectorInfo, catalog: CatalogRef, track: Track, query_budget: int | None) -> str:
    """What makes two runs the same run: the same detector code on the same catalog split, world, public trusted
    inputs, track, tier and query budget."""
    parts = (detector.name, detector.source_sha256, detector.tier.value, catalog.fingerprint, catalog.split,
             track.value, str(query_budget), str(catalog.trusted_inputs)) + (
             (catalog.world,) if catalog.world != "assistant" else ())
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


class ResultStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._connect() as db:
                self._migrate(db)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"results database {self.path} is unreadable: {e}") from None

    def _migrate(self, db: sqlite3.Connection) -> None:
        found = db.execute("PRAGMA user_version").fetchone()[0]
        if found > SCHEMA_VERSION:
            raise StoreError(f"results database {self.path} has schema {found}, newer than this dab ({SCHEMA_VERSION})")
        for version in range(found, SCHEMA_VERSION):
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {version + 1}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    def add(self, record: RunRecord) -> None:
        """Store a finished run and drop its journal, in one transaction."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.run_id, record.detector.name, record.detector.source_sha256, record.detector.tier.value,
                 record.track.value, record.catalog.name, record.catalog.fingerprint, record.catalog.split,
                 record.started_at.isoformat(), record.total_seconds, record.model_dump_json()))
            db.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)",
                           [(record.run_id, m.metric, m.family or "", m.value, m.ci_low, m.ci_high)
                            for m in record.metrics])
            db.execute("DELETE FROM answers WHERE run_id = ?", (record.run_id,))
            db.execute("DELETE FROM pending WHERE run_id = ?", (record.run_id,))

    def resume(self, detector: DetectorInfo, catalog: CatalogRef, track: Track, query_budget: int | None
               ) -> tuple[str, datetime, dict[str, Prediction]]:
        """The run id, start time and answers so far of this run: a new run, or one that was interrupted."""
        key = run_key(detector, catalog, track, query_budget)
        with self._connect() as db:
            row = db.execute("SELECT run_id, started_at FROM pending WHERE run_key = ?", (key,)).fetchone()
            if row is None:
                run_id, started_at = uuid.uuid4().hex, datetime.now(UTC)
                db.execute("INSERT INTO pending VALUES (?, ?, ?)", (key, run_id, started_at.isoformat()))
                return run_id, started_at, {}
            answers = db.execute("SELECT prediction FROM answers WHERE run_id = ?", (row[0],)).fetchall()
        done = {p.organism_id: p for p in (Prediction.model_validate_json(a[0]) for a in answers)}
        return row[0], datetime.fromisoformat(row[1]), done

    def journal(self, run_id: str, prediction: Prediction) -> None:
        with self._connect() as db:
            db.execute("INSERT INTO answers VALUES (?, ?, ?)", (run_id, prediction.organism_id,
                                                               prediction.model_dump_json()))

    def is_pending(self, detector: DetectorInfo, catalog: CatalogRef, track: Track, query_budget: int | None) -> bool:
        with self._connect() as db:
            key = run_key(detector, catalog, track, query_budget)
            return db.execute("SELECT 1 FROM pending WHERE run_key = ?", (key,)).fetchone() is not None

    def count_submission(self, detector: str, catalog: str, split: str, per_day: int) -> None:
        """Record a submission to a sealed split, refusing it when the detector's daily quota is used up."""
        now = datetime.now(UTC)
        with self._connect() as db:
            used = db.execute("SELECT COUNT(*) FROM submissions WHERE detector = ? AND catalog = ? AND split = ? "
                              "AND submitted_at > ?",
                              (detector, catalog, split, (now - timedelta(days=1)).isoformat())).fetchone()[0]
            if used >= per_day:
                raise StoreError(f"detector {detector!r} has used its {per_day} submissions to {catalog}/{split} "
                                 f"in the last 24 hours; try again later")
            db.execute("INSERT INTO submissions VALUES (?, ?, ?, ?)", (detector, catalog, split, now.isoformat()))

    def get(self, run_id: str) -> RunRecord:
        with self._connect() as db:
            row = db.execute("SELECT record FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"no run {run_id!r} in {self.path}")
        return RunRecord.model_validate_json(row[0])

    def has_run(self, detector: DetectorInfo, catalog: CatalogRef, track: Track, query_budget: int | None) -> bool:
        """Whether this exact detector code already finished on this catalog split, world, public trusted inputs,
        track and budget (so a re-run can skip it)."""
        with self._connect() as db:
            row = db.execute(
                "SELECT 1 FROM runs WHERE detector = ? AND source_sha256 = ? AND fingerprint = ? AND split = ? "
                "AND track = ? AND tier = ? AND json_extract(record, '$.query_budget') IS ? "
                "AND json_extract(record, '$.catalog.world') = ? "
                "AND coalesce(json_extract(record, '$.catalog.trusted_inputs'), ?) = ? LIMIT 1",
                (detector.name, detector.source_sha256, catalog.fingerprint, catalog.split, track.value,
                 detector.tier.value, query_budget, catalog.world, UNRECORDED_TRUSTED_INPUTS,
                 catalog.trusted_inputs)).fetchone()
        return row is not None

    def latest_runs(self) -> list[RunRecord]:
        """The newest run per detector, tier, track, catalog fingerprint, split and world."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT record FROM runs r WHERE started_at = (SELECT MAX(started_at) FROM runs s WHERE "
                "s.detector = r.detector AND s.tier = r.tier AND s.track = r.track AND "
                "s.fingerprint = r.fingerprint AND s.split = r.split AND "
                "json_extract(s.record, '$.catalog.world') = json_extract(r.record, '$.catalog.world')) "
                "ORDER BY catalog, split, track, tier, detector").fetchall()
        return [RunRecord.model_validate_json(r[0]) for r in rows]
