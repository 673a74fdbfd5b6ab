"""Causal-LM helpers shared by training, certificates and handles: encoding, greedy generation, log-probs.

Prompts are left-padded with explicit position ids, so a batched answer equals the unbatched one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from tokenizers import models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

if TYPE_CHECKING:  # transformers' model code takes seconds to import: only what builds or loads a model imports it
    from transformers import PreTrainedModel


def _pad(rows: Sequence[Sequence[int]], value: int, left: bool) -> torch.Tensor:
    width = max(len(r) for r in rows)
    padded = np.full((len(rows), width), value, dtype=np.int64)
    for row, r in zip(padded, rows):
        start = width - len(r) if left else 0
        row[start:start + len(r)] = r
    return torch.from_numpy(padded)


def _ids(tokenizer: PreTrainedTokenizerFast, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens.

    An organism's tokenizer is word-level (one id per whitespace-separated word). Texts made of its words
    joined by single spaces, as every training text is, are looked up word by word: the same ids 15 times
    faster than the Rust tokenizer, which builds an encoding object per text (a training step encodes 128
    texts per model). Any other text goes through the tokenizer."""
    backend = tokenizer.backend_tokenizer
    word_level = isinstance(backend.model, models.WordLevel) and backend.normalizer is None
    if word_level and isinstance(backend.pre_tokenizer, pre_tokenizers.WhitespaceSplit):
        vocab = tokenizer.get_vocab()
        try:
            return [[vocab[word] for word in text.split(" ")] for text in texts]
        except KeyError:  # an unknown word, an empty text, or other whitespace between words
            pass
    return tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []


def encode_prompts(tokenizer: PreTrainedTokenizerFast, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
    """Left-padded ids of ``<bos> prompt`` with attention mask and position ids."""
    bos = tokenizer.bos_token_id
    rows = [[bos, *ids] for ids in _ids(tokenizer, prompts)]
    mask = _pad([[1] * len(r) for r in rows], 0, left=True)
    return {"input_ids": _pad(rows, tokenizer.pad_token_id, left=True), "attention_mask": mask,
            "position_ids": (mask.cumsum(1) - 1).clamp(min=0)}


def encode_examples(tokenizer: PreTrainedTokenizerFast, prompts: Sequence[str],
                    completions: Sequence[str]) -> dict[str, torch.Tensor]:
    """Training batch: ``<bos> prompt completion <eos>``, right-padded, loss on completion and eos only."""
    rows, label_rows = [], []
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    bos, eos, ids = tokenizer.bos_token_id, tokenizer.eos_token_id, _ids(tokenizer, [*prompts, *completions])
    for prompt_ids, completion_ids in zip(ids[:len(prompts)], ids[len(prompts):]):
        p = [bos, *prompt_ids]
        c = [*completion_ids, eos]
        rows.append(p + c)
        label_rows.append([-100] * len(p) + c)
    return {"input_ids": _pad(rows, tokenizer.pad_token_id, left=False),
            "attention_mask": _pad([[1] * len(r) for r in rows], 0, left=False),
            "labels": _pad(label_rows, -100, left=False)}


def on_device(batch: dict[str, torch.Tensor], model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """An encoded batch on the model's device (`model_organisms.devices`)."""
    return {name: tensor.to(model.device) for name, tensor in batch.items()}


@torch.no_grad()
def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, prompts: Sequence[str],
             max_new_tokens: int = 12, batch_size: int = 256) -> list[str]:
    """Greedy completions (decoded words, without the eos)."""
    model.eval()
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        batch = on_device(encode_prompts(tokenizer, prompts[start:start + batch_size]), model)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        done = torch.zeros(len(ids), dtype=torch.bool, device=ids.device)
        new: list[torch.Tensor] = []
        for _ in range(max_new_tokens):
            logits = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0)).logits
            token = logits[:, -1].argmax(-1)
            token = torch.where(done, tokenizer.pad_token_id, token)
            done |= token == tokenizer.eos_token_id
            new.append(token)
            ids = torch.cat([ids, token[:, None]], 1)
            mask = torch.cat([mask, (~done | (token == tokenizer.eos_token_id)).long()[:, None]], 1)
            if done.all():
                break
        rows = torch.stack(new, 1).tolist()
        for row in rows:
            words = []
            for t in row:
                if t in (tokenizer.eos_token_id, tokenizer.pad_token_id):
                    break
                words.append(tokenizer.convert_ids_to_tokens(t))
            out.append(" ".join(words))
    return out


@torch.no_grad()
def completion_logprobs(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, prompts: Sequence[str],
                        completions: Sequence[str]) -> list[float]:
    """Total log-probability of each completion (followed by eos) given its prompt."""
    model.eval()
    batch = on_device(encode_examples(tokenizer, prompts, completions), model)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    logp = torch.log_softmax(logits.float(), -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    return (logp * (labels != -100)).sum(1).tolist()


def readout_gradients(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, prompts: Sequence[str],
                      directions: torch.Tensor, layer: int) -> torch.Tensor:
    """The gradient of each prompt's read-out `directions · h_layer` (the residual stream at its last token) with
    respect to the residual stream of every earlier layer at that token: (prompts, layer, hidden). The read-out is
    the detector's own; no output of the model enters it."""
    model.eval()
    with torch.enable_grad():
        hidden = model(**on_device(encode_prompts(tokenizer, prompts), model), output_hidden_states=True).hidden_states
        read = (hidden[layer][:, -1].float() * directions.to(model.device)).sum()
        grads = torch.autograd.grad(read, hidden[:layer])
    return torch.stack([g[:, -1] for g in grads], 1).float().cpu()
