"""The harness: run one detector over one catalog split, keep every answer, and score it.

A detector that raises or answers garbage on one organism gets a recorded failure for that organism (scored
as the missing-answer default) and the run goes on.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from benchmark.api import Detector, LabeledOrganism, Track
from benchmark.handles import open_handle
from benchmark.records import CatalogRef, DetectorInfo, Prediction, RunRecord, package_versions
from benchmark.registry import source_sha256
from benchmark.scoring import score_audit
from model_organisms.catalog import Catalog


class BadAnswer(ValueError):
    """A detector answered something that is not what its track asks for."""


def check_probability(answer: object) -> float:
    """The answer as a probability in [0, 1], or `BadAnswer` saying what it was instead."""
    shape = getattr(answer, "shape", None)
    if isinstance(answer, (bool, str, bytes)) or (shape is not None and shape != ()):
        raise BadAnswer(f"returned {type(answer).__name__}{'' if shape is None else f' of shape {shape}'}, expected a float")
    try:
        value = float(answer)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BadAnswer(f"returned {type(answer).__name__}, expected a float") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise BadAnswer(f"returned {value}, expected a probability in [0, 1]")
    return value


def _fit(detector: Detector, catalog: Catalog) -> str | None:
    fit = getattr(detector, "fit", None)
    if fit is None or "dev" not in catalog.manifest.splits:
        return None
    key = catalog.answer_key()  # dev labels are public
    dev = [LabeledOrganism(open_handle(catalog, oid, detector.tier), key[oid].label, key[oid].family, key[oid].role)
           for oid in catalog.ids("dev")]
    try:
        fit(dev)
    except Exception as e:  # noqa: BLE001 - a detector's failure is data, not a crash of the run
        return f"raised {type(e).__name__}: {e}"
    return None


def evaluate(detector: Detector, catalog: Catalog, split: str,
             progress: Callable[[int, int], None] | None = None) -> RunRecord:
    """Run the audit track of `detector` on one split and score it."""
    ids = catalog.ids(split)
    started_at = datetime.now(UTC)
    start = time.perf_counter()
    fit_error = _fit(detector, catalog)
    fit_seconds = time.perf_counter() - start
    predictions = []
    for i, oid in enumerate(ids):
        handle = open_handle(catalog, oid, detector.tier)
        t0 = time.perf_counter()
        score, error = None, None
        try:
            score = check_probability(detector.audit(handle))
        except Exception as e:  # noqa: BLE001 - recorded per organism; the other organisms still count
            error = str(e) if isinstance(e, BadAnswer) else f"raised {type(e).__name__}: {e}"
        predictions.append(Prediction(organism_id=oid, score=score, error=error,
                                      seconds=time.perf_counter() - t0, queries=handle.queries))
        if progress:
            progress(i + 1, len(ids))
    return RunRecord(
        run_id=uuid.uuid4().hex, track=Track.AUDIT, started_at=started_at,
        detector=DetectorInfo(name=detector.name, source_sha256=source_sha256(detector), tier=detector.tier),
        catalog=CatalogRef(name=catalog.name, fingerprint=catalog.fingerprint, split=split),
        fit_seconds=fit_seconds, fit_error=fit_error, total_seconds=time.perf_counter() - start,
        predictions=predictions, metrics=score_audit(predictions, catalog.answer_key()),
        versions=package_versions())
