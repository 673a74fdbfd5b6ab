"""Leaderboard rows from run records, as a rich table or JSON."""

from __future__ import annotations

from rich.table import Table

from benchmark.records import RunRecord

COLUMNS = ("auroc", "tpr_at_1pct_fpr", "cross_entropy", "brier", "accuracy")


def leaderboard_rows(records: list[RunRecord]) -> list[dict]:
    """One row per run, best AUROC first within each catalog split, track and tier."""
    rows = []
    for r in records:
        low, high = r.interval("auroc")
        rows.append({
            "detector": r.detector.name, "tier": r.detector.tier.value, "track": r.track.value,
            "catalog": r.catalog.name, "fingerprint": r.catalog.fingerprint[:12], "world": r.catalog.world,
            "split": r.catalog.split, **{m: r.metric(m) for m in COLUMNS}, "auroc_ci_low": low, "auroc_ci_high": high,
            "failures": sum(p.error is not None for p in r.predictions), "organisms": len(r.predictions),
            "queries": sum(p.queries for p in r.predictions), "runtime_s": round(r.total_seconds, 2),
            "date": r.started_at.date().isoformat(), "source_sha256": r.detector.source_sha256, "run_id": r.run_id})
    return sorted(rows, key=lambda row: (row["catalog"], row["split"], row["track"], row["tier"], -(row["auroc"] or 0)))


def fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def fmt_interval(low: float | None, high: float | None) -> str:
    return "" if low is None or high is None else f"[{low:.2f}, {high:.2f}]"


def leaderboard_table(rows: list[dict]) -> Table:
    table = Table(title="dab leaderboard (audit track; AUROC with 95% bootstrap interval over organism groups)")
    for column in ("detector", "tier", "catalog", "split", "AUROC ↑", "95% CI", "TPR@1%FPR ↑", "CE ↓", "Brier ↓",
                   "acc ↑", "failed", "runtime"):
        table.add_column(column, justify="left" if column in ("detector", "tier", "catalog", "split") else "right")
    for row in rows:
        table.add_row(row["detector"], row["tier"], f"{row['catalog']} {row['fingerprint'][:8]}", row["split"],
                      fmt(row["auroc"]), fmt_interval(row["auroc_ci_low"], row["auroc_ci_high"]),
                      *(fmt(row[m]) for m in COLUMNS[1:]), f"{row['failures']}/{row['organisms']}",
                      f"{row['runtime_s']:.1f}s")
    return table
