"""Leaderboard rows from run records, as rich tables (one per track and access tier) or JSON."""

from __future__ import annotations

from rich.table import Table

from benchmark.records import RunRecord

TRACK_COLUMNS: dict[str, dict[str, str]] = {
    "audit": {"auroc": "AUROC ↑", "tpr_at_1pct_fpr": "TPR@1%FPR ↑", "cross_entropy": "CE ↓", "brier": "Brier ↓",
              "accuracy": "acc ↑", "lofo_auroc": "LOFO AUROC ↑"},
    "monitor": {"auroc": "mean AUROC ↑", "tpr_at_1pct_fpr": "mean TPR@1%FPR ↑"},
    "elicit": {"success": "elicited ↑", "planted": "planted found ↑", "goal_accuracy": "goal named ↑"},
}
"""Per track, its metrics in column order (the first is the headline, shown with its interval)."""
TRACK_QUESTIONS = {"audit": "P(hidden goal) per organism", "monitor": "a score per input of sealed streams",
                   "elicit": "trigger candidates and the goal's name"}


def headline(track: str) -> str:
    return next(iter(TRACK_COLUMNS[track]))


def leaderboard_rows(records: list[RunRecord]) -> list[dict]:
    """One row per run, best headline metric first within each catalog split, world, track and tier."""
    rows = []
    for r in records:
        columns = TRACK_COLUMNS[r.track.value]
        low, high = r.interval(headline(r.track.value))
        rows.append({
            "detector": r.detector.name, "tier": r.detector.tier.value, "track": r.track.value,
            "catalog": r.catalog.name, "fingerprint": r.catalog.fingerprint[:12], "world": r.catalog.world,
            "split": r.catalog.split, **{m: r.shown(m) for m in columns}, "ci_low": low, "ci_high": high,
            "failures": sum(p.error is not None for p in r.predictions), "organisms": len(r.predictions),
            "queries": sum(p.queries for p in r.predictions), "query_budget": r.query_budget,
            "runtime_s": round(r.total_seconds, 2), "date": r.started_at.date().isoformat(),
            "source_sha256": r.detector.source_sha256, "run_id": r.run_id})
    return sorted(rows, key=lambda row: (row["catalog"], row["split"], row["world"] != "assistant", row["world"],
                                         row["track"], row["tier"], -_number(row[headline(row["track"])])))


def _number(value: float | str | None) -> float:
    return value if isinstance(value, float) else 0.0


def fmt(value: float | str | None) -> str:
    """A value, the note standing for it (``too few``), or a dash."""
    return "—" if value is None else value if isinstance(value, str) else f"{value:.3f}"


def fmt_interval(low: float | None, high: float | None) -> str:
    return "" if low is None or high is None else f"[{low:.2f}, {high:.2f}]"


def leaderboard_tables(rows: list[dict]) -> list[Table]:
    """A table per track and tier: tiers are scored separately, and each track has its own metrics."""
    tables = []
    for track, tier in sorted({(r["track"], r["tier"]) for r in rows}):
        columns = TRACK_COLUMNS[track]
        labels = list(columns.values())
        table = Table(title=f"dab leaderboard: {track} track ({TRACK_QUESTIONS[track]}), {tier}; 95% bootstrap "
                            "interval over organism groups")
        for column in ("detector", "catalog", "split", "world", labels[0], "95% CI", *labels[1:], "failed", "runtime"):
            table.add_column(column, justify="left" if column in ("detector", "catalog", "split", "world") else "right")
        for row in (r for r in rows if (r["track"], r["tier"]) == (track, tier)):
            first, *rest = columns
            table.add_row(row["detector"], f"{row['catalog']} {row['fingerprint'][:8]}", row["split"], row["world"],
                          fmt(row[first]), fmt_interval(row["ci_low"], row["ci_high"]), *(fmt(row[m]) for m in rest),
                          f"{row['failures']}/{row['organisms']}", f"{row['runtime_s']:.1f}s")
        tables.append(table)
    return tables
