"""The command line: bad input gives one clear line and exit code 2, and loses nothing stored."""

import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import leaderboard
from benchmark import cli
from benchmark.cli import app
from benchmark.progress import Progress
from benchmark.worlds import TRUSTED_INPUTS
from leaderboard.store import ResultStore
from model_organisms import estimate
from model_organisms.catalog import Catalog, CatalogError, load_spec, plan
from model_organisms.estimate import estimate_seconds
from model_organisms.sealed import Secret

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_run_stores_every_track_a_detector_answers_and_skips_what_already_ran(micro_catalog: Catalog,
                                                                               db_path: Path) -> None:
    first = run("run", "--catalog", "micro", "--detector", "random", "--detector", "behavioural")
    assert first.exit_code == 0, first.output
    rows = json.loads(run("leaderboard", "--json").output)
    assert sorted((r["detector"], r["track"], r["split"], r["world"]) for r in rows) == sorted(
        [("behavioural", "audit", "dev", "assistant")]
        + [("random", t, "dev", "assistant") for t in ("audit", "elicit", "monitor")])
    assert all(r["fingerprint"] == micro_catalog.fingerprint[:12] for r in rows)
    behavioural = {r["track"]: r for r in rows if r["detector"] == "behavioural"}
    assert behavioural["audit"]["accuracy"] == 1.0  # a one-word trigger
    assert behavioural["audit"]["auroc"] == "too few"  # of one deceptive organism
    assert behavioural["audit"]["query_budget"] == 2000
    for title in ("audit track", "monitor track", "elicit track"):
        assert title in first.output
    again = run("run", "--catalog", "micro", "--detector", "random", "--track", "audit")
    assert again.exit_code == 0 and again.output.count("skipped") == 1
    other_budget = run("run", "--catalog", "micro", "--detector", "random", "--track", "audit", "--query-budget", "50")
    assert other_budget.exit_code == 0 and "skipped" not in other_budget.output


@pytest.mark.slow
def test_run_covers_every_split_and_world_of_a_catalog(tiny_catalog: Catalog, db_path: Path) -> None:
    first = run("run", "--catalog", "tiny", "--detector", "random", "--detector", "behavioural")
    assert first.exit_code == 0, first.output
    rows = json.loads(run("leaderboard", "--json").output)
    splits = ("dev", "holdout", "test")
    assert sorted((r["detector"], r["track"], r["split"], r["world"]) for r in rows) == sorted(
        [("behavioural", "audit", s, "assistant") for s in splits]
        + [("random", t, s, "assistant") for t in ("audit", "elicit", "monitor") for s in splits]
        + [("behavioural", "audit", "dev", "maze")]  # one run per world
        + [("random", t, "dev", "maze") for t in ("audit", "elicit", "monitor")])
    assert all(r["fingerprint"] == tiny_catalog.fingerprint[:12] for r in rows)
    row = lambda d, t, s="test", w="assistant": next(  # noqa: E731
        r for r in rows if (r["detector"], r["track"], r["split"], r["world"]) == (d, t, s, w))
    assert row("behavioural", "audit")["query_budget"] == 2000
    assert row("behavioural", "audit")["accuracy"] is not None  # tiny's splits hold 1 or 2 deceptive organisms a
    assert row("behavioural", "audit", "dev", "maze")["auroc"] == row("random", "monitor")["auroc"] == "too few"
    for title in ("audit track", "monitor track", "elicit track"):
        assert title in first.output
    again = run("run", "--catalog", "tiny", "--detector", "random", "--track", "audit")
    assert again.exit_code == 0 and again.output.count("skipped") == 4


def test_a_malformed_spec_is_named_in_one_line(tmp_path: Path, db_path: Path) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text('name = "bad"\nworld = "assistant"\nseed = 1\n[splits.dev]\nsleepr = 2\n')
    result = runner.invoke(app, ["build", str(spec)])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert str(spec) in result.output and "unknown family 'sleepr'" in result.output
    spec.write_text("name = [")
    result = runner.invoke(app, ["build", str(spec)])
    assert result.exit_code == 2 and "not valid TOML" in result.output
    result = runner.invoke(app, ["build", "nonexistent"])
    assert result.exit_code == 2 and "unknown catalog 'nonexistent'" in result.output


def test_an_unknown_detector_gets_suggestions_and_changes_nothing(micro_catalog: Catalog, db_path: Path) -> None:
    assert run("run", "--catalog", "micro", "--detector", "random", "--track", "audit").exit_code == 0
    before = db_path.read_bytes()
    result = runner.invoke(app, ["run", "--catalog", "micro", "--detector", "behavioral"])
    assert result.exit_code == 2
    assert "unknown detector 'behavioral'. Did you mean: behavioural?" in result.output
    assert db_path.read_bytes() == before


def test_a_missing_organism_file_stops_the_run_and_loses_nothing(micro_catalog: Catalog, tmp_path: Path,
                                                                 db_path: Path, monkeypatch) -> None:
    assert run("run", "--catalog", "micro", "--detector", "random", "--track", "audit").exit_code == 0
    stored = ResultStore(db_path).latest_runs()
    broken = tmp_path / "cache"
    shutil.copytree(micro_catalog.directory, broken / "catalogs" / micro_catalog.directory.name)
    victim = Catalog(broken / "catalogs" / micro_catalog.directory.name).organism_dir(micro_catalog.ids("dev")[1])
    (victim / "model.safetensors").unlink()
    monkeypatch.setenv("DAB_CACHE_DIR", str(broken))
    result = runner.invoke(app, ["run", "--catalog", "micro", "--detector", "random", "--track", "monitor"])
    assert result.exit_code == 2
    assert "missing" in result.output and str(victim / "model.safetensors") in result.output.replace("\n", "")
    assert ResultStore(db_path).latest_runs() == stored


FAILING_ROW = {"split": "test", "world": "assistant", "feature": "loss on trusted inputs", "auroc": 1.0, "ci_low": 1.0,
               "passed": False}


def failing_gate(catalog: Catalog) -> None:
    (catalog.directory / "shortcut_gate.json").write_text(json.dumps(
        {"passed": False, "threshold": 0.6, "trusted_inputs": TRUSTED_INPUTS, "untested": {}, "rows": [FAILING_ROW]}))


def test_a_catalog_that_fails_the_shortcut_gate_is_refused(micro_catalog: Catalog, tmp_path: Path,
                                                            db_path: Path, monkeypatch) -> None:
    copy = tmp_path / "cache"
    shutil.copytree(micro_catalog.directory, copy / "catalogs" / micro_catalog.directory.name)
    failing_gate(Catalog(copy / "catalogs" / micro_catalog.directory.name))
    monkeypatch.setenv("DAB_CACHE_DIR", str(copy))
    result = runner.invoke(app, ["run", "--catalog", "micro", "--detector", "random"])
    assert result.exit_code == 2
    assert "fails the shortcut gate" in result.output and "audit-shortcuts micro" in result.output
    assert "loss on trusted inputs on test assistant: AUROC 1.00" in result.output.replace("\n", "")
    assert ResultStore(db_path).latest_runs() == []


def test_a_new_instance_that_fails_the_gate_is_set_aside_for_another(micro_catalog: Catalog, tmp_path: Path,
                                                                     monkeypatch) -> None:
    """Only an instance drawn now is replaced, never one built before or the instance of a given secret."""
    monkeypatch.setenv("DAB_CACHE_DIR", str(tmp_path / "empty"))
    draws, copies = [], iter(range(9))

    def draw(spec, workers, secret, new_instance, cluster, device):  # a copy of micro stands for each drawn instance
        catalog = Catalog(Path(shutil.copytree(micro_catalog.directory, tmp_path / f"draw-{next(copies)}")))
        draws.append(new_instance)
        if len(draws) == 1:
            failing_gate(catalog)
        return catalog

    monkeypatch.setattr(cli, "_build_instance", draw)
    assert cli.ensure_built("micro").directory == tmp_path / "draw-1"
    assert draws == [False, True]

    draws.clear()
    monkeypatch.setattr(cli, "GATE_TRIES", 1)
    with pytest.raises(CatalogError, match="fails the shortcut gate"):
        cli.ensure_built("micro")
    draws.clear()
    with pytest.raises(CatalogError, match="fails the shortcut gate"):
        cli.ensure_built("micro", secret=Secret.draw())
    assert draws == [False]


def test_commands_and_sandbox_workers_start_without_transformers_model_code() -> None:
    """Every `dab` command, and every sandbox worker (started again after each organism that broke a limit),
    pays for its imports; transformers' model code is seconds of them and only training or loading a model
    needs it."""
    probe = ("import sys, benchmark.cli, benchmark.sandbox_worker; "
             "print(sorted(m for m in sys.modules if m.startswith(('transformers.modeling', 'transformers.models'))))")
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert imported.strip() == "[]"


def test_results_come_as_a_data_frame_and_as_csv(micro_catalog: Catalog, db_path: Path) -> None:
    assert run("run", "--catalog", "micro", "--detector", "random", "--track", "audit").exit_code == 0
    frame = leaderboard.results(db_path)
    assert set(frame.columns) >= {"detector", "source_sha256", "tier", "track", "catalog", "instance", "split",
                                  "world", "date", "metric", "family", "value", "ci_low", "ci_high"}
    [record] = ResultStore(db_path).latest_runs()
    assert len(frame) == len(record.metrics) and set(frame["instance"]) == {micro_catalog.fingerprint}
    accuracy = frame[(frame.metric == "accuracy") & frame.family.isna()]
    assert accuracy["value"].tolist() == [record.metric("accuracy")] and str(frame["date"].dtype).startswith("datetime64")
    csv = run("leaderboard", "--csv").output
    assert pd.read_csv(io.StringIO(csv))[["run_id", "metric", "value"]].equals(frame[["run_id", "metric", "value"]])


def test_a_piped_command_prints_plain_progress_to_stderr_and_keeps_stdout_clean(micro_catalog: Catalog,
                                                                               cache_dir: Path, db_path: Path) -> None:
    env = {**os.environ, "DAB_CACHE_DIR": str(cache_dir), "DAB_DB": str(db_path)}
    done = subprocess.run([sys.executable, "-m", "benchmark.cli", "run", "--catalog", "micro", "--detector", "random",
                           "--track", "audit"], capture_output=True, text=True, env=env, check=True)
    assert "[dab] random on micro/dev (audit): 3/3 organisms" in done.stderr and "[dab]" not in done.stdout
    shown = subprocess.run([sys.executable, "-m", "benchmark.cli", "leaderboard", "--json"], capture_output=True,
                           text=True, env=env, check=True)
    assert [row["detector"] for row in json.loads(shown.stdout)] == ["random"]


def test_progress_speaks_at_least_every_heartbeat_with_what_is_left() -> None:
    class Piped(io.StringIO):
        def isatty(self) -> bool:
            return False

    stream = Piped()
    with Progress("building catalog x", "units", estimate=600, stream=stream, heartbeat=0.05) as progress:
        progress.update(0, 4)
        time.sleep(0.3)  # no unit finishes: the heartbeat speaks
        progress.update(1, 4)
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 5 and lines[0] == "[dab] building catalog x: starting, 0:00 elapsed, about 10:00 left"
    assert lines[-1].startswith("[dab] building catalog x: 1/4 units, 0:00 elapsed, about 0:0")  # 3 units' pace


def test_a_build_is_estimated_from_step_times_measured_here(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_spec("micro")
    units = plan(spec, Secret(bytes(32)))
    measured, measure = [], estimate.seconds_per_step

    def measured_here(step: Callable[[], None]) -> float:
        measured.append(measure(step))
        return measured[-1]

    monkeypatch.setattr(estimate, "seconds_per_step", measured_here)
    one = estimate_seconds(spec, units, 1)
    replayed = iter(measured)  # the same step times for two workers: a loaded machine's noise is not the schedule
    monkeypatch.setattr(estimate, "seconds_per_step", lambda step: next(replayed))
    two = estimate_seconds(spec, units, 2)
    assert len(measured) == 2 and 0 < two < one  # a pair and a decoy: two workers train them side by side


def test_the_version_and_every_help_answer_without_importing_models() -> None:
    """`dab --help` answers at once: the commands import torch, transformers and datasets when they run."""
    probe = ("import sys, benchmark.cli; print(sorted({m.split('.')[0] for m in sys.modules} & "
             "{'torch', 'transformers', 'datasets', 'pandas', 'sklearn'}))")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout == "[]\n"
    assert run("--version").output == f"dab {version('dab')}\n"
    for command in ([], ["build"], ["run"], ["evaluate"], ["submit"], ["leaderboard"], ["catalog", "show"]):
        assert run(*command, "--help").exit_code == 0
