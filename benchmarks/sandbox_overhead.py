"""Overhead of the sandbox: the same detector on the same organisms, in process and sandboxed, in one run.

Prints seconds per organism both ways and their ratio. Usage: python benchmarks/sandbox_overhead.py
[--catalog tiny] [--detector behavioural] [--split test]. Builds the catalog first if needed.
"""

from __future__ import annotations

import argparse
import time

from benchmark.executors import InProcess
from benchmark.harness import evaluate
from benchmark.registry import load_detector, resolve
from benchmark.sandbox import Sandboxed, sandbox_unavailable
from model_organisms.build import build_catalog
from model_organisms.catalog import load_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--catalog", default="tiny")
    parser.add_argument("--detector", default="behavioural")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    reason = sandbox_unavailable()
    if reason:
        raise SystemExit(f"sandbox unavailable: {reason}")
    catalog = build_catalog(load_spec(args.catalog))
    n = len(catalog.ids(args.split))

    start = time.perf_counter()
    evaluate(InProcess(load_detector(args.detector), catalog), catalog, args.split)
    local = (time.perf_counter() - start) / n

    start = time.perf_counter()
    evaluate(Sandboxed(resolve(args.detector), catalog), catalog, args.split)
    sandboxed = (time.perf_counter() - start) / n

    print(f"{args.detector} on {catalog.name}/{args.split} ({n} organisms)")
    print(f"in process: {local:.2f} s per organism")
    print(f"sandboxed:  {sandboxed:.2f} s per organism (process start, imports and fit included)")
    print(f"ratio sandboxed / in process: {sandboxed / local:.2f}")


if __name__ == "__main__":
    main()
