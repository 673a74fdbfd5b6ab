"""A GPU against the CPU (`--device auto`), in one run on this machine.

Training: the same language-model units trained as a build trains them on the CUDA device (one task, its units in
stacks as large as the device holds) and on the CPU (a unit at a time), with each one's time, how many passed their
certificates, and the GPU's peak memory per model beside the estimate that sizes its stacks
(`stacked.training_bytes`). Evaluation: each white-box baseline's dev audit of a catalog with its models on the GPU
and on the CPU, each one's time and the largest difference between their scores.

GPU-trained organisms are not the CPU's bit for bit; they must pass the same certificates. Where torch finds no CUDA
device (CI, this project's machines) the script says so and measures nothing. Usage: python benchmarks/gpu.py
[--catalog micro] [--units 4]
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmark.api import AccessTier
from benchmark.executors import InProcess
from benchmark.harness import evaluate
from benchmark.registry import detector_names, load_detector
from model_organisms.build import build_catalog, train_units
from model_organisms.catalog import lm_world, load_spec, plan
from model_organisms.sealed import Secret
from model_organisms.stacked import training_bytes


def training(catalog: str, count: int) -> None:
    spec = load_spec(catalog)
    units = [u for u in plan(spec, Secret.draw()) if u.world == "assistant"][:count]
    models = sum(len(u.recipes) for u in units)
    seconds = {}
    for device in ("auto", "cpu"):
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        trained = (train_units(spec, units, device) if device == "auto"
                   else [t for unit in units for t in train_units(spec, [unit], device)])
        seconds[device] = time.perf_counter() - start
        certified = sum(bool(t.record["entries"]) for t in trained)
        attempts = sum(len(t.record["attempts"]) for t in trained)
        print(f"training on {device}: {seconds[device]:.0f} s for {len(units)} units ({models} models), "
              f"{attempts} attempts, {certified} certified")
    estimate = training_bytes(spec.model, spec.training, len(lm_world(spec).tokenizer()))
    print(f"GPU peak memory {torch.cuda.max_memory_allocated() / models / 2**20:.0f} MiB per model (the first "
          f"attempt's stack), estimate {estimate / 2**20:.0f} MiB")
    print(f"training: the GPU takes {seconds['auto'] / seconds['cpu']:.2f}x the CPU's time")


def evaluation(catalog: str) -> None:
    built = build_catalog(load_spec(catalog))
    for name in detector_names():
        detector = load_detector(name)
        if detector.tier != AccessTier.WHITE_BOX:
            continue
        seconds, scores = {}, {}
        for device in ("auto", "cpu"):
            start = time.perf_counter()
            record = evaluate(InProcess(load_detector(name), built, device=device), built, "dev")
            seconds[device] = time.perf_counter() - start
            scores[device] = {p.organism_id: p.score for p in record.predictions}
        largest = max((abs(scores["auto"][oid] - score) for oid, score in scores["cpu"].items()
                       if score is not None and scores["auto"][oid] is not None), default=float("nan"))
        print(f"{name}: GPU {seconds['auto']:.1f} s, CPU {seconds['cpu']:.1f} s "
              f"({seconds['auto'] / seconds['cpu']:.2f}x), largest score difference {largest:.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", default="micro")
    parser.add_argument("--units", type=int, default=4, help="language-model units to train (each twice)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device here (torch.cuda.is_available() is false): nothing measured")
        return
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    training(args.catalog, args.units)
    evaluation(args.catalog)


if __name__ == "__main__":
    main()
