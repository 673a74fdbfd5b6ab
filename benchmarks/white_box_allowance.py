"""The white-box tier's compute allowance in forward passes, and the share of a drawn condition space it covers.

A white-box detector holds the model, so no query budget bounds it; its per-organism CPU allowance
(`benchmark.limits.Limits.cpu_seconds`) does. This times batched forward passes of the catalog's trusted inputs
through a model of the spec's size (one thread; the weights do not change the time) and prints passes per CPU
second, the passes the allowance buys, and the share of the spec's condition space they would test if spent on
nothing else (issue 34 asks for at most 1%, so that exhaustive forward passes cannot replace understanding).
Usage: python benchmarks/white_box_allowance.py [--catalog quick] [--batch 512] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmark.limits import Limits
from model_organisms.catalog import lm_world, load_spec
from model_organisms.lm import encode_prompts
from model_organisms.training import fresh_model


def passes_per_cpu_second(catalog: str, batch: int, repeats: int) -> float:
    spec = load_spec(catalog)
    world = lm_world(spec)
    tokenizer = world.tokenizer()
    model = fresh_model(spec.model, tokenizer, 0).eval()
    prompts = world.sample_trusted(np.random.default_rng(0), batch)
    encoded = encode_prompts(tokenizer, prompts)
    with torch.no_grad():
        model(**encoded)  # the first pass allocates
        start = time.process_time()
        for _ in range(repeats):
            model(**encoded, logits_to_keep=1)  # a condition's test reads the next token's distribution only
        return batch * repeats / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", default="quick")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = load_spec(args.catalog)
    rate = passes_per_cpu_second(args.catalog, args.batch, args.repeats)
    allowance = Limits().cpu_seconds * rate
    print(f"{args.catalog}: {rate:,.0f} forward passes per CPU second (batches of {args.batch}, one thread)")
    print(f"white-box allowance: {Limits().cpu_seconds:.0f} CPU seconds per organism = {allowance:,.0f} forward passes")
    if spec.conditions:
        print(f"condition space {spec.conditions.space:,}: the allowance tests at most "
              f"{allowance / spec.conditions.space:.3%} of it (bound: 1%)")


if __name__ == "__main__":
    main()
