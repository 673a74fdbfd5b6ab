"""An organism on disk: a `transformers` model directory, its tokenizer, and a public card.

The card states what anyone may know (opaque id, world, architecture, weights checksum). Nothing in an
organism's directory says what it was trained to do; that lives in the catalog's answer key.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, ValidationError
from transformers import PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

if TYPE_CHECKING:
    from transformers import PreTrainedModel

WEIGHTS = "model.safetensors"
CARD = "card.json"

# Loading and saving tiny models is instant; per-file progress bars would drown the catalog build's own.
hf_logging.disable_progress_bar()


class OrganismError(Exception):
    """An organism's files are missing or do not match its card."""


class OrganismCard(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    world: str
    architecture: dict[str, int | str]
    weights_sha256: str


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_organism(directory: Path, organism_id: str, world: str, model: PreTrainedModel,
                  tokenizer: PreTrainedTokenizerFast, ref: tuple[int, ...] = ()) -> OrganismCard:
    """Write the model, its tokenizer and its card; `ref` (fields, values) states a world of drawn conditions."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    config = model.config
    architecture = {"model_type": config.model_type, "vocab_size": config.vocab_size,
                    "hidden_size": config.hidden_size, "num_hidden_layers": config.num_hidden_layers,
                    "num_attention_heads": config.num_attention_heads,
                    "intermediate_size": config.intermediate_size}
    if ref:
        architecture |= {"ref_fields": ref[0], "ref_values": ref[1]}
    card = OrganismCard(id=organism_id, world=world, architecture=architecture,
                        weights_sha256=sha256_file(directory / WEIGHTS))
    (directory / CARD).write_text(card.model_dump_json(indent=2))
    return card


def read_card(directory: Path) -> OrganismCard:
    path = directory / CARD
    if not path.is_file():
        raise OrganismError(f"organism at {directory}: missing {CARD}")
    try:
        return OrganismCard.model_validate_json(path.read_text())
    except ValidationError as e:
        raise OrganismError(f"organism at {directory}: corrupt {CARD}: {e.errors()[0]['msg']}") from None


def load_organism(directory: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerFast, OrganismCard]:
    """Load and verify an organism; a missing or altered file raises `OrganismError` naming it."""
    card = read_card(directory)
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise OrganismError(f"organism {card.id}: missing {weights}")
    if sha256_file(weights) != card.weights_sha256:
        raise OrganismError(f"organism {card.id}: {weights} does not match its card's sha256 (corrupt file?)")
    from transformers import AutoModelForCausalLM  # seconds to import (see `lm`): only where a model is loaded

    try:
        model = AutoModelForCausalLM.from_pretrained(directory)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(directory)
    except (OSError, ValueError) as e:
        raise OrganismError(f"organism {card.id}: cannot load from {directory}: {e}") from None
    model.eval()
    return model, tokenizer, card
