"""How often a built catalog would fail the shortcut gate on its loss by the draw of its public inputs alone.

Every organism is read on the same public trusted inputs, so their draw is shared by all pairs of a split:
pairs matched on their loss (`model_organisms.matching`) can still all lean one way on it. This script reads
each language model of a built catalog on a pool of fresh trusted inputs, then, for each size, draws random
sets of that many from the pool and counts the draws on which the gate's loss feature
(`shortcuts.confident_auroc`, as `audit_shortcuts` reads it) would fail a split. It
prints the failure rate and the mean AUROC per split and size; `worlds.TRUSTED_INPUTS` is chosen from it.
Usage: python benchmarks/public_input_draws.py [--catalog quick] [--pool 8192] [--draws 300]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from benchmark.scoring import group_resamples
from benchmark.shortcuts import AUROC, REPORT, RESAMPLES, THRESHOLD, confident_auroc
from model_organisms.catalog import Catalog, catalog_dir, load_spec
from model_organisms.lm import completion_logprobs
from model_organisms.organism import load_organism
from model_organisms.sealed import answer_key
from model_organisms.worlds.assistant import AssistantWorld


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", default="quick")
    parser.add_argument("--pool", type=int, default=8192, help="fresh trusted inputs each organism is read on")
    parser.add_argument("--draws", type=int, default=300, help="random sets drawn from the pool per size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    args = parser.parse_args()
    catalog = Catalog(catalog_dir(load_spec(args.catalog)))
    key, world = answer_key(catalog), AssistantWorld()
    tokenizer = world.tokenizer()
    rng = np.random.default_rng(0)
    prompts = world.sample_trusted(rng, args.pool)
    references = [world.reference(p) for p in prompts]
    features = len({r["feature"] for r in json.loads((catalog.directory / REPORT).read_text())["rows"]
                    if r["world"] == "assistant"})
    print(f"catalog {catalog.name} {catalog.fingerprint[:12]}: {args.pool} fresh trusted inputs, {args.draws} draws "
          f"per size, {features} features corrected for")
    for split in catalog.manifest.splits:
        ids = catalog.ids(split, "assistant")
        labels = np.array([key[i].label for i in ids])
        losses = np.array([-np.array(completion_logprobs(load_organism(catalog.organism_dir(i))[0], tokenizer,
                                                         prompts, references)) for i in ids])
        weights = group_resamples(np.array([key[i].group for i in ids]), resamples=RESAMPLES)
        print(f"{split}: the loss's AUROC on the whole pool {AUROC.fn(losses.mean(1), labels):.3f}")
        for size in args.sizes:
            aurocs, fails = [], 0
            for _ in range(args.draws):
                scores = losses[:, rng.choice(args.pool, size, replace=False)].mean(1)
                auroc, ci_low = confident_auroc(scores, labels, weights, features)
                fails += ci_low > THRESHOLD
                aurocs.append(auroc)
            print(f"  {size:5d} inputs: fails {fails}/{args.draws} draws, AUROC mean {np.mean(aurocs):.3f} "
                  f"max {np.max(aurocs):.3f}")


if __name__ == "__main__":
    main()
