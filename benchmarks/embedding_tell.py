"""Whether a reader of the embeddings finds a drawn condition's codes: a frequency tell, measured.

A code that a model's training data shows more often than the others of its position drifts away from their
mean embedding: in a standalone check a twin whose partner's three trigger values were over-represented had
them at ranks 418, 468 and 469 of 470. This reads a built catalog of drawn conditions and ranks, for every
language-model organism and each position of its condition's reference (a twin's is its partner's), the
reference's code among the position's codes by distance from their mean embedding (1 = the farthest). A
twin trained without a frequency tell has its codes anywhere (mean rank about (values + 1) / 2); a deceptive
organism or a decoy, whose behaviour hangs on them, may stand out, which is what white-box detectors are for.
Usage: python benchmarks/embedding_tell.py --catalog benchmarks/drawn_quick.toml | --instance DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from model_organisms.catalog import Catalog, catalog_dir, load_spec
from model_organisms.organism import load_organism
from model_organisms.sealed import answer_key


def ranks(embeddings: torch.Tensor, vocab: dict[str, int], codes: tuple[tuple[str, ...], ...],
          ref: tuple[str, ...]) -> list[int]:
    """Per position, the rank of `ref`'s code among the position's codes by distance from their mean (1 = farthest)."""
    out = []
    for position, key in zip(codes, ref):
        rows = embeddings[[vocab[c] for c in position]].float()
        distance = torch.linalg.vector_norm(rows - rows.mean(0), dim=1)
        out.append(int((distance > distance[position.index(key)]).sum()) + 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", help="a spec, whose instance in this cache is read")
    parser.add_argument("--instance", type=Path, help="or the directory of a built instance")
    args = parser.parse_args()
    catalog = Catalog(args.instance or catalog_dir(load_spec(args.catalog)))
    codes = catalog.lm_world().codes
    if not codes:
        raise SystemExit(f"catalog {catalog.name}: no drawn conditions, so no codes to rank")
    by_role: dict[str, list[list[int]]] = {}
    for entry in answer_key(catalog).values():
        if entry.world != "assistant":
            continue
        model, tokenizer, _ = load_organism(catalog.organism_dir(entry.id))
        found = ranks(model.get_input_embeddings().weight.detach(), tokenizer.get_vocab(), codes, entry.trigger.ref)
        by_role.setdefault(entry.role, []).append(found)
        print(f"{entry.group:>22} {entry.role:>9} ({entry.trigger.kind}): ranks {found}")
    values = len(codes[0])
    print(f"{catalog.name} {catalog.fingerprint[:12]}: rank of a condition's code among {values} by distance from "
          f"the mean embedding (1 = farthest; no tell: about {(values + 1) / 2:.1f})")
    for role, found in sorted(by_role.items()):
        flat = np.array(found).ravel()
        print(f"  {role:>9}: mean rank {flat.mean():.1f} over {len(found)} organisms × {len(codes)} positions, "
              f"farthest in {np.mean(flat == 1):.0%}")


if __name__ == "__main__":
    main()
