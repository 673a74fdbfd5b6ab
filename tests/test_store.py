import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from benchmark.api import AccessTier, Track
from benchmark.worlds import TRUSTED_INPUTS
from benchmark.records import UNRECORDED_TRUSTED_INPUTS, CatalogRef, DetectorInfo, Metric, Prediction, RunRecord
from leaderboard.store import ResultStore, StoreError
from leaderboard.tables import leaderboard_rows


def make_record(run_id: str, auroc: float, started: int = 0) -> RunRecord:
    return RunRecord(
        run_id=run_id, track=Track.AUDIT, started_at=datetime(2026, 1, 1, 0, started, tzinfo=UTC),
        detector=DetectorInfo(name="probe", source_sha256="ab" * 32, tier=AccessTier.WHITE_BOX),
        catalog=CatalogRef(name="tiny", fingerprint="f" * 64, split="test"), fit_seconds=0.5, total_seconds=2.0,
        predictions=[Prediction(organism_id="a1", score=0.9, seconds=0.1, queries=3),
                     Prediction(organism_id="b2", score=None, error="raised RuntimeError", seconds=0.1,
                                queries=0)],
        metrics=[Metric(metric="auroc", value=auroc, higher_is_better=True),
                 Metric(metric="cross_entropy", value=None, higher_is_better=False)])


def test_a_run_round_trips_through_sqlite(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "r.sqlite")
    record = make_record("run1", 0.75)
    store.add(record)
    reopened = ResultStore(tmp_path / "r.sqlite")
    assert reopened.get("run1") == record
    assert reopened.has_run(record.detector, record.catalog, Track.AUDIT, None)
    other_code = record.detector.model_copy(update={"source_sha256": "cd" * 32})
    assert not reopened.has_run(other_code, record.catalog, Track.AUDIT, None)
    with sqlite3.connect(tmp_path / "r.sqlite") as db:  # numbers are stored as numbers
        assert db.execute("SELECT typeof(value), value FROM metrics WHERE metric = 'auroc'").fetchone() == ("real", 0.75)


def test_a_run_on_other_public_inputs_is_not_the_same_run(tmp_path: Path) -> None:
    """Detectors read the public trusted inputs, so a run made when there were 256 of them (its record predates
    the field) is not skipped now that there are more."""
    store = ResultStore(tmp_path / "r.sqlite")
    record = make_record("run1", 0.75)
    store.add(record)
    with sqlite3.connect(tmp_path / "r.sqlite") as db:
        db.execute("UPDATE runs SET record = json_remove(record, '$.catalog.trusted_inputs')")
    now = record.catalog.model_copy(update={"trusted_inputs": TRUSTED_INPUTS})
    assert TRUSTED_INPUTS != UNRECORDED_TRUSTED_INPUTS and not store.has_run(record.detector, now, Track.AUDIT, None)
    assert store.has_run(record.detector, record.catalog, Track.AUDIT, None)


def test_leaderboard_shows_the_newest_run_per_detector_and_split(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "r.sqlite")
    store.add(make_record("old", 0.6, started=1))
    store.add(make_record("new", 0.8, started=2))
    rows = leaderboard_rows(store.latest_runs())
    assert [(r["run_id"], r["auroc"], r["failures"]) for r in rows] == [("new", 0.8, 1)]


def test_a_duplicate_run_id_is_refused_and_the_stored_run_kept(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "r.sqlite")
    store.add(make_record("run1", 0.75))
    with pytest.raises(sqlite3.IntegrityError):
        store.add(make_record("run1", 0.10))
    assert store.get("run1").metric("auroc") == 0.75
    assert len(store.latest_runs()) == 1


def test_a_corrupt_database_gives_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="unreadable"):
        ResultStore(path)
    assert path.read_bytes() == b"this is not a database" * 100


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer"):
        ResultStore(path)


def test_two_writers_at_once_lose_no_row(tmp_path: Path) -> None:
    import subprocess
    import sys
    path = tmp_path / "r.sqlite"
    ResultStore(path)
    code = (
        "import sys; sys.path.insert(0, {tests!r}); from test_store import make_record; "
        "from leaderboard.store import ResultStore; s = ResultStore({path!r}); "
        "[s.add(make_record(f'{{sys.argv[1]}}-{{i}}', i / 40)) for i in range(40)]"
    ).format(tests=str(Path(__file__).parent), path=str(path))
    writers = [subprocess.Popen([sys.executable, "-c", code, name]) for name in ("a", "b")]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 80
        assert db.execute("SELECT COUNT(*) FROM metrics WHERE metric = 'auroc'").fetchone()[0] == 80
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store = ResultStore(path)
    assert store.get("a-39").metric("auroc") == 39 / 40 and store.get("b-0").metric("auroc") == 0


def test_a_version_1_database_migrates_forward_keeping_its_runs(tmp_path: Path) -> None:
    from leaderboard.store import MIGRATIONS, SCHEMA_VERSION
    path = tmp_path / "old.sqlite"
    record = make_record("old-run", 0.7)
    with sqlite3.connect(path) as db:
        db.executescript(MIGRATIONS[0])
        db.execute("PRAGMA user_version = 1")
        db.execute("INSERT INTO runs VALUES (?, 'probe', ?, 'white_box', 'audit', 'tiny', ?, 'test', ?, 2.0, ?)",
                   ("old-run", "ab" * 32, "f" * 64, record.started_at.isoformat(), record.model_dump_json()))
        db.execute("INSERT INTO metrics VALUES ('old-run', 'auroc', 0.7)")
    store = ResultStore(path)
    assert store.get("old-run") == record
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("SELECT metric, family, value FROM metrics").fetchall() == [("auroc", "", 0.7)]
