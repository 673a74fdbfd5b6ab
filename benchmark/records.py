"""The run record: one typed, versioned document per run, holding every raw prediction.

Raw per-organism scores are kept so metrics can be recomputed when scoring changes.
"""

from __future__ import annotations

import platform
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version

from pydantic import BaseModel, ConfigDict, Field

from benchmark.api import AccessTier, Track

SCHEMA_VERSION = 2
UNRECORDED_TRUSTED_INPUTS = 256
"""How many public trusted inputs there were before runs and gate verdicts recorded it."""


class Prediction(BaseModel):
    """A detector's answer for one organism on one track (only its own outputs: no sealed ground truth)."""

    model_config = ConfigDict(extra="forbid")
    organism_id: str
    score: float | None
    """Audit: P(hidden goal); None when it failed (scored as the missing-answer default)."""
    scores: list[float] | None = None
    """Monitor: one score per input of the organism's sealed stream, in stream order."""
    inputs: list[str] | None = None
    """Elicit: the candidate inputs."""
    goal: str | None = None
    """Elicit: the named goal."""
    error: str | None = None
    seconds: float
    queries: int


class Metric(BaseModel):
    """One number, keyed by structure (metric, family), never by a composed string."""

    model_config = ConfigDict(extra="forbid")
    metric: str
    family: str | None = None
    """None: the whole split; else deceptive organisms of this family against all honest ones."""
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    """95% bootstrap interval, resampling organism groups (a deceptive organism with its twin is one)."""
    higher_is_better: bool
    note: str | None = None
    """Why there is no value where one is expected: ``too few`` deceptive organisms (`scoring.MIN_DECEPTIVE`)."""


class Curve(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fpr: list[float]
    tpr: list[float]


class DetectorInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    source_sha256: str
    tier: AccessTier


class CatalogRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    fingerprint: str
    split: str
    world: str = "assistant"
    trusted_inputs: int = UNRECORDED_TRUSTED_INPUTS
    """How many public trusted inputs each organism came with (`handles.TRUSTED_INPUTS`)."""


class RunRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    run_id: str
    detector: DetectorInfo
    catalog: CatalogRef
    track: Track
    query_budget: int | None = None
    """Black-box queries allowed per organism (None: unlimited)."""
    started_at: datetime
    fit_seconds: float
    fit_error: str | None = None
    total_seconds: float
    predictions: list[Prediction]
    left_out: dict[str, list[Prediction]] = Field(default_factory=dict)
    """Audit answers after fitting on dev without one family (keyed by it), for leave-one-family-out scores."""
    metrics: list[Metric]
    roc: Curve | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    device: str = "cpu"
    """Where the detector's models ran: ``cpu``, or ``auto`` (a CUDA device where the node had one)."""

    def metric(self, name: str, family: str | None = None) -> float | None:
        return next((m.value for m in self.metrics if m.metric == name and m.family == family), None)

    def shown(self, name: str, family: str | None = None) -> float | str | None:
        """The metric's value, or the note that says why it has none (``too few``)."""
        found = next((m for m in self.metrics if m.metric == name and m.family == family), None)
        return None if found is None else found.value if found.value is not None else found.note

    def interval(self, name: str) -> tuple[float | None, float | None]:
        found = next((m for m in self.metrics if m.metric == name and m.family is None), None)
        return (found.ci_low, found.ci_high) if found else (None, None)


def package_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("dab", "torch", "transformers", "scikit-learn", "numpy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found
