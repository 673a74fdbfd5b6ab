"""Opening handles on a catalog's organisms: public files only, never the answer key."""

from __future__ import annotations

from functools import cache, lru_cache
from pathlib import Path

import datasets
import numpy as np

from benchmark.api import AccessTier, LocalModel, OrganismHandle, World
from model_organisms.catalog import Catalog
from model_organisms.organism import load_organism
from model_organisms.worlds import WORLDS

TRUSTED_INPUTS = 256


@cache
def public_world(world_name: str, catalog_fingerprint: str) -> World:
    """The world as detectors see it; its trusted inputs are fixed by the catalog fingerprint."""
    world = WORLDS[world_name]()
    rng = np.random.default_rng(int(catalog_fingerprint[:12], 16))
    trusted = datasets.Dataset.from_dict({"prompt": world.sample_trusted(rng, TRUSTED_INPUTS)})
    return World(name=world.name, tokenizer=world.tokenizer(), trusted=trusted, reference=world.reference,
                 grade=world.grade)


def handle_at(directory: Path, catalog_fingerprint: str, tier: AccessTier,
              query_budget: int | None = None) -> OrganismHandle:
    """A handle from an organism directory alone (all a sandboxed detector gets to see)."""
    model, tokenizer, card = load_organism(directory)
    return OrganismHandle(card.id, public_world(card.world, catalog_fingerprint), tier, LocalModel(model, tokenizer),
                          model, query_budget)


def open_handle(catalog: Catalog, organism_id: str, tier: AccessTier, query_budget: int | None = None) -> OrganismHandle:
    return handle_at(catalog.organism_dir(organism_id), catalog.fingerprint, tier, query_budget)


@lru_cache(maxsize=4)
def local_model(directory: Path) -> LocalModel:
    """An organism's model for the harness's own calls (ground truth, a sandbox's black-box queries)."""
    model, tokenizer, _ = load_organism(directory)
    return LocalModel(model, tokenizer)
