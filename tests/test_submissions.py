"""Submitting detectors: contract checks, quotas, the holdout flag, and runs that survive being killed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.sandbox import sandbox_unavailable
from leaderboard.store import ResultStore
from model_organisms.catalog import Catalog

runner = CliRunner()

KILLER = '''
import os, signal
from pathlib import Path
from benchmark.api import AccessTier, Track

LOG, MARK, VICTIM = Path({log!r}), Path({mark!r}), {victim!r}

class Killer:
    """Answers 0.4; the first time it meets VICTIM it kills the whole harness process."""
    name = "killer"
    tracks = frozenset({{Track.AUDIT}})
    tier = AccessTier.BLACK_BOX

    def audit(self, organism):
        with LOG.open("a") as f:
            f.write(organism.id + "\\n")
        if organism.id == VICTIM and not MARK.exists():
            MARK.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return 0.4
'''

PLAIN = '''
from benchmark.api import AccessTier, Track

class Plain:
    name = "plain"
    tracks = frozenset({Track.AUDIT})
    tier = AccessTier.BLACK_BOX

    def audit(self, organism):
        return 0.5 + VERSION

VERSION = 0.0
'''


def dab(*args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_a_killed_run_resumes_without_losing_or_repeating_anything(micro_catalog: Catalog, cache_dir: Path,
                                                                     tmp_path: Path) -> None:
    ids = micro_catalog.ids("dev")
    log, db = tmp_path / "audited.txt", tmp_path / "results.sqlite"
    detector = tmp_path / "killer.py"
    detector.write_text(KILLER.format(log=str(log), mark=str(tmp_path / "killed"), victim=ids[2]))
    env = {**os.environ, "DAB_CACHE_DIR": str(cache_dir), "DAB_DB": str(db)}
    first = dab("evaluate", str(detector), "--catalog", "micro", "--split", "dev", cwd=tmp_path, env=env)
    assert first.returncode == -9
    assert log.read_text().split() == ids[:3]  # the kill came while auditing the third organism
    assert ResultStore(db).latest_runs() == []

    second = dab("evaluate", str(detector), "--catalog", "micro", "--split", "dev", cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    assert log.read_text().split() == [*ids[:3], *ids[2:]]  # only the unfinished organisms ran again
    [record] = ResultStore(db).latest_runs()
    assert [p.organism_id for p in record.predictions] == ids
    assert [p.score for p in record.predictions] == [0.4] * len(ids)


def test_a_detector_that_breaks_the_contract_is_named(tmp_path: Path, db_path: Path, micro_catalog: Catalog) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("class Bad:\n    name = 'bad'\n    def audit(self, organism):\n        return 0.5\n")
    result = runner.invoke(app, ["evaluate", str(bad), "--catalog", "micro"])
    assert result.exit_code == 2
    assert "breaks the contract: it needs `tracks`, a non-empty set of benchmark.api.Track; `tier`" in result.output
    result = runner.invoke(app, ["evaluate", str(tmp_path / "missing.py"), "--catalog", "micro"])
    assert result.exit_code == 2 and "not found" in result.output
    result = runner.invoke(app, ["evaluate", "detectors.random_baseline", "--catalog", "micro", "--split", "test"])
    assert result.exit_code == 2 and "sealed: use `dab submit" in result.output


MONITOR_ONLY = """
import numpy as np
from benchmark.api import AccessTier, Track

class Watcher:
    name = "watcher"
    tracks = frozenset({Track.MONITOR})
    tier = AccessTier.BLACK_BOX

    def monitor(self, organism, inputs):
        return np.array([len(text) for text in inputs], dtype=float)
"""


def test_a_detector_of_any_subset_of_tracks_loads_and_runs(tmp_path: Path, db_path: Path,
                                                          micro_catalog: Catalog) -> None:
    """A monitor alone (as cupbearer's detectors are) or an elicitor alone is a detector; naming a track without
    its method is not."""
    watcher = tmp_path / "watcher.py"
    watcher.write_text(MONITOR_ONLY)
    prober = tmp_path / "prober.py"
    prober.write_text(MONITOR_ONLY.replace("Watcher", "Prober").replace("watcher", "prober")
                      .replace("Track.MONITOR", "Track.ELICIT").replace(
                          "def monitor(self, organism, inputs):\n        return np.array([len(text) for text in inputs], dtype=float)",
                          "def elicit(self, organism):\n        from benchmark.api import Elicitation\n"
                          "        return Elicitation(organism.world.trusted_inputs()[:2], 'hostile')"))
    for path in (watcher, prober):
        result = runner.invoke(app, ["evaluate", str(path), "--catalog", "micro"])
        assert result.exit_code == 0, result.output
    runs = {(r.detector.name, r.track.value) for r in ResultStore(db_path).latest_runs()}
    assert runs == {("watcher", "monitor"), ("prober", "elicit")}
    liar = tmp_path / "liar.py"
    liar.write_text(MONITOR_ONLY.replace("Track.MONITOR", "Track.MONITOR, Track.AUDIT"))
    result = runner.invoke(app, ["evaluate", str(liar), "--catalog", "micro"])
    assert result.exit_code == 2
    assert "it needs an `audit(organism) -> float` method for the audit track" in result.output.replace("\n", "")


def test_a_module_path_and_an_entry_point_name_both_load(micro_catalog: Catalog, db_path: Path) -> None:
    for spec in ("detectors.random_baseline:RandomDetector", "random"):
        result = runner.invoke(app, ["evaluate", spec, "--catalog", "micro", "--again", "--track", "audit"])
        assert result.exit_code == 0, result.output
    assert len(ResultStore(db_path).latest_runs()) == 1  # the same code: one leaderboard entry


@pytest.mark.slow
@pytest.mark.skipif(sandbox_unavailable() is not None, reason=f"sandbox unavailable: {sandbox_unavailable()}")
def test_sealed_splits_take_limited_submissions_and_holdout_needs_a_flag(tiny_catalog: Catalog, tmp_path: Path,
                                                                         db_path: Path) -> None:
    detector = tmp_path / "plain.py"
    detector.write_text(PLAIN)
    args = ["submit", str(detector), "--catalog", "tiny", "--per-day", "1"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "already in the leaderboard" in runner.invoke(app, args).output  # same code: skipped, not counted
    detector.write_text(PLAIN.replace("VERSION = 0.0", "VERSION = 0.1"))
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "has used its 1 submissions to tiny/test" in refused.output
    assert [r.predictions[0].score for r in ResultStore(db_path).latest_runs()] == [0.5]
    holdout = runner.invoke(app, ["submit", str(detector), "--catalog", "tiny", "--split", "holdout"])
    assert holdout.exit_code == 2 and "only with --holdout" in holdout.output
    rows = json.loads(runner.invoke(app, ["leaderboard", "--json"]).output)
    assert [(r["detector"], r["split"]) for r in rows] == [("plain", "test")]
