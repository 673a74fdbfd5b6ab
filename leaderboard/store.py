"""The results store: a SQLite file that keeps every run record for good.

The whole record is stored as JSON (so nothing is lost when scoring changes) next to indexed columns and one
row per metric (numbers as numbers) for queries. Writes are single transactions in WAL mode, so a failed or
concurrent command never leaves half a run behind.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import platformdirs

from benchmark.records import RunRecord

STORE_SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    detector TEXT NOT NULL,
    source_sha256 TEXT NOT NULL,
    tier TEXT NOT NULL,
    track TEXT NOT NULL,
    catalog TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    split TEXT NOT NULL,
    started_at TEXT NOT NULL,
    total_seconds REAL NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_key ON runs (detector, source_sha256, fingerprint, split, track, tier);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    metric TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, metric)
);
"""


class StoreError(Exception):
    pass


def default_db_path() -> Path:
    """``$DAB_DB`` or ``results.sqlite`` in the user's data directory."""
    return Path(os.environ.get("DAB_DB") or Path(platformdirs.user_data_dir("dab")) / "results.sqlite")


class ResultStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._connect() as db:
                found = db.execute("PRAGMA user_version").fetchone()[0]
                if found > STORE_SCHEMA_VERSION:
                    raise StoreError(f"results database {self.path} has schema {found}, newer than this dab "
                                     f"({STORE_SCHEMA_VERSION})")
                db.executescript(SCHEMA)
                db.execute(f"PRAGMA user_version = {STORE_SCHEMA_VERSION}")
        except sqlite3.DatabaseError as e:
            raise StoreError(f"results database {self.path} is unreadable: {e}") from None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode = WAL")
            with db:
                yield db
        finally:
            db.close()

    def add(self, record: RunRecord) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.run_id, record.detector.name, record.detector.source_sha256, record.detector.tier.value,
                 record.track.value, record.catalog.name, record.catalog.fingerprint, record.catalog.split,
                 record.started_at.isoformat(), record.total_seconds, record.model_dump_json()))
            db.executemany("INSERT INTO metrics VALUES (?, ?, ?)",
                           [(record.run_id, m.metric, m.value) for m in record.metrics])

    def get(self, run_id: str) -> RunRecord:
        with self._connect() as db:
            row = db.execute("SELECT record FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"no run {run_id!r} in {self.path}")
        return RunRecord.model_validate_json(row[0])

    def has_run(self, detector: str, source_sha256: str, fingerprint: str, split: str, track: str,
                tier: str) -> bool:
        """Whether this exact detector code already ran on this catalog split (so a re-run can skip it)."""
        with self._connect() as db:
            row = db.execute(
                "SELECT 1 FROM runs WHERE detector = ? AND source_sha256 = ? AND fingerprint = ? AND split = ? "
                "AND track = ? AND tier = ? LIMIT 1", (detector, source_sha256, fingerprint, split, track, tier)
            ).fetchone()
        return row is not None

    def latest_runs(self) -> list[RunRecord]:
        """The newest run per detector, tier, track, catalog fingerprint and split."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT record FROM runs r WHERE started_at = (SELECT MAX(started_at) FROM runs s WHERE "
                "s.detector = r.detector AND s.tier = r.tier AND s.track = r.track AND "
                "s.fingerprint = r.fingerprint AND s.split = r.split) "
                "ORDER BY catalog, split, track, tier, detector").fetchall()
        return [RunRecord.model_validate_json(r[0]) for r in rows]
