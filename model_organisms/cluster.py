"""Ray clusters that users already run (`--executor ray`): a catalog's units train as Ray tasks across them, and
organisms are judged as Ray tasks (`benchmark.on_cluster`).

Only the driver (the machine that runs `dab`) holds an instance's secret and answer key. A training task gets one
unit's recipes and returns its organisms' files with their checksums, which the driver checks before they enter the
catalog (`model_organisms.build.store_unit`). Whoever reaches a Ray cluster's ports can run code on it: README has it
use Ray's token authentication on a private network; dab starts no dashboard.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from model_organisms.catalog import CatalogError

Tag = TypeVar("Tag")

MAX_RETRIES = 3
"""Times Ray runs a task again after the worker or node running it died."""
FORWARDED = ("DAB_COMPILE",)
"""Settings of this process that a task's process gets too: they change how a unit trains."""


@dataclass(frozen=True)
class RayCluster:
    address: str | None = None
    """Where `ray start --head` listens (HOST:PORT, or ``auto`` for the cluster this machine joined); None starts a
    Ray instance on this machine for the one command."""

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """One connection to the cluster for every `run` inside it (a `run` outside one connects for itself)."""
        ray = _ray()
        env = {name: value for name in FORWARDED if (value := os.environ.get(name)) is not None}
        ray.init(address=self.address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": env})
        try:
            yield
        finally:
            ray.shutdown()

    def gpus(self) -> float:
        """The GPUs of the cluster's nodes, all together."""
        ray = _ray()
        with contextlib.nullcontext() if ray.is_initialized() else self.session():
            return float(ray.cluster_resources().get("GPU", 0))

    def run(self, function: Callable[..., Any], arguments: Sequence[tuple], tags: Sequence[Tag],
            gpus: Sequence[float] = ()) -> Iterator[tuple[Tag, Any]]:
        """`function(*args)` for each of `arguments` as a task of one CPU (and of `gpus[i]` of a GPU, where given),
        in this order; each result with its tag as it ends. A task whose node dies runs again elsewhere; one that
        raises ends the command (what finished is kept by the caller)."""
        ray = _ray()
        with contextlib.nullcontext() if ray.is_initialized() else self.session():
            task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(function)
            shares = list(gpus) or [0.0] * len(arguments)
            pending = {task.options(num_gpus=share).remote(*args): tag
                       for args, tag, share in zip(arguments, tags, shares)}
            while pending:
                [ready], _ = ray.wait(list(pending), num_returns=1)
                yield pending.pop(ready), ray.get(ready)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise CatalogError("--executor ray needs Ray on this machine and every node: pip install -e '.[ray]'") from None
    return ray
