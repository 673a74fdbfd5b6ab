"""The command line: bad input gives one clear line and exit code 2, and loses nothing stored."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.handles import TRUSTED_INPUTS
from leaderboard.store import ResultStore
from model_organisms.catalog import Catalog

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_run_stores_every_track_a_detector_answers_and_skips_what_already_ran(tiny_catalog: Catalog,
                                                                               db_path: Path) -> None:
    first = run("run", "--catalog", "tiny", "--detector", "random", "--detector", "behavioural")
    assert first.exit_code == 0, first.output
    rows = json.loads(run("leaderboard", "--json").output)
    splits = ("dev", "holdout", "test")
    assert sorted((r["detector"], r["track"], r["split"], r["world"]) for r in rows) == sorted(
        [("behavioural", t, s, "assistant") for t in ("audit", "monitor") for s in splits]
        + [("random", t, s, "assistant") for t in ("audit", "elicit", "monitor") for s in splits]
        + [("behavioural", t, "dev", "maze") for t in ("audit", "monitor")]  # one run per world
        + [("random", t, "dev", "maze") for t in ("audit", "elicit", "monitor")])
    assert all(r["fingerprint"] == tiny_catalog.fingerprint[:12] for r in rows)
    row = lambda d, t, s="test", w="assistant": next(  # noqa: E731
        r for r in rows if (r["detector"], r["track"], r["split"], r["world"]) == (d, t, s, w))
    assert row("behavioural", "audit")["auroc"] == 1.0 and row("behavioural", "monitor")["auroc"] == 1.0
    assert row("behavioural", "audit")["query_budget"] == 2000
    assert row("behavioural", "audit", "dev", "maze")["auroc"] == 1.0  # the proxy never reaches a moved exit
    for title in ("audit track", "monitor track", "elicit track"):
        assert title in first.output
    again = run("run", "--catalog", "tiny", "--detector", "random", "--track", "audit")
    assert again.exit_code == 0 and again.output.count("skipped") == 4
    other_budget = run("run", "--catalog", "tiny", "--detector", "random", "--track", "audit", "--split", "dev",
                       "--query-budget", "50")
    assert other_budget.exit_code == 0 and "skipped" not in other_budget.output


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


def test_an_unknown_detector_gets_suggestions_and_changes_nothing(tiny_catalog: Catalog, db_path: Path) -> None:
    assert run("run", "--catalog", "tiny", "--detector", "random", "--split", "test").exit_code == 0
    before = db_path.read_bytes()
    result = runner.invoke(app, ["run", "--catalog", "tiny", "--detector", "behavioral"])
    assert result.exit_code == 2
    assert "unknown detector 'behavioral'. Did you mean: behavioural?" in result.output
    assert db_path.read_bytes() == before


def test_a_missing_organism_file_stops_the_run_and_loses_nothing(tiny_catalog: Catalog, tmp_path: Path,
                                                                 db_path: Path, monkeypatch) -> None:
    assert run("run", "--catalog", "tiny", "--detector", "random", "--split", "dev").exit_code == 0
    stored = ResultStore(db_path).latest_runs()
    broken = tmp_path / "cache"
    shutil.copytree(tiny_catalog.directory.parent.parent, broken)
    victim = Catalog(broken / "catalogs" / tiny_catalog.directory.name).organism_dir(tiny_catalog.ids("test")[1])
    (victim / "model.safetensors").unlink()
    monkeypatch.setenv("DAB_CACHE_DIR", str(broken))
    result = runner.invoke(app, ["run", "--catalog", "tiny", "--detector", "random", "--split", "test"])
    assert result.exit_code == 2
    assert "missing" in result.output and str(victim / "model.safetensors") in result.output.replace("\n", "")
    assert ResultStore(db_path).latest_runs() == stored


def test_a_catalog_that_fails_the_shortcut_gate_is_refused(tiny_catalog: Catalog, tmp_path: Path,
                                                            db_path: Path, monkeypatch) -> None:
    copy = tmp_path / "cache"
    shutil.copytree(tiny_catalog.directory.parent.parent, copy)
    gate = copy / "catalogs" / tiny_catalog.directory.name / "shortcut_gate.json"
    gate.write_text(json.dumps({"passed": False, "threshold": 0.6, "trusted_inputs": TRUSTED_INPUTS, "untested": {},
                                "rows": []}))
    monkeypatch.setenv("DAB_CACHE_DIR", str(copy))
    result = runner.invoke(app, ["run", "--catalog", "tiny", "--detector", "random"])
    assert result.exit_code == 2
    assert "fails the shortcut gate" in result.output and "audit-shortcuts tiny" in result.output
    assert ResultStore(db_path).latest_runs() == []


def test_commands_and_sandbox_workers_start_without_transformers_model_code() -> None:
    """Every `dab` command, and every sandbox worker (started again after each organism that broke a limit),
    pays for its imports; transformers' model code is seconds of them and only training or loading a model
    needs it."""
    probe = ("import sys, benchmark.cli, benchmark.sandbox_worker; "
             "print(sorted(m for m in sys.modules if m.startswith(('transformers.modeling', 'transformers.models'))))")
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert imported.strip() == "[]"
