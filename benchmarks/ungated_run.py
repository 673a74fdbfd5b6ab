"""Every baseline on a built instance whatever its shortcut gate says, into a database of its own: a measurement.

`dab run` refuses an instance that fails the shortcut gate, since a trivial detector would separate its labels and
its scores would rank nothing. A recipe under development still needs its numbers (how far black-box search
gets on drawn conditions, `docs/headroom.md`), so this runs `dab run`'s loop on the instance directory given, and
stores the runs in `--db` (never the default results database), to be printed by `benchmarks/results_table.py`.
Usage: python benchmarks/ungated_run.py --instance ~/.cache/dab/catalogs/NAME-FINGERPRINT --db drawn.sqlite
       [--detector trigger_search ...] [--split test ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.api import DEFAULT_QUERY_BUDGET, Track
from benchmark.cli import _run
from benchmark.executors import InProcess
from benchmark.harness import planned_runs
from benchmark.registry import detector_names, load_detector
from leaderboard.store import ResultStore
from model_organisms.catalog import Catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instance", type=Path, required=True)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--detector", nargs="+", default=None)
    parser.add_argument("--split", nargs="+", default=None)
    args = parser.parse_args()
    built, store = Catalog(args.instance), ResultStore(args.db)
    for split in args.split or list(built.manifest.splits):
        for name in args.detector or detector_names():
            executor = InProcess(load_detector(name), built, DEFAULT_QUERY_BUDGET)
            for world, track in planned_runs(executor, built, split, set(Track)):
                _run(executor, built, split, world, track, store, False)


if __name__ == "__main__":
    main()
