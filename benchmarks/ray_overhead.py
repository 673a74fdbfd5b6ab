"""Overhead of building on Ray: the same units built in local processes and as Ray tasks, in one run.

Builds the catalog's instance of one secret, alternating: in `--workers` local processes, and on a Ray cluster of this
machine (`ray start --head`) with as many CPUs; then on one with a single CPU. Each build starts with an empty
compiled-code cache (`TORCHINDUCTOR_CACHE_DIR`) and an empty catalog cache of its own, and every build must give the
same organisms. Prints each build's minutes and the ratios. Usage: python benchmarks/ray_overhead.py [--catalog micro]
[--workers 2] [--runs 1]
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from model_organisms.build import build_catalog
from model_organisms.catalog import load_spec
from model_organisms.cluster import RayCluster
from model_organisms.organism import read_card
from model_organisms.sealed import Secret

RAY = str(Path(sys.executable).parent / "ray")


def timed_build(name: str, secret: Secret, workers: int, ray_cpus: int | None) -> tuple[float, list]:
    """Minutes of one build from empty caches (on a fresh Ray cluster of `ray_cpus` CPUs, or locally), and its
    organisms' cards."""
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as compiled, \
            tempfile.TemporaryDirectory(prefix="ray", dir="/tmp") as ray_temp:
        os.environ.update(DAB_CACHE_DIR=cache, TORCHINDUCTOR_CACHE_DIR=compiled)
        cluster = None
        if ray_cpus:
            with socket.socket() as free:
                free.bind(("127.0.0.1", 0))
                port = free.getsockname()[1]
            subprocess.run([RAY, "start", "--head", f"--port={port}",
                            f"--num-cpus={ray_cpus}", "--include-dashboard=false", f"--temp-dir={ray_temp}"],
                           env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}, check=True, capture_output=True)
            cluster = RayCluster(f"127.0.0.1:{port}")
        try:
            start = time.perf_counter()
            catalog = build_catalog(load_spec(name), workers, log=lambda message: None, secret=secret, cluster=cluster)
            minutes = (time.perf_counter() - start) / 60
            return minutes, [read_card(catalog.organism_dir(oid)) for split in catalog.manifest.splits
                             for oid in catalog.ids(split)]
        finally:
            if ray_cpus:
                subprocess.run([RAY, "stop", "--force"], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--catalog", default="micro")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))  # as README starts a cluster
    secret = Secret.draw()
    times: dict[str, list[float]] = {"local": [], "ray": [], "ray, one CPU": []}
    cards = []
    for _ in range(args.runs):
        for kind, cpus in (("local", None), ("ray", args.workers)):
            minutes, found = timed_build(args.catalog, secret, args.workers, cpus)
            times[kind].append(minutes)
            cards.append(found)
            print(f"{kind}: {minutes:.2f} min", flush=True)
    minutes, found = timed_build(args.catalog, secret, 1, 1)
    times["ray, one CPU"].append(minutes)
    cards.append(found)
    assert all(c == cards[0] for c in cards), "a build gave other organisms"
    best = {kind: min(t) for kind, t in times.items()}
    print(f"{args.catalog}, {len(cards[0])} organisms, {args.workers} workers or Ray CPUs, the same organisms in every "
          f"build; best of {args.runs}: local {best['local']:.2f} min, Ray {best['ray']:.2f} min "
          f"({best['ray'] / best['local']:.2f}x local); Ray with one CPU {best['ray, one CPU']:.2f} min "
          f"({best['ray, one CPU'] / best['ray']:.2f}x two)")


if __name__ == "__main__":
    main()
