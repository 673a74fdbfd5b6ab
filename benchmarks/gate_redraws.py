"""How often a new instance would fail the shortcut gate by the draw of its sealed splits alone.

Reads every trivial feature (`shortcuts.trivial_features`) of a built catalog's language models, then draws
splits of a given size from its pairs and decoys, every split of the catalog pooled, and counts the draws on
which the gate (`shortcuts.confident_auroc`, corrected for as many features as the catalog's gate tried)
fails on each feature. `ensure_built` in `benchmark/cli.py` draws another instance when one fails.
Usage: python benchmarks/gate_redraws.py [--catalog quick] [--pairs 3 4] [--draws 1000]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from benchmark.scoring import group_resamples
from benchmark.shortcuts import REPORT, RESAMPLES, THRESHOLD, at_resolution, confident_auroc, trivial_features
from model_organisms.catalog import Catalog, catalog_dir, load_spec
from model_organisms.sealed import answer_key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", default="quick")
    parser.add_argument("--pairs", type=int, nargs="+", default=[3, 4], help="pairs (and as many decoys) a split")
    parser.add_argument("--draws", type=int, default=1000)
    args = parser.parse_args()
    catalog = Catalog(catalog_dir(load_spec(args.catalog)))
    key = answer_key(catalog)
    ids = [i for i, e in key.items() if e.world == "assistant"]
    features = {i: trivial_features(catalog, i) for i in ids}
    names = sorted({n for f in features.values() for n in f})
    tried = len({r["feature"] for r in json.loads((catalog.directory / REPORT).read_text())["rows"]
                 if r["world"] == "assistant"})
    pairs = [(e.id, e.twin) for e in key.values() if e.world == "assistant" and e.role == "deceptive"]
    decoys = [i for i in ids if key[i].role == "decoy"]
    print(f"catalog {catalog.name} {catalog.fingerprint[:12]}: {len(pairs)} pairs and {len(decoys)} decoys pooled, "
          f"{args.draws} draws, {tried} features corrected for")
    rng = np.random.default_rng(0)
    for n in args.pairs:
        groups = np.array([g for g in range(n) for _ in (0, 1)] + list(range(n, 2 * n)))
        labels = np.array([1, 0] * n + [0] * n)
        weights = group_resamples(groups, resamples=RESAMPLES)
        fails = dict.fromkeys(names, 0)
        for _ in range(args.draws):
            drawn = [i for p in rng.choice(len(pairs), n, replace=False) for i in pairs[p]]
            drawn += [decoys[d] for d in rng.choice(len(decoys), n, replace=False)]
            for name in names:
                scores = at_resolution(np.array([features[i][name] for i in drawn]))
                fails[name] += confident_auroc(scores, labels, weights, tried)[1] > THRESHOLD
        failed = {name: count for name, count in fails.items() if count}
        print(f"{n} pairs and {n} decoys a split: " + (", ".join(f"{name} fails {count}/{args.draws}"
                                                             for name, count in failed.items()) or "no failures"))


if __name__ == "__main__":
    main()
