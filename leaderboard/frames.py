"""Results where researchers analyse them: every stored metric as a pandas DataFrame."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd

from leaderboard.store import ResultStore

COLUMNS = """
    SELECT r.run_id, r.detector, r.source_sha256, r.tier, r.track, r.catalog, r.fingerprint AS instance, r.split,
           json_extract(r.record, '$.catalog.world') AS world,
           json_extract(r.record, '$.query_budget') AS query_budget, r.started_at AS date,
           m.metric, NULLIF(m.family, '') AS family, m.value, m.ci_low, m.ci_high
    FROM runs r JOIN metrics m USING (run_id)
    ORDER BY r.started_at, r.run_id, m.metric, m.family
"""


def results(db: Path | str | None = None) -> pd.DataFrame:
    """One row per run, metric and family (family None: the whole split) of every stored run: the value with its
    95% interval, the detector (name, tier, source sha256), the catalog instance (its fingerprint), split,
    world, track, query budget and date (`$DAB_DB` or the user's results database by default)."""
    path = ResultStore(Path(db) if db else None).path  # creates or migrates it, so an empty one has the columns
    with sqlite3.connect(path) as connection:
        frame = pd.read_sql_query(COLUMNS, connection)
    frame["date"] = pd.to_datetime(frame["date"], format="ISO8601")
    return frame
