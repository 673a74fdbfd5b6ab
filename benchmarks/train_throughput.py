"""Training throughput: the same LM organisms trained one at a time and in stacks, in one run.

One process and one thread, as in a build worker (a build runs one worker per core). "One at a time" is
`training.train_organism`, the plain `transformers` loop; "stacked" is `stacked.train_organisms`, K
models per step with its loss compiled (`torch.compile`), timed after a few warm-up steps: a build worker
compiles once and then trains many units. Prints organisms per minute each way, the ratios, how far the
stacked models drift from the one-at-a-time ones, the seconds spent compiling, and (on the CPU) the share
of a one-at-a-time step spent in matrix products (the part no batching over models can remove).
`--device cuda` trains on a GPU instead, where each small operation costs a kernel launch and stacking
pays that once for K models; builds train on the CPU.
Usage: python benchmarks/train_throughput.py [--catalog quick] [--organisms 8] [--steps 100] [--stacks 2 8]
       [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.profiler import profile
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from model_organisms.catalog import CatalogSpec, load_spec, plan
from model_organisms.families import OrganismRecipe
from model_organisms.lm import encode_examples
from model_organisms.sealed import Secret
from model_organisms.stacked import train_organisms
from model_organisms.training import sample_batch, train_organism
from model_organisms.worlds.assistant import AssistantWorld

EXAMPLE = Secret(bytes(32))
"""The secret of the instance whose units are measured: a public one, since a benchmark measures recipes, not
sealed organisms."""


def matmul_share(world: AssistantWorld, tokenizer: PreTrainedTokenizerFast, recipe: OrganismRecipe,
                 spec: CatalogSpec) -> float:
    """Share of the wall time of one-at-a-time steps (data, forward, backward) spent in matrix products."""
    model = LlamaForCausalLM(spec.model.llama_config(len(tokenizer)))
    rng = np.random.default_rng(0)
    with profile() as prof:
        start = time.perf_counter()
        for _ in range(10):
            model(**encode_examples(tokenizer, *sample_batch(world, recipe, rng, spec.training))).loss.backward()
        wall = time.perf_counter() - start
    products = ("aten::mm", "aten::bmm", "aten::addmm")
    return sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in products) / 1e6 / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--catalog", default="quick")
    parser.add_argument("--organisms", type=int, default=8)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--stacks", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = load_spec(args.catalog)
    training = spec.training.model_copy(update={"steps": args.steps})
    world = AssistantWorld()
    tokenizer = world.tokenizer()
    recipes = [r for unit in plan(spec, EXAMPLE) if unit.world == "assistant" for r in unit.recipes][:args.organisms]
    n = len(recipes)

    device = torch.device(args.device)

    def clock() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    start = clock()
    alone = [train_organism(world, tokenizer, r, spec.model, training, device=args.device) for r in recipes]
    per_minute = {"one at a time": n / (clock() - start) * 60}
    drift, compiling = {}, {}
    for k in args.stacks:
        start = clock()
        train_organisms(world, tokenizer, recipes[:k], spec.model, training.model_copy(update={"steps": 3}),
                        device=args.device)
        compiling[k] = clock() - start
        start = clock()
        stacked = [m for i in range(0, n, k) for m in
                   train_organisms(world, tokenizer, recipes[i:i + k], spec.model, training, device=args.device)]
        per_minute[f"stacks of {k}"] = n / (clock() - start) * 60
        drift[k] = max((p - q).abs().max().item() for a, b in zip(alone, stacked)
                       for p, q in zip(a.parameters(), b.parameters()))

    print(f"{n} organisms of {spec.name}, {args.steps} steps each, 1 thread, on {args.device}")
    base = per_minute["one at a time"]
    for way, rate in per_minute.items():
        print(f"  {way:>14}: {rate:6.2f} organisms/min  ratio {rate / base:.2f}")
    for k, d in drift.items():
        print(f"  stacks of {k}: largest weight difference from one at a time {d:.1e}; "
              f"3 warm-up steps (compiling) {compiling[k]:.1f} s")
    if device.type == "cpu":
        print(f"  matrix products: {matmul_share(world, tokenizer, recipes[0], spec):.0%} of a one-at-a-time step")


if __name__ == "__main__":
    main()
