"""Training on a GPU (`dab build --device auto`): the same units trained on this machine's CUDA device and on its CPU,
alternating, in one run, with each one's time and whether its organisms passed their certificates.

GPU-trained organisms are not the CPU's bit for bit; they must pass the same certificates. Where torch finds no CUDA
device (CI, this project's machines) the script says so and measures nothing. Usage: python benchmarks/gpu_build.py
[--catalog micro] [--units 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from model_organisms.build import train_unit
from model_organisms.catalog import load_spec, plan
from model_organisms.sealed import Secret


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", default="micro")
    parser.add_argument("--units", type=int, default=2, help="language-model units to train (each twice)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device here (torch.cuda.is_available() is false): nothing measured")
        return
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    spec = load_spec(args.catalog)
    units = [u for u in plan(spec, Secret.draw()) if u.world == "assistant"][:args.units]
    seconds = {"cpu": 0.0, "auto": 0.0}
    for unit in units:
        for device in ("auto", "cpu"):
            start = time.perf_counter()
            record = train_unit(spec, unit, device).record
            took = time.perf_counter() - start
            seconds[device] += took
            trained_on = {e["device"] for e in record["entries"]} or {"none certified"}
            print(f"{unit.key} {device}: {took:.0f} s, on {', '.join(sorted(trained_on))}, "
                  f"{len(record['attempts'])} attempt(s), {'certified' if record['entries'] else 'dropped'}")
    print(f"CPU {seconds['cpu']:.0f} s, GPU {seconds['auto']:.0f} s: the GPU takes "
          f"{seconds['auto'] / seconds['cpu']:.2f}x the CPU's time")


if __name__ == "__main__":
    main()
