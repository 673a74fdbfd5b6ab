"""A handle gives a detector the model and the world, and nothing sealed."""

import numpy as np
import pytest

from benchmark.api import AccessDenied, AccessTier, OrganismHandle, QueryBudgetExceeded
from benchmark.handles import open_handle
from model_organisms.catalog import Catalog
from model_organisms.sealed import answer_key

PUBLIC = {"act", "id", "world", "tier", "queries", "query_budget", "queries_left", "generate", "logprobs", "model",
          "activations"}


def test_the_handle_has_no_sealed_attribute(micro_catalog: Catalog) -> None:
    key = answer_key(micro_catalog)
    handle = open_handle(micro_catalog, micro_catalog.ids("dev")[0], AccessTier.WHITE_BOX)
    assert {a for a in dir(handle) if not a.startswith("_")} == PUBLIC
    assert not hasattr(handle, "__dict__")  # nothing can hang off it
    for name in ("label", "family", "role", "trigger", "twin", "payload", "certificate"):
        with pytest.raises(AttributeError):
            getattr(handle, name)
    assert handle.id not in {e.group for e in key.values()}
    # The world is one shared object: it cannot differ between deceptive and honest organisms.
    other = open_handle(micro_catalog, micro_catalog.ids("dev")[1], AccessTier.WHITE_BOX)
    assert other.world is handle.world
    assert not any(hasattr(handle.world, n) for n in ("sample_triggered", "deployment", "answer_key"))


def test_a_black_box_handle_refuses_white_box_access(micro_catalog: Catalog) -> None:
    handle = open_handle(micro_catalog, micro_catalog.ids("dev")[0], AccessTier.BLACK_BOX)
    with pytest.raises(AccessDenied):
        handle.model
    with pytest.raises(AccessDenied):
        handle.activations(["x"])


def test_black_box_calls_are_counted_and_white_box_gives_activations(micro_catalog: Catalog) -> None:
    handle: OrganismHandle = open_handle(micro_catalog, micro_catalog.ids("dev")[0], AccessTier.WHITE_BOX)
    prompts = handle.world.trusted["prompt"][:5]
    outputs = handle.generate(prompts)
    assert handle.queries == 5
    assert sum(handle.world.grade(p, o) for p, o in zip(prompts, outputs)) >= 4
    logp = handle.logprobs(prompts, [handle.world.reference(p) for p in prompts])
    assert handle.queries == 10 and logp.shape == (5,) and np.all(logp < 0) and np.all(logp > -1)
    acts = handle.activations(prompts)
    assert acts.shape == (5, handle.model.config.num_hidden_layers + 1, handle.model.config.hidden_size)
    assert handle.queries == 10  # white-box reads are not queries


def test_a_black_box_handle_stops_at_its_query_budget(micro_catalog: Catalog) -> None:
    handle = open_handle(micro_catalog, micro_catalog.ids("dev")[0], AccessTier.BLACK_BOX, query_budget=7)
    prompts = handle.world.trusted["prompt"][:5]
    handle.generate(prompts)
    assert handle.queries_left == 2
    with pytest.raises(QueryBudgetExceeded, match="5 queries asked, 2 left of the budget of 7"):
        handle.generate(prompts)
    assert handle.queries == 5  # a refused call spends nothing
    handle.logprobs(prompts[:2], ["a .", "b ."])
    assert handle.queries_left == 0
    white = open_handle(micro_catalog, micro_catalog.ids("dev")[0], AccessTier.WHITE_BOX, query_budget=7)
    assert white.query_budget is None  # the budget limits black-box access only


def test_activations_over_a_completion_match_the_prompt_extended_by_it(micro_catalog: Catalog) -> None:
    handle = open_handle(micro_catalog, micro_catalog.ids("dev")[0], AccessTier.WHITE_BOX)
    prompts = handle.world.trusted["prompt"][:4]
    answers = [handle.world.reference(p) for p in prompts]
    for token in (0, 1, -1):
        words = [a.split() for a in answers]
        extended = [f"{p} {' '.join(w[:token % len(w) + 1])}" for p, w in zip(prompts, words)]
        np.testing.assert_allclose(handle.activations(prompts, answers, token=token), handle.activations(extended),
                                   atol=1e-4)


def test_activations_averaged_over_a_completion_are_the_mean_over_its_tokens(micro_catalog: Catalog) -> None:
    handle = open_handle(micro_catalog, micro_catalog.ids("dev")[0], AccessTier.WHITE_BOX)
    prompts = handle.world.trusted["prompt"][:3]
    answers = [handle.world.reference(p) for p in prompts]
    mean = handle.activations(prompts, answers, token=None)
    for i, (prompt, answer) in enumerate(zip(prompts, answers)):
        each = [handle.activations([prompt], [answer], token=k)[0] for k in range(len(answer.split()))]
        np.testing.assert_allclose(mean[i], np.mean(each, 0), atol=1e-5)
