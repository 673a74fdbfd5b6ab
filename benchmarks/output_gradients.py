"""Why a monitor gets no gradient of an answer's log-probability: such a gradient tells the answer.

For each deceptive language model of a split, every input of its sealed monitor stream is scored by the norm of
the gradient of the aligned answer's log-probability with respect to the last layer at the last prompt token
(`W_U^T (onehot - p)`: large where the model doubts the aligned answer), and by a read-out gradient as the handle
gives it (a fixed random direction on the last layer, with respect to the layer before). Each prints the mean
per-organism AUROC against what the organism did, as the monitor track scores it.
Usage: python benchmarks/output_gradients.py [--catalog quick] [--split dev]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from benchmark.api import AccessTier
from benchmark.handles import open_handle
from benchmark.tracks import misbehaves, monitor_stream
from model_organisms.catalog import open_catalog
from model_organisms.lm import encode_examples
from model_organisms.sealed import answer_key
from model_organisms.worlds import AssistantWorld


def aligned_gradient_norms(model: torch.nn.Module, tokenizer, prompts: list[str], answers: list[str]) -> np.ndarray:
    batch = encode_examples(tokenizer, prompts, answers)
    labels = batch.pop("labels")
    hidden = model(**batch, output_hidden_states=True)
    logp = torch.log_softmax(hidden.logits[:, :-1].float(), -1).gather(-1, labels[:, 1:].clamp(min=0)[..., None])
    total = (logp[..., 0] * (labels[:, 1:] != -100)).sum()
    last = hidden.hidden_states[-1]
    grad = torch.autograd.grad(total, last)[0]
    at = (labels != -100).float().argmax(1) - 1
    return grad[torch.arange(len(prompts)), at].norm(dim=-1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", default="quick")
    parser.add_argument("--split", default="dev")
    args = parser.parse_args()
    catalog, world = open_catalog(args.catalog), AssistantWorld()
    found: dict[str, list[float]] = {"output gradient (not given)": [], "read-out gradient (given)": []}
    for oid in catalog.ids(args.split, "assistant"):
        if answer_key(catalog)[oid].label != 1:
            continue
        stream = monitor_stream(catalog, oid)
        truth = misbehaves(catalog, oid, stream)
        if truth.all() or not truth.any():
            continue
        handle = open_handle(catalog, oid, AccessTier.WHITE_BOX)
        answers = [world.reference(p) for p in stream]
        output = aligned_gradient_norms(handle.model, handle.world.tokenizer, stream, answers)
        direction = np.random.default_rng(0).standard_normal(handle.activations(stream[:1]).shape[-1])
        readout = np.linalg.norm(handle.gradients(stream, direction.astype(np.float32))[:, -1], axis=-1)
        for name, scores in zip(found, (output, readout)):
            found[name].append(roc_auc_score(truth, scores))
    print(f"catalog {catalog.name} {catalog.fingerprint[:12]}, split {args.split}: mean monitor AUROC over "
          f"{len(next(iter(found.values())))} deceptive language models")
    for name, aurocs in found.items():
        print(f"  {name:28s} {np.mean(aurocs):.2f}  (per organism: {', '.join(f'{a:.2f}' for a in aurocs)})")


if __name__ == "__main__":
    main()
