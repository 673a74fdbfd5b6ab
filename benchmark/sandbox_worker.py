"""The processes inside the sandbox: a zygote that imports what detectors need (`warm`), and, forked from it
for each organism (`benchmark.zygote`), a worker that loads the submitted detector and answers one JSON request
per line.

A worker sees only its run directory (as its scratch directory) and, for a white-box detector, the directories
(read-only) of the organism it judges, or of the dev organisms it fits on. A black-box detector's handles
ask the parent for every model call. After fitting, it pickles the detector into its run directory; the
parent puts that pickle (and those of leave-one-family-out refits) into each organism's run directory, and each
request names the one it starts from.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmark.api import (
    DEFAULT_WORLDS,
    AccessDenied,
    BadInput,
    LabeledOrganism,
    Maze,
    OrganismHandle,
    QueryBudgetExceeded,
    Track,
    World,
)
from benchmark.executors import LOAD_FAILED, NOT_PICKLED, answer, describe, fit_detector
from benchmark.registry import BrokenContract, DetectorSource, instantiate
from benchmark.worlds import public_world

FITTED = "fitted.pickle"
"""The fitted detector, written by the process that fits it."""


def given(i: int) -> str:
    """The name of the i-th fitted detector the parent puts into a process's run directory."""
    return f"given-{i}.pickle"


class ParentQueries:
    """Black-box calls answered by the harness outside the sandbox: the model never enters it."""

    def __init__(self, organism_id: str, ask: Callable[[dict], dict]) -> None:
        self._id, self._ask = organism_id, ask

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        return self._call({"query": "generate", "prompts": prompts, "max_new_tokens": max_new_tokens})

    def logprobs(self, prompts: list[str], completions: list[str]) -> list[float]:
        return self._call({"query": "logprobs", "prompts": prompts, "completions": completions})

    def act(self, mazes: list[Maze]) -> list[list[float]]:
        return self._call({"query": "act", "mazes": [m.to_dict() for m in mazes]})

    def activations(self, inputs: list, completions: list[str] | None, token: int | None) -> list:
        """Served by the parent on the monitor track, where the organism's files are not in the sandbox."""
        found = [x.to_dict() if isinstance(x, Maze) else x for x in inputs]
        return self._call({"query": "activations", "inputs": found, "completions": completions, "token": token})

    def gradients(self, inputs: list, directions: np.ndarray, layer: int) -> list:
        """Served by the parent on the monitor track, like `activations`."""
        found = [x.to_dict() if isinstance(x, Maze) else x for x in inputs]
        return self._call({"query": "gradients", "inputs": found, "directions": directions.tolist(), "layer": layer})

    def _call(self, query: dict) -> list:
        answer = self._ask({**query, "id": self._id})
        if "error" in answer:
            raise (AccessDenied if answer.get("denied") else BadInput if answer.get("bad") else QueryBudgetExceeded)(
                answer["error"])
        return answer["result"]


def serve(job: dict, requests, replies) -> None:
    main_pid = os.getpid()
    detector, fresh = None, False

    def reply(message: dict) -> None:
        if os.getpid() != main_pid:  # a forked copy of this worker must not answer for it
            os._exit(0)
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    def ask(query: dict) -> dict:
        reply(query)
        return json.loads(requests.readline())

    def world_of(organism_id: str) -> World:
        name = job["worlds"].get(organism_id, job["world"])
        maze = name == "maze"
        return public_world(name, job["spec_fingerprint"], tuple(job["maze_sizes"]) if maze else (),
                            () if maze else tuple(job["ref"]))

    def handle(organism_id: str, budget: int | None = None, monitoring: bool = False) -> OrganismHandle:
        if job["organisms"]:  # white box: the model is loaded here (and torch with it)
            from benchmark.handles import handle_at

            return handle_at(Path(job["organisms"]) / organism_id, job["spec_fingerprint"], detector.tier, budget)
        return OrganismHandle(organism_id, world_of(organism_id), detector.tier, ParentQueries(organism_id, ask),
                              None, budget, monitoring)

    def prepare() -> None:
        """The harness's own start-up, within the greeting's allowance and no detector's budget: the worlds of
        the organisms this sandbox judges, and at white box the code that loads models."""
        for organism_id in job["judged"]:
            world_of(organism_id)
        if job["organisms"] and job["judged"]:
            import benchmark.handles  # noqa: F401 - torch and transformers, imported once here

    def start_from(fitted: str | None) -> str | None:
        """Start a request from a fitted detector's pickle, or from a fresh instance; a load failure, if any."""
        nonlocal detector, fresh
        try:
            if fitted:
                with open(fitted, "rb") as f:
                    detector = pickle.load(f)
            elif not fresh:
                detector = instantiate(DetectorSource(**job["source"]))
        except Exception as e:  # noqa: BLE001 - reported to the parent as a load failure
            return f"{LOAD_FAILED}: {describe(e)}"
        fresh = False
        return None

    while line := requests.readline():
        request = json.loads(line)
        if request["cmd"] == "bye":
            return
        if request["cmd"] == "hello":
            prepare()
            try:
                detector, fresh = instantiate(DetectorSource(**job["source"])), True  # imports its module
                reply({"name": detector.name, "tier": detector.tier.value, "tracks": sorted(detector.tracks),
                       "fits": getattr(detector, "fit", None) is not None,
                       "worlds": sorted(getattr(detector, "worlds", DEFAULT_WORLDS))})
            except BrokenContract as e:
                reply({"contract": e.problems})
            except Exception as e:  # noqa: BLE001 - reported to the parent as a load failure
                reply({"error": f"{LOAD_FAILED}: {describe(e)}"})
        elif error := start_from(request["fitted"]):
            reply({"error": error})
        elif request["cmd"] == "fit":
            dev = [LabeledOrganism(handle(o["id"]), o["label"], o["family"], o["role"]) for o in request["dev"]]
            error = fit_detector(detector, dev)
            if error is None:
                try:
                    with open(FITTED, "wb") as f:
                        pickle.dump(detector, f)
                except Exception as e:  # noqa: BLE001 - reported to the parent as a fit failure
                    error = f"{NOT_PICKLED}: {describe(e)}"
            reply({"error": error} if error else {"ok": True})
        elif request["cmd"] == "answer":
            track = Track(request["track"])
            prediction = answer(detector, handle(request["id"], job["query_budget"], track == Track.MONITOR), track,
                                request["inputs"])
            reply({"prediction": prediction.model_dump(mode="json")})


WARM_MODULES = ("numpy", "scipy.stats", "sklearn.linear_model", "datasets")
"""What the zygote imports before forking, besides the worlds (and torch with the model code at white box): what
detectors commonly use, so that each organism's process starts with it imported."""


def warm(job: dict) -> None:
    """The zygote's start-up: imports, and the public world of every organism it may fork for (cached)."""
    import importlib

    for module in WARM_MODULES:
        importlib.import_module(module)
    if job["organisms"]:  # torch, and what transformers does lazily on its first load (imports, regexes: seconds)
        import tempfile

        from transformers import AutoConfig, AutoModelForCausalLM

        import benchmark.handles  # noqa: F401
        import model_organisms.maze_policy  # noqa: F401

        with tempfile.TemporaryDirectory() as directory:  # a model of no organism's: random weights, tiny
            config = AutoConfig.for_model("llama", vocab_size=8, hidden_size=8, intermediate_size=8,
                                          num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1)
            AutoModelForCausalLM.from_config(config).save_pretrained(directory)
            AutoModelForCausalLM.from_pretrained(directory)
    for name in {job["world"], *job["worlds"].values()}:
        maze = name == "maze"
        public_world(name, job["spec_fingerprint"], tuple(job["maze_sizes"]) if maze else (),
                     () if maze else tuple(job["ref"]))


def main() -> None:
    """The zygote: the job comes on stdin, then each order forks a process for one organism (or for fitting)."""
    from benchmark.zygote import open_channel, read_line, zygote

    channel = open_channel()
    job = json.loads(read_line())
    warm(job)

    def serve_one(order: dict) -> None:
        replies = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)  # whatever the detector prints goes where stderr goes (nowhere), never into the protocol
        serve({**job, "judged": order["judged"], "query_budget": order["query_budget"],
               "organisms": job["organisms"] if order["keep"] else None}, sys.stdin, replies)

    zygote(job, serve_one, channel)


if __name__ == "__main__":
    main()
