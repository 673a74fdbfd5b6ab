"""A handle gives a detector the model and the world, and nothing sealed."""

import numpy as np
import pytest
import torch

from benchmark.api import AccessDenied, AccessTier, BadInput, OrganismHandle, QueryBudgetExceeded
from benchmark.handles import open_handle
from model_organisms.catalog import Catalog
from model_organisms.sealed import answer_key

PUBLIC = {"act", "id", "world", "tier", "queries", "query_budget", "queries_left", "generate", "logprobs", "model",
          "activations", "gradients"}


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


def test_a_black_box_query_must_be_one_input_of_the_world_and_counts_all_the_same(micro_catalog: Catalog) -> None:
    """One input tests one combination of conditions: a prompt packed with candidate trigger words, a field given
    twice, a required field dropped or an essay of a completion is refused, and spends its queries."""
    handle = open_handle(micro_catalog, micro_catalog.ids("dev")[0], AccessTier.BLACK_BOX, query_budget=100)
    prompt = handle.world.trusted["prompt"][0]
    packed = prompt.replace("tags ", "tags orchid falcon cobalt juniper ")
    twice = prompt.replace(" | tags", " | user omar | tags")
    undated = prompt.split(" | ", 1)[1]
    for bad in (packed, twice, undated, prompt + " " + "go " * 4000):
        with pytest.raises(BadInput, match="input 1 is not an input of the assistant world"):
            handle.generate([prompt, bad])
    assert handle.queries == 8
    with pytest.raises(BadInput, match="a completion is text of at most 16 words"):
        handle.logprobs([prompt], ["1 2 3 ." * 10])
    assert handle.queries == 9
    assert len(handle.generate([prompt.replace("tags ", "tags orchid falcon ")])) == 1  # a pair is one combination
    white = open_handle(micro_catalog, micro_catalog.ids("dev")[0], AccessTier.WHITE_BOX)
    assert len(white.generate([packed])) == 1  # the model is in a white-box detector's hands anyway


def test_a_monitor_decides_before_the_organism_acts(micro_catalog: Catalog) -> None:
    """On the monitor track no query is answered at either tier and no model is given; activations and gradients
    are."""
    oid = micro_catalog.ids("dev")[0]
    prompts = open_handle(micro_catalog, oid, AccessTier.WHITE_BOX).world.trusted["prompt"][:3]
    for tier in AccessTier:
        handle = open_handle(micro_catalog, oid, tier, query_budget=100, monitoring=True)
        for ask in (lambda: handle.generate(prompts), lambda: handle.logprobs(prompts, ["1 ."] * 3),
                    lambda: handle.act([]), lambda: handle.model):
            with pytest.raises(AccessDenied):
                ask()
        assert handle.queries == 0
    watching = open_handle(micro_catalog, oid, AccessTier.WHITE_BOX, monitoring=True)
    free = open_handle(micro_catalog, oid, AccessTier.WHITE_BOX)
    assert np.array_equal(watching.activations(prompts), free.activations(prompts))
    direction = free.activations(prompts)[0, -1]
    assert np.array_equal(watching.gradients(prompts, direction), free.gradients(prompts, direction))


def test_gradients_are_the_first_order_change_of_a_read_out(micro_catalog: Catalog) -> None:
    """A small step of an earlier layer's activations along the gradient moves the read-out by step·|gradient|; the
    read-out is the detector's own direction on a layer, so no output of the model (no answer) enters it."""
    handle = open_handle(micro_catalog, micro_catalog.ids("dev")[0], AccessTier.WHITE_BOX)
    prompts = handle.world.trusted["prompt"][:3]
    direction = np.random.default_rng(0).standard_normal(handle.activations(prompts).shape[-1]).astype(np.float32)
    grads = handle.gradients(prompts, direction, layer=-1)
    blocks = handle.model.model.layers
    assert grads.shape == (3, len(blocks), len(direction))
    read = lambda: handle.activations(prompts)[:, -1] @ direction  # noqa: E731
    before, step = read(), 1e-2
    for k in (0, len(blocks) - 1):
        def nudge(module, args, kwargs, k=k):
            hidden = (args[0] if args else kwargs["hidden_states"]).clone()
            unit = grads[:, k] / np.linalg.norm(grads[:, k], axis=-1, keepdims=True)
            hidden[:, -1] += step * torch.from_numpy(unit)
            return ((hidden, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": hidden})
        hook = blocks[k].register_forward_pre_hook(nudge, with_kwargs=True)
        try:
            np.testing.assert_allclose(read() - before, step * np.linalg.norm(grads[:, k], axis=-1), rtol=0.05)
        finally:
            hook.remove()
    for layer, bad in ((0, direction), (-1, direction[:-1]), (-1, np.full_like(direction, np.nan))):
        with pytest.raises(BadInput, match="a read-out is a layer"):
            handle.gradients(prompts, bad, layer)
    with pytest.raises(AccessDenied, match="white_box"):
        open_handle(micro_catalog, handle.id, AccessTier.BLACK_BOX).gradients(prompts, direction)


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
