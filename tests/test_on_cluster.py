"""Evaluations on a cluster: a task answers on a node as the driver would, from a node's catalog that holds the
public manifest and the organisms sent to it, checked, and nothing sealed; on a real Ray cluster (`cluster`), `dab run`
and a sandboxed submission answer as on this machine."""

from __future__ import annotations

import pickle
import shutil
import subprocess
import tempfile
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmark.api import Track
from benchmark.cli import app
from benchmark.executors import InProcess
from benchmark.harness import dev_organisms, evaluate
from benchmark.on_cluster import OnCluster, OrganismFiles, answer_on_node, node_catalog
from benchmark.registry import load_detector, resolve
from benchmark.sandbox import Sandboxed, sandbox_unavailable
from leaderboard.store import ResultStore
from model_organisms.catalog import MANIFEST, Catalog, CatalogError
from model_organisms.cluster import RayCluster

WEIGHED = textwrap.dedent('''
    from benchmark.api import AccessTier, Track

    class Weighed:
        """A user's own file: it must travel to the node with the task."""
        name = "weighed"
        tracks = frozenset({Track.AUDIT, Track.MONITOR})
        tier = AccessTier.WHITE_BOX

        def fit(self, dev):
            self.scale = 1 + len(dev)

        def audit(self, organism):
            total = sum(float(p.abs().mean()) for p in organism.model.parameters())
            return total / (total + self.scale)

        def monitor(self, organism, inputs):
            return [len(text) / self.scale for text in inputs]
''')


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This machine's temporary directory as a node's (where it keeps what tasks were sent)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize(("change", "refusal"), [
    (lambda f: replace(f, files={**f.files, "model.safetensors": b"other weights"}), "arrived changed"),
    (lambda f: replace(f, files={"../escape.json": b"{}"}, sha256={"../escape.json": ""}), "misnamed"),
    (lambda f: replace(f, organism_id="0" * 16), "not in catalog micro"),
])
def test_a_node_refuses_an_organism_that_arrives_changed_before_writing_it(change, refusal: str, node: Path,
                                                                         micro_catalog: Catalog) -> None:
    sent = change(OrganismFiles.read(micro_catalog, micro_catalog.ids("dev")[0]))
    with pytest.raises(CatalogError, match=refusal):
        node_catalog(micro_catalog.manifest, sent)
    assert not list(node.iterdir())


@pytest.mark.parametrize("sandboxed", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_a_task_answers_on_a_node_as_the_driver_does_and_the_node_holds_nothing_sealed(
        sandboxed: bool, node: Path, micro_catalog: Catalog, tmp_path_factory: pytest.TempPathFactory) -> None:
    if sandboxed and sandbox_unavailable():
        pytest.skip(f"sandbox unavailable: {sandbox_unavailable()}")
    path = tmp_path_factory.mktemp("user") / "weighed.py"
    path.write_text(WEIGHED)
    executor = (Sandboxed(resolve(str(path)), micro_catalog) if sandboxed
                else InProcess(load_detector("behavioural"), micro_catalog, query_budget=200))
    dev = micro_catalog.ids("dev")
    executor.fit(dev_organisms(micro_catalog))  # a fitted submission travels as a pickle of its own module
    for track in sorted(executor.tracks & {Track.AUDIT, Track.MONITOR}):
        inputs = ["a", "bb"] if track == Track.MONITOR else []
        here = executor.answer(dev[0], track, inputs)
        travelled = pickle.loads(pickle.dumps(executor))  # as Ray sends it, with no process of this machine
        there, refitted = answer_on_node(travelled, micro_catalog.manifest,
                                         OrganismFiles.read(micro_catalog, dev[0]), track, inputs)
        assert (there.score, there.scores, there.queries, there.error) == \
            (here.score, here.scores, here.queries, here.error) and refitted == {}
    executor.close()
    [root] = node.glob("dab-node-*")
    assert {p.name for p in root.iterdir()} == {MANIFEST, "organisms"}  # no answer key, no secret
    assert [p.name for p in (root / "organisms").iterdir()] == [dev[0]]
    assert [p.name for p in node.glob("dab-code-*/*")] == (["weighed.py"] if sandboxed else [])


@pytest.mark.slow
def test_dab_run_and_a_sandboxed_detector_on_a_cluster_answer_as_on_this_machine(
        cluster: tuple[str, subprocess.Popen], micro_catalog: Catalog, tmp_path: Path) -> None:
    address, _ = cluster
    node = Path(tempfile.gettempdir()) / f"dab-node-{micro_catalog.fingerprint}"
    shutil.rmtree(node, ignore_errors=True)
    runs = {}
    for where, flags in (("here", []), ("there", ["--executor", "ray", "--address", address])):
        result = CliRunner().invoke(app, ["run", "--catalog", "micro", "--detector", "behavioural", "--detector",
                                          "mahalanobis", "--db", str(tmp_path / f"{where}.sqlite"), *flags])
        assert result.exit_code == 0, result.output
        runs[where] = sorted((r.detector.name, r.track, [(p.organism_id, p.score, p.scores, p.queries, p.error)
                                                         for p in r.predictions])
                             for r in ResultStore(tmp_path / f"{where}.sqlite").latest_runs())
    assert runs["here"] == runs["there"] and len(runs["here"]) == 3  # behavioural audits; mahalanobis audits, monitors
    if sandbox_unavailable() is None:  # a user's own file, sandboxed on the nodes
        path = tmp_path / "weighed.py"
        path.write_text(WEIGHED)
        records = [evaluate(executor, micro_catalog, "dev", track) for track in (Track.AUDIT, Track.MONITOR)
                   for executor in (Sandboxed(resolve(str(path)), micro_catalog),
                                    OnCluster(Sandboxed(resolve(str(path)), micro_catalog), RayCluster(address)))]
        here, there = ([(p.score, p.scores, p.error) for r in records[i::2] for p in r.predictions] for i in (0, 1))
        assert here == there and all(error is None for *_, error in there)
    assert {p.name for p in node.iterdir()} == {MANIFEST, "organisms"}  # no answer key, no secret
