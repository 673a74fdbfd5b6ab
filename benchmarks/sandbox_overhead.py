"""Overhead of the sandbox: the same detector on the same organisms, in process and sandboxed, in one run.

Runs both ways `--runs` times, alternating, and prints the median seconds per organism of each and their ratio
(the sandboxed time includes starting its zygote, imports and fitting). Usage: python
benchmarks/sandbox_overhead.py [--catalog quick] [--detector behavioural] [--split test] [--runs 3]. Builds the
catalog first if needed.
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmark.executors import InProcess
from benchmark.harness import evaluate
from benchmark.registry import load_detector, resolve
from benchmark.sandbox import Sandboxed, sandbox_unavailable
from model_organisms.build import build_catalog
from model_organisms.catalog import Catalog, load_spec


def seconds_per_organism(executor: InProcess | Sandboxed, catalog: Catalog, split: str, start: float) -> float:
    evaluate(executor, catalog, split)
    return (time.perf_counter() - start) / len(catalog.ids(split))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--catalog", default="quick")
    parser.add_argument("--detector", default="behavioural")
    parser.add_argument("--split", default="test")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if reason := sandbox_unavailable():
        raise SystemExit(f"sandbox unavailable: {reason}")
    catalog = build_catalog(load_spec(args.catalog))
    local, sandboxed = [], []
    for _ in range(args.runs):
        start = time.perf_counter()
        local.append(seconds_per_organism(InProcess(load_detector(args.detector), catalog), catalog, args.split,
                                          start))
        start = time.perf_counter()
        sandboxed.append(seconds_per_organism(Sandboxed(resolve(args.detector), catalog), catalog, args.split,
                                              start))
    print(f"{args.detector} on {catalog.name}/{args.split} ({len(catalog.ids(args.split))} organisms), "
          f"{args.runs} alternating runs")
    print(f"in process: {statistics.median(local):.2f} s per organism (runs: {', '.join(f'{t:.2f}' for t in local)})")
    print(f"sandboxed:  {statistics.median(sandboxed):.2f} s per organism (runs: "
          f"{', '.join(f'{t:.2f}' for t in sandboxed)})")
    print(f"ratio of medians, sandboxed / in process: {statistics.median(sandboxed) / statistics.median(local):.2f}")


if __name__ == "__main__":
    main()
