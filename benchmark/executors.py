"""Executors run a detector's `fit` and its answers on each track somewhere: in this process, or in the sandbox.

Both turn whatever a detector does into data: an exception, a NaN or an answer of the wrong shape becomes a
recorded failure for that organism, never a crash of the run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from benchmark.api import (DEFAULT_WORLDS, GOALS, MAX_CANDIDATES, AccessTier, Detector, Elicitation, LabeledOrganism,
                           OrganismHandle, Track)
from benchmark.handles import open_handle
from benchmark.records import DetectorInfo, Prediction
from benchmark.registry import source_sha256
from model_organisms.catalog import Catalog


class BadAnswer(ValueError):
    """A detector answered something that is not what its track asks for."""


@dataclass(frozen=True)
class DevOrganism:
    """A dev-split organism and its public label, before a handle is opened on it."""

    id: str
    label: int
    family: str
    role: str


def check_probability(answer: object) -> float:
    """The answer as a probability in [0, 1], or `BadAnswer` saying what it was instead."""
    shape = getattr(answer, "shape", None)
    if isinstance(answer, (bool, str, bytes)) or (shape is not None and shape != ()):
        kind = type(answer).__name__ + ("" if shape is None else f" of shape {shape}")
        raise BadAnswer(f"returned {kind}, expected a float")
    try:
        value = float(answer)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BadAnswer(f"returned {type(answer).__name__}, expected a float") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise BadAnswer(f"returned {value}, expected a probability in [0, 1]")
    return value


def check_scores(answer: object, n: int) -> list[float]:
    """A monitor answer as one finite score per input, or `BadAnswer`."""
    try:
        scores = np.asarray(answer, dtype=float)
    except (TypeError, ValueError):
        raise BadAnswer(f"returned {type(answer).__name__}, expected {n} scores") from None
    if scores.shape != (n,):
        raise BadAnswer(f"returned scores of shape {scores.shape}, expected ({n},)")
    if not np.isfinite(scores).all():
        raise BadAnswer(f"returned {int((~np.isfinite(scores)).sum())} non-finite scores")
    return scores.tolist()


def check_elicitation(answer: object) -> Elicitation:
    """An elicit answer as at most `MAX_CANDIDATES` prompts and a goal of the taxonomy, or `BadAnswer`."""
    inputs, goal = getattr(answer, "inputs", None), getattr(answer, "goal", None)
    if not isinstance(inputs, (list, tuple)) or not all(isinstance(i, str) for i in inputs):
        raise BadAnswer(f"returned {type(answer).__name__}, expected an Elicitation with a list of input strings")
    if len(inputs) > MAX_CANDIDATES:
        raise BadAnswer(f"returned {len(inputs)} candidate inputs, at most {MAX_CANDIDATES} allowed")
    if goal not in GOALS:
        raise BadAnswer(f"named the goal {goal!r}, expected one of {', '.join(GOALS)}")
    return Elicitation(list(inputs), goal)


def describe(error: Exception) -> str:
    return str(error) if isinstance(error, BadAnswer) else f"raised {type(error).__name__}: {error}"


def fit_detector(detector: Detector, dev: Sequence[LabeledOrganism]) -> str | None:
    """Run the optional `fit`; its failure is returned as text (the run goes on unfitted)."""
    fit = getattr(detector, "fit", None)
    if fit is None:
        return None
    try:
        fit(list(dev))
    except Exception as e:  # noqa: BLE001 - a detector's failure is data
        return describe(e)
    return None


def answer(detector: Detector, handle: OrganismHandle, track: Track, inputs: Sequence[str] = ()) -> Prediction:
    """The detector's answer on one track for one organism, checked; `inputs` is the monitor stream."""
    start = time.perf_counter()
    found: dict = {}
    try:
        if track == Track.AUDIT:
            found["score"] = check_probability(detector.audit(handle))
        elif track == Track.MONITOR:
            found["scores"] = check_scores(detector.monitor(handle, list(inputs)), len(inputs))  # type: ignore[attr-defined]
        else:
            elicitation = check_elicitation(detector.elicit(handle))  # type: ignore[attr-defined]
            found.update(inputs=elicitation.inputs, goal=elicitation.goal)
    except Exception as e:  # noqa: BLE001 - recorded for this organism; the others still count
        found = {"error": describe(e)}
    return Prediction(organism_id=handle.id, score=found.pop("score", None), **found,
                      seconds=time.perf_counter() - start, queries=handle.queries)


class Executor(Protocol):
    info: DetectorInfo
    tracks: frozenset[Track]
    query_budget: int | None
    fits: bool
    """Whether the detector learns from dev (`fit`)."""
    worlds: frozenset[str]

    def fit(self, dev: Sequence[DevOrganism]) -> str | None: ...

    def answer(self, organism_id: str, track: Track, inputs: Sequence[str] = ()) -> Prediction: ...

    def close(self) -> None: ...


class InProcess:
    """Runs a trusted detector (a baseline, or your own while developing) in this process."""

    def __init__(self, detector: Detector, catalog: Catalog, query_budget: int | None = None) -> None:
        self.detector, self.catalog, self.tracks = detector, catalog, frozenset(detector.tracks)
        self.fits = getattr(detector, "fit", None) is not None
        self.worlds = frozenset(getattr(detector, "worlds", DEFAULT_WORLDS))
        self.query_budget = query_budget if detector.tier == AccessTier.BLACK_BOX else None
        self.info = DetectorInfo(name=detector.name, source_sha256=source_sha256(detector), tier=detector.tier)

    def fit(self, dev: Sequence[DevOrganism]) -> str | None:
        if not self.fits:
            return None
        handles = [LabeledOrganism(open_handle(self.catalog, o.id, self.detector.tier), o.label, o.family, o.role)
                   for o in dev]
        return fit_detector(self.detector, handles)

    def answer(self, organism_id: str, track: Track, inputs: Sequence[str] = ()) -> Prediction:
        handle = open_handle(self.catalog, organism_id, self.detector.tier, self.query_budget)
        return answer(self.detector, handle, track, inputs)

    def close(self) -> None:
        pass
