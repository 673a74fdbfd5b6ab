"""Finding detectors by name: entry points in the group ``dab.detectors`` (the baselines register there too)."""

from __future__ import annotations

import difflib
import hashlib
import inspect
from importlib.metadata import entry_points

from benchmark.api import Detector

GROUP = "dab.detectors"


class UnknownDetector(LookupError):
    pass


def detector_names() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=GROUP))


def load_detector(name: str) -> Detector:
    """Instantiate a registered detector; an unknown name gets suggestions."""
    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        names = detector_names()
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownDetector(f"unknown detector {name!r}.{hint} Available: {', '.join(names) or 'none'}")
    if len(found) > 1:
        raise UnknownDetector(f"detector name {name!r} is registered twice: {', '.join(ep.value for ep in found)}")
    detector = found[0].load()()
    if not isinstance(detector, Detector):
        raise TypeError(f"detector {name!r} ({found[0].value}) lacks name, tracks, tier or audit")
    return detector


def source_sha256(detector: Detector) -> str:
    """Hash of the file that defines the detector's class: a run records exactly which code it ran."""
    return hashlib.sha256(inspect.getsource(inspect.getmodule(type(detector))).encode()).hexdigest()
