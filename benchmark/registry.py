"""Finding detectors: a Python file, a module path, or an entry point of the group ``dab.detectors``.

The baselines register as entry points too. Whatever the source, the contract is checked before anything
runs, and what is missing is named.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import re
import sys
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

from benchmark.api import AccessTier, Detector, Track

GROUP = "dab.detectors"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""A detector's name: it is shown on the leaderboard, so it is a short label, not free text."""
CONTRACT = ("a `name` of 1 to 64 letters, digits, '_', '.' and '-'", "`tracks`, a non-empty set of benchmark.api.Track",
            "`tier`, a benchmark.api.AccessTier", "an `audit(organism) -> float` method for the audit track",
            "a `monitor(organism, inputs) -> scores` method for the monitor track",
            "an `elicit(organism) -> Elicitation` method for the elicit track", "`fit` must be a method")
"""Everything the contract check can find missing, in these words only."""


class UnknownDetector(LookupError):
    """No detector by that name, path or module, or it breaks the contract."""


class BrokenContract(UnknownDetector):
    """A detector that lacks some of `CONTRACT`."""

    def __init__(self, where: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"detector from {where} breaks the contract: it needs {'; '.join(problems)}")


@dataclass(frozen=True)
class DetectorSource:
    """Where a detector comes from: enough to load it again in another process (the sandbox)."""

    kind: str
    """``file``, ``module`` or ``entry_point``."""
    target: str
    """The file path, ``module[:Class]``, or entry-point name."""
    root: str | None = None
    """A directory searched first for a ``module``'s package (an unpacked wheel), which then holds all its code."""

    def _module(self) -> str:
        return self.target.split(":")[0] if self.kind == "module" else _entry_point(self.target).module

    def _find_spec(self, top: str) -> importlib.machinery.ModuleSpec | None:
        return importlib.machinery.PathFinder.find_spec(top, [self.root]) if self.root else \
            importlib.util.find_spec(top)

    def module_file(self) -> Path:
        """The file defining the detector, found without importing (so without running) any of its code."""
        if self.kind == "file":
            return Path(self.target.split(":")[0]).resolve()
        top, *rest = self._module().split(".")
        spec = self._find_spec(top)
        if spec is None or spec.origin is None:
            raise UnknownDetector(f"cannot find detector module {self._module()!r}")
        path = Path(spec.origin)
        for part in rest:
            base = path.parent / part
            path = base / "__init__.py" if (base / "__init__.py").is_file() else base.with_suffix(".py")
        if not path.is_file():
            raise UnknownDetector(f"cannot find the file of detector module {self._module()!r}")
        return path

    def paths(self) -> list[Path]:
        """Files and directories the detector's code lives in (mounted read-only in the sandbox)."""
        if self.kind == "file":
            return [self.module_file()]
        if self.root:
            return [Path(self.root)]
        spec = importlib.util.find_spec(self._module().split(".")[0])
        origin = Path(spec.origin) if spec and spec.origin else self.module_file()
        return [origin.parent if origin.name == "__init__.py" else origin]

    def files(self) -> dict[str, bytes]:
        """The detector's own code, to carry to another machine (`placed`): its file, or every file of its `root`;
        none for an installed module, which every machine that runs dab has."""
        if self.kind == "file":
            return {self.module_file().name: self.module_file().read_bytes()}
        if self.root:
            return {str(p.relative_to(self.root)): p.read_bytes() for p in sorted(Path(self.root).rglob("*"))
                    if p.is_file()}
        return {}

    def placed(self, directory: Path) -> DetectorSource:
        """This source where `files()` were written to `directory`."""
        if self.kind == "file":
            path = self.target.split(":")[0]
            return DetectorSource("file", str(directory / Path(path).name) + self.target[len(path):])
        return DetectorSource(self.kind, self.target, str(directory)) if self.root else self

    def sha256(self) -> str:
        """The same hash `source_sha256` gives the loaded detector, computed from the file alone; of a `root`,
        every file in it, since any of them may change what runs."""
        if self.root:
            digest = hashlib.sha256()
            for path in sorted(p for p in Path(self.root).rglob("*") if p.is_file()):
                digest.update(f"{path.relative_to(self.root)}\0".encode() + path.read_bytes() + b"\0")
            return digest.hexdigest()
        return hashlib.sha256(self.module_file().read_text().encode()).hexdigest()


def detector_names() -> list[str]:
    return sorted({ep.name for ep in entry_points(group=GROUP)})


def _entry_point(name: str):
    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        names = detector_names()
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownDetector(f"unknown detector {name!r}.{hint} Available: {', '.join(names) or 'none'}")
    if len({ep.value for ep in found}) > 1:
        raise UnknownDetector(f"detector name {name!r} is registered twice: {', '.join(ep.value for ep in found)}")
    return found[0]


def resolve(spec: str) -> DetectorSource:
    """``path/to/file.py[:Class]``, ``package.module[:Class]`` or a registered name."""
    path = spec.split(":")[0]
    if path.endswith(".py"):
        if not Path(path).is_file():
            raise UnknownDetector(f"detector file {path} not found")
        return DetectorSource("file", str(Path(path).resolve()) + spec[len(path):])
    if "." in path or ":" in spec:
        return DetectorSource("module", spec)
    _entry_point(spec)
    return DetectorSource("entry_point", spec)


def _detector_classes(module: object, where: str, class_name: str | None) -> type:
    if class_name:
        if not hasattr(module, class_name):
            raise UnknownDetector(f"{where} has no {class_name!r}")
        return getattr(module, class_name)
    candidates = [obj for obj in vars(module).values() if inspect.isclass(obj)
                  and obj.__module__ == getattr(module, "__name__", None) and any(hasattr(obj, t) for t in Track)]
    if len(candidates) != 1:
        found = ", ".join(c.__name__ for c in candidates) or "none"
        raise UnknownDetector(f"{where} must define exactly one detector class (a class with `audit`, `monitor` or "
                              f"`elicit`; found: {found}); name one with {where}:ClassName")
    return candidates[0]


def instantiate(source: DetectorSource) -> Detector:
    """Import and construct the detector, then check it against the contract."""
    if source.kind == "entry_point":
        ep = _entry_point(source.target)
        where, factory = f"entry point {source.target!r} ({ep.value})", ep.load()
    else:
        target, _, class_name = source.target.partition(":")
        if source.kind == "file":
            # Named by its code, not its path: a fitted detector pickled here loads where the file lies elsewhere.
            name = f"dab_submission_{source.sha256()[:16]}"
            spec = importlib.util.spec_from_file_location(name, target)
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            sys.modules[name] = module
            spec.loader.exec_module(module)  # type: ignore[union-attr]
            where = target
        else:
            if source.root and source.root not in sys.path:
                sys.path.insert(0, source.root)
            try:
                module = importlib.import_module(target)
            except ImportError as e:
                raise UnknownDetector(f"cannot import detector module {target!r}: {e}") from None
            where = target
        factory = _detector_classes(module, where, class_name or None)
    detector = check_contract(factory(), where)
    source_sha256(detector)  # hashed now, as imported: a later edit of the file must not relabel this code
    return detector


def check_contract(detector: object, where: str) -> Detector:
    """One line naming everything the detector lacks (`BrokenContract`)."""
    name, tracks, fit = (getattr(detector, a, None) for a in ("name", "tracks", "fit"))
    tracks_ok = isinstance(tracks, (set, frozenset)) and tracks and all(isinstance(t, Track) for t in tracks)
    lacks = lambda track: tracks_ok and track in tracks and not callable(getattr(detector, track.value, None))
    broken = [not isinstance(name, str) or not NAME.fullmatch(name), not tracks_ok,
              not isinstance(getattr(detector, "tier", None), AccessTier),
              *(lacks(track) for track in (Track.AUDIT, Track.MONITOR, Track.ELICIT)),
              fit is not None and not callable(fit)]
    if any(broken):
        raise BrokenContract(where, [problem for problem, b in zip(CONTRACT, broken) if b])
    return detector  # type: ignore[return-value]


def load_detector(spec: str) -> Detector:
    return instantiate(resolve(spec))


def source_sha256(detector: Detector) -> str:
    """Hash of the file that defines the detector's class: a run records exactly which code it ran."""
    return _class_source_sha256(type(detector))


@cache
def _class_source_sha256(cls: type) -> str:
    return hashlib.sha256(inspect.getsource(inspect.getmodule(cls)).encode()).hexdigest()
