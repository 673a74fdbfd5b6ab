"""Leaderboard rows from run records, as a rich table or JSON."""

from __future__ import annotations

from rich.table import Table

from benchmark.records import RunRecord

COLUMNS = ("auroc", "cross_entropy", "brier", "accuracy")


def leaderboard_rows(records: list[RunRecord]) -> list[dict]:
    """One row per run, best AUROC first within each catalog split."""
    rows = [{"detector": r.detector.name, "tier": r.detector.tier.value, "track": r.track.value,
             "catalog": r.catalog.name, "fingerprint": r.catalog.fingerprint[:12], "split": r.catalog.split,
             **{m: r.metric(m) for m in COLUMNS},
             "failures": sum(p.error is not None for p in r.predictions), "organisms": len(r.predictions),
             "runtime_s": round(r.total_seconds, 2), "run_id": r.run_id}
            for r in records]
    return sorted(rows, key=lambda row: (row["catalog"], row["split"], row["track"], -(row["auroc"] or 0)))


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def leaderboard_table(rows: list[dict]) -> Table:
    table = Table(title="dab leaderboard (audit track)")
    for column in ("detector", "tier", "catalog", "split", "AUROC ↑", "CE ↓", "Brier ↓", "acc ↑", "failed",
                   "runtime"):
        table.add_column(column, justify="left" if column in ("detector", "tier", "catalog", "split") else "right")
    for row in rows:
        table.add_row(row["detector"], row["tier"], f"{row['catalog']} {row['fingerprint'][:8]}", row["split"],
                      *(_fmt(row[m]) for m in COLUMNS), f"{row['failures']}/{row['organisms']}",
                      f"{row['runtime_s']:.1f}s")
    return table
