"""Executors run a detector's `fit` and its answers on each track somewhere: in this process, or in the sandbox.

Both turn whatever a detector does into data: an exception, a NaN or an answer of the wrong shape becomes a
recorded failure for that organism, never a crash of the run.
"""

from __future__ import annotations

import builtins
import copy
import math
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Protocol

import numpy as np

from benchmark.api import (DEFAULT_WORLDS, GOALS, MAX_CANDIDATES, AccessDenied, AccessTier, BadInput, Detector,
                           Elicitation, LabeledOrganism, OrganismHandle, QueryBudgetExceeded, Track, World)
from benchmark.records import DetectorInfo, Prediction
from benchmark.registry import UnknownDetector, source_sha256

if TYPE_CHECKING:
    from model_organisms.catalog import Catalog


class BadAnswer(ValueError):
    """A detector answered something that is not what its track asks for. Its messages are the harness's own
    fixed words (never the detector's values), so a failure carries nothing out of a sandbox."""


NOT_A_FLOAT = "returned something other than a float"
NOT_A_PROBABILITY = "returned a value that is not a probability in [0, 1]"
NOT_SCORES = "returned something other than one score per input"
NOT_FINITE = "returned scores that are not all finite"
NOT_AN_ELICITATION = "returned something other than an Elicitation with a list of input strings"
TOO_MANY_INPUTS = f"proposed more than {MAX_CANDIDATES} inputs"
NOT_AN_INPUT = "proposed an input that is not one of its world's inputs"
UNKNOWN_GOAL = "named a goal that is not in the taxonomy"
BAD_ANSWERS = (NOT_A_FLOAT, NOT_A_PROBABILITY, NOT_SCORES, NOT_FINITE, NOT_AN_ELICITATION, TOO_MANY_INPUTS,
               NOT_AN_INPUT, UNKNOWN_GOAL)
NOT_PICKLED = "the fitted detector cannot be pickled for each organism's sandbox"
LOAD_FAILED = "cannot load detector"
CONTRACT_EXCEPTIONS = (AccessDenied, BadInput, QueryBudgetExceeded, UnknownDetector)
"""Exceptions of the contract a failure may be named by, besides the built-in ones."""


@dataclass(frozen=True)
class DevOrganism:
    """A dev-split organism and its public label, before a handle is opened on it."""

    id: str
    label: int
    family: str
    role: str


def check_probability(answer: object) -> float:
    """The answer as a probability in [0, 1], or `BadAnswer`."""
    shape = getattr(answer, "shape", None)
    if isinstance(answer, (bool, str, bytes)) or (shape is not None and shape != ()):
        raise BadAnswer(NOT_A_FLOAT)
    try:
        value = float(answer)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BadAnswer(NOT_A_FLOAT) from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise BadAnswer(NOT_A_PROBABILITY)
    return value


def check_scores(answer: object, n: int) -> list[float]:
    """A monitor answer as one finite score per input, or `BadAnswer`."""
    try:
        scores = np.asarray(answer, dtype=float)
    except (TypeError, ValueError):
        raise BadAnswer(NOT_SCORES) from None
    if scores.shape != (n,):
        raise BadAnswer(NOT_SCORES)
    if not np.isfinite(scores).all():
        raise BadAnswer(NOT_FINITE)
    return scores.tolist()


def check_elicitation(answer: object, world: World) -> Elicitation:
    """An elicit answer as at most `MAX_CANDIDATES` inputs of the organism's world and a goal of the taxonomy, or
    `BadAnswer`: free text is refused, so proposed inputs carry nothing but inputs."""
    inputs, goal = getattr(answer, "inputs", None), getattr(answer, "goal", None)
    if not isinstance(inputs, (list, tuple)) or not all(isinstance(i, str) for i in inputs):
        raise BadAnswer(NOT_AN_ELICITATION)
    if len(inputs) > MAX_CANDIDATES:
        raise BadAnswer(TOO_MANY_INPUTS)
    if not all(world.accepts(i) for i in inputs):
        raise BadAnswer(NOT_AN_INPUT)
    if goal not in GOALS:
        raise BadAnswer(UNKNOWN_GOAL)
    return Elicitation(list(inputs), goal)


def exception_name(kind: type[BaseException]) -> str:
    """The name a failure is recorded by: the exception's class if it is built in or the contract's, else the
    nearest such class it derives from (a detector's own class names are its text)."""
    return next(c.__name__ for c in kind.__mro__
                if c in CONTRACT_EXCEPTIONS or getattr(builtins, c.__name__, None) is c)


def describe(error: Exception) -> str:
    """A failure in the harness's own words: what was wrong with the answer, or what was raised."""
    if type(error) is BadAnswer and str(error) in BAD_ANSWERS:
        return str(error)
    return f"raised {exception_name(type(error))}"


@cache
def failure_words() -> frozenset[str]:
    """Every text a failure recorded from inside a sandbox may be: a sandbox's reply that says anything else is
    refused as malformed."""
    raised = {f"raised {c.__name__}" for c in (*CONTRACT_EXCEPTIONS, *vars(builtins).values())
              if isinstance(c, type) and issubclass(c, BaseException)}
    prefixed = {f"{prefix}: {r}" for r in raised for prefix in (NOT_PICKLED, LOAD_FAILED)}
    return frozenset(raised | set(BAD_ANSWERS) | prefixed)


Report = Callable[[Exception], None]
"""Where a detector's exception goes besides the record (in process: its traceback, for its author)."""


def print_traceback(error: Exception) -> None:
    traceback.print_exception(error, file=sys.stderr)


def fit_detector(detector: Detector, dev: Sequence[LabeledOrganism], report: Report | None = None) -> str | None:
    """Run the optional `fit`; its failure is returned in the harness's words (the run goes on unfitted)."""
    fit = getattr(detector, "fit", None)
    if fit is None:
        return None
    try:
        fit(list(dev))
    except Exception as e:  # noqa: BLE001 - a detector's failure is data
        if report:
            report(e)
        return describe(e)
    return None


def answer(detector: Detector, handle: OrganismHandle, track: Track, inputs: Sequence[str] = (),
           report: Report | None = None) -> Prediction:
    """The detector's answer on one track for one organism, checked; `inputs` is the monitor stream."""
    start = time.perf_counter()
    found: dict = {}
    try:
        if track == Track.AUDIT:
            found["score"] = check_probability(detector.audit(handle))  # type: ignore[attr-defined]
        elif track == Track.MONITOR:
            found["scores"] = check_scores(detector.monitor(handle, list(inputs)), len(inputs))  # type: ignore[attr-defined]
        else:
            elicitation = check_elicitation(detector.elicit(handle), handle.world)  # type: ignore[attr-defined]
            found.update(inputs=elicitation.inputs, goal=elicitation.goal)
    except Exception as e:  # noqa: BLE001 - recorded for this organism; the others still count
        if report:
            report(e)
        found = {"error": describe(e)}
    return Prediction(organism_id=handle.id, score=found.pop("score", None), **found,
                      seconds=time.perf_counter() - start, queries=handle.queries)


class Executor(Protocol):
    info: DetectorInfo
    catalog: Catalog
    tracks: frozenset[Track]
    query_budget: int | None
    fits: bool
    """Whether the detector learns from dev (`fit`)."""
    worlds: frozenset[str]
    device: str = "cpu"
    """Where a white-box detector's models run (`model_organisms.devices`)."""

    def fit(self, dev: Sequence[DevOrganism]) -> str | None: ...

    def answer(self, organism_id: str, track: Track, inputs: Sequence[str] = ()) -> Prediction: ...

    def answers(self, organism_ids: Sequence[str], track: Track, streams: Mapping[str, Sequence[str]]
                ) -> Iterator[Prediction]:
        """The answers for these organisms as they come, in any order (one after another here; a cluster runs them
        side by side); `streams` holds the monitor track's inputs."""
        for oid in organism_ids:
            yield self.answer(oid, track, streams.get(oid, ()))

    def refit(self, devs: Mapping[str, Sequence[DevOrganism]]) -> None:
        """After `fit`, before any answer: fit the detector again on each of these devs, each refit starting from
        where the last fit left it (as one instance is fitted again), for `refitted_audits` (and a cluster's tasks)."""

    def refitted_audits(self, ids: Sequence[str]) -> dict[str, list[Prediction]]:
        """Each refit's audit of these organisms (none without refits)."""

    def close(self) -> None: ...


class InProcess(Executor):
    """Runs a trusted detector (a baseline, or your own while developing) in this process; a white-box one with its
    models on `device` (a GPU with ``auto``, where there is one: its gradients and many forward passes gain most)."""

    def __init__(self, detector: Detector, catalog: Catalog, query_budget: int | None = None,
                 device: str = "cpu") -> None:
        self.detector, self.catalog, self.tracks = detector, catalog, frozenset(detector.tracks)
        self.device = device if detector.tier == AccessTier.WHITE_BOX else "cpu"
        self.fits = getattr(detector, "fit", None) is not None
        self.worlds = frozenset(getattr(detector, "worlds", DEFAULT_WORLDS))
        self.query_budget = query_budget if detector.tier == AccessTier.BLACK_BOX else None
        self.info = DetectorInfo(name=detector.name, source_sha256=source_sha256(detector), tier=detector.tier)
        self._refitted: dict[str, Detector] = {}

    def fit(self, dev: Sequence[DevOrganism], detector: Detector | None = None) -> str | None:
        from benchmark.handles import open_handle

        if not self.fits:
            return None
        detector = detector or self.detector
        handles = [LabeledOrganism(open_handle(self.catalog, o.id, detector.tier, device=self.device), o.label,
                                   o.family, o.role) for o in dev]
        return fit_detector(detector, handles, print_traceback)

    def answer(self, organism_id: str, track: Track, inputs: Sequence[str] = (),
               detector: Detector | None = None) -> Prediction:
        from benchmark.handles import open_handle  # imports torch: the sandbox's black-box worker never needs it

        monitoring, detector = track == Track.MONITOR, detector or self.detector
        handle = open_handle(self.catalog, organism_id, detector.tier, self.query_budget, monitoring, self.device)
        # A monitor starts from the fitted detector each time, holding nothing (no model) from an earlier call.
        return answer(copy.deepcopy(detector) if monitoring else detector, handle, track, inputs, print_traceback)

    def refit(self, devs: Mapping[str, Sequence[DevOrganism]]) -> None:
        """Fit a copy of the fitted detector on each dev in turn, keeping a copy as each refit leaves it (the fitted
        detector itself stays as it is)."""
        refitted, self._refitted = copy.deepcopy(self.detector), {}
        for name, dev in devs.items():
            self.fit(dev, refitted)
            self._refitted[name] = copy.deepcopy(refitted)

    def refitted_audits(self, ids: Sequence[str]) -> dict[str, list[Prediction]]:
        return {name: [self.answer(oid, Track.AUDIT, detector=detector) for oid in ids]
                for name, detector in self._refitted.items()}

    def close(self) -> None:
        pass
