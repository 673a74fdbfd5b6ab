"""Where models run: on the CPU, or (`auto`) on a CUDA device where the process has one. Language models train and
are judged by white-box detectors there; maze policies (small convolutional networks) and the harness's own ground
truth stay on the CPU."""

from __future__ import annotations

import torch

from model_organisms.catalog import CatalogError

DEVICES = ("cpu", "auto")
GPU_SHARE = 0.25
"""The part of a GPU (and of its memory) one Ray task takes: a pair of these models uses a sliver of one, so four
tasks share it."""


def torch_device(device: str, world: str) -> str:
    """The torch device of a model of this world here, for `device` (one of `DEVICES`)."""
    if device not in DEVICES:
        raise CatalogError(f"unknown device {device!r}: one of {', '.join(DEVICES)}")
    return "cuda" if device == "auto" and world == "assistant" and torch.cuda.is_available() else "cpu"
