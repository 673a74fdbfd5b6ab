"""Executors run a detector's `fit` and `audit` somewhere: in this process, or in the sandbox.

Both turn whatever a detector does into data: an exception, a NaN or an answer of the wrong shape becomes a
recorded failure for that organism, never a crash of the run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from benchmark.api import Detector, LabeledOrganism, OrganismHandle
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


def audit_organism(detector: Detector, handle: OrganismHandle) -> Prediction:
    start = time.perf_counter()
    score, error = None, None
    try:
        score = check_probability(detector.audit(handle))
    except Exception as e:  # noqa: BLE001 - recorded for this organism; the others still count
        error = describe(e)
    return Prediction(organism_id=handle.id, score=score, error=error, seconds=time.perf_counter() - start,
                      queries=handle.queries)


class Executor(Protocol):
    info: DetectorInfo

    def fit(self, dev: Sequence[DevOrganism]) -> str | None: ...

    def audit(self, organism_id: str) -> Prediction: ...

    def close(self) -> None: ...


class InProcess:
    """Runs a trusted detector (a baseline, or your own while developing) in this process."""

    def __init__(self, detector: Detector, catalog: Catalog) -> None:
        self.detector, self.catalog = detector, catalog
        self.info = DetectorInfo(name=detector.name, source_sha256=source_sha256(detector), tier=detector.tier)

    def fit(self, dev: Sequence[DevOrganism]) -> str | None:
        if getattr(self.detector, "fit", None) is None:
            return None
        handles = [LabeledOrganism(open_handle(self.catalog, o.id, self.detector.tier), o.label, o.family, o.role)
                   for o in dev]
        return fit_detector(self.detector, handles)

    def audit(self, organism_id: str) -> Prediction:
        return audit_organism(self.detector, open_handle(self.catalog, organism_id, self.detector.tier))

    def close(self) -> None:
        pass
