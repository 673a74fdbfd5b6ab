"""The results table of `docs/results.md`, printed from a results database as Markdown.

One row per track, detector, tier and world; one column per split of the newest run of each on one catalog
instance. Each cell: the headline metric [95% interval] · the track's second metric (audit: TPR at 1% FPR, and
leave-one-family-out AUROC where the detector fits; monitor: mean TPR at 1% FPR; elicit: planted found).
Usage: python benchmarks/results_table.py [--catalog standard] [--db results.sqlite]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.records import RunRecord
from leaderboard.store import ResultStore
from leaderboard.tables import headline

SECOND = {"audit": ["tpr_at_1pct_fpr", "lofo_auroc"], "monitor": ["tpr_at_1pct_fpr"], "elicit": ["planted"]}
SPLITS = ("dev", "test", "holdout")


def cell(record: RunRecord) -> str:
    track = record.track.value
    value = record.shown(headline(track))
    if not isinstance(value, float):
        return value or "—"
    low, high = record.interval(headline(track))
    interval = f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else ""
    more = [v for m in SECOND[track] if isinstance(v := record.shown(m), float)]
    return f"{value:.2f}{interval}" + "".join(f" · {v:.2f}" for v in more)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", default="standard")
    parser.add_argument("--db", type=Path, default=None)
    args = parser.parse_args()
    records = [r for r in ResultStore(args.db).latest_runs() if r.catalog.name == args.catalog]
    instances = sorted({r.catalog.fingerprint[:12] for r in records})
    if len(instances) != 1:
        raise SystemExit(f"{args.catalog}: {len(instances)} instances in the database ({', '.join(instances)}); "
                         "give a database of one")
    rows: dict[tuple[str, str, str, str], dict[str, str]] = {}
    for r in records:
        key = (r.track.value, r.detector.name, r.detector.tier.value, r.catalog.world)
        rows.setdefault(key, {})[r.catalog.split] = cell(r)
    order = {"audit": 0, "monitor": 1, "elicit": 2}
    print(f"instance {instances[0]}\n")
    print("| track | detector | tier | world | " + " | ".join(SPLITS) + " |")
    print("|---|---|---|---|" + "---|" * len(SPLITS))
    for (track, detector, tier, world), cells in sorted(rows.items(), key=lambda kv: (
            order[kv[0][0]], kv[0][2], kv[0][3], kv[0][1])):
        tier_words, world_words = tier.replace("_", " "), "language" if world == "assistant" else world
        print(f"| {track} | {detector} | {tier_words} | {world_words} | "
              + " | ".join(cells.get(s, "") for s in SPLITS) + " |")


if __name__ == "__main__":
    main()
