"""The run record: one typed, versioned document per run, holding every raw prediction.

Raw per-organism scores are kept so metrics can be recomputed when scoring changes.
"""

from __future__ import annotations

import platform
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version

from pydantic import BaseModel, ConfigDict, Field

from benchmark.api import AccessTier, Track

SCHEMA_VERSION = 1


class Prediction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    organism_id: str
    score: float | None
    """The detector's answer; None when it failed (scored as the missing-answer default)."""
    error: str | None = None
    seconds: float
    queries: int


class Metric(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metric: str
    value: float | None
    higher_is_better: bool


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


class RunRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    run_id: str
    detector: DetectorInfo
    catalog: CatalogRef
    track: Track
    started_at: datetime
    fit_seconds: float
    fit_error: str | None = None
    total_seconds: float
    predictions: list[Prediction]
    metrics: list[Metric]
    versions: dict[str, str] = Field(default_factory=dict)

    def metric(self, name: str) -> float | None:
        return next((m.value for m in self.metrics if m.metric == name), None)


def package_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("dab", "torch", "transformers", "scikit-learn", "numpy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found
