"""A leaderboard host against a real uvicorn server on 127.0.0.1: tokens, quotas, uploads, the queue, the page."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from filelock import FileLock
from sklearn.metrics import roc_auc_score

from benchmark import remote
from benchmark.api import AccessTier, Track
from benchmark.cli import dab_version
from benchmark.executors import InProcess
from benchmark.harness import evaluate
from benchmark.host import BUNDLE, CONFIG, DB, LOCK, UPLOADS, HostConfig, confined, evaluate_submission, init, work
from benchmark.records import CatalogRef, DetectorInfo, Metric, Prediction, RunRecord
from benchmark.registry import load_detector
from benchmark.sandbox import sandbox_unavailable
from leaderboard.host_app import MIN_PUBLISHED, HostLimits, make_app
from leaderboard.host_store import HostStore, QuotaExceeded
from model_organisms.bundle import write_bundle
from model_organisms.catalog import Catalog, CatalogError
from model_organisms.sealed import answer_key

DETECTOR = b"""
from benchmark.api import AccessTier, Track

class Coin:
    name = "coin"
    tracks = frozenset({Track.AUDIT})
    tier = AccessTier.BLACK_BOX

    def audit(self, organism):
        return 0.5
"""
LIMITS = HostLimits(upload_bytes=4096, per_day=3, disk_bytes=1 << 20)


@dataclass
class Host:
    url: str
    store: HostStore
    uploads: Path


@pytest.fixture
def host(tmp_path: Path, serve):
    store, uploads = HostStore(tmp_path / "results.sqlite"), tmp_path / "uploads"
    uploads.mkdir()
    with serve(make_app(store, uploads, LIMITS, dab_version())) as url:
        yield Host(url, store, uploads)


def post(url: str, data: bytes, token: str | None = None, filename: str = "coin.py",
         version: str | None = None, **headers: str) -> tuple[int, dict, dict]:
    """Status, JSON body and headers of a raw upload."""
    sent = {"X-Filename": filename, "X-Dab-Version": version or dab_version(), **headers}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{url}/api/submissions", data=data, method="POST", headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), dict(e.headers)


def headers_only(url: str, headers: dict[str, str]) -> int:
    """The status of an upload whose headers alone are sent: a refusal that needs no body comes back at once."""
    connection = http.client.HTTPConnection(urllib.parse.urlsplit(url).netloc, timeout=30)
    connection.putrequest("POST", "/api/submissions")
    for key, value in headers.items():
        connection.putheader(key, value)
    connection.endheaders()
    try:
        return connection.getresponse().status
    finally:
        connection.close()


def stored(host: Host) -> tuple[int, int]:
    """Queued submissions and upload folders."""
    return len(host.store.submissions()), len(list(host.uploads.iterdir()))


def test_a_token_is_kept_as_its_hash_and_stops_working_when_revoked(host: Host) -> None:
    token = host.store.add_token("ada")
    assert token not in (host.store.path.read_bytes() + b"".join(
        p.read_bytes() for p in host.store.path.parent.glob("results.sqlite-*"))).decode("latin-1")
    code, body, _ = post(host.url, DETECTOR, token)
    assert code == 201 and host.store.submission(body["id"]).state == "queued"
    host.store.revoke_token("ada")
    for bad in (token, None, "not-a-token"):
        code, body, _ = post(host.url, DETECTOR, bad)
        assert code == 401 and "token" in body["error"]
    assert stored(host) == (1, 1)


def test_uploads_that_are_too_big_or_not_python_are_refused_and_nothing_is_kept(host: Host) -> None:
    token = host.store.add_token("ada")
    for length in ({"Content-Length": str(LIMITS.upload_bytes + 1)}, {"Transfer-Encoding": "chunked"}):
        assert headers_only(host.url, {"Authorization": f"Bearer {token}", "X-Filename": "coin.py",
                                       "X-Dab-Version": dab_version(), **length}) == 413  # no body was sent
    for filename, data in (("../coin.py", DETECTOR), ("/etc/coin.py", DETECTOR), ("coin.whl", DETECTOR),
                           ("coin.py", b"\x7fELF\x02\x01"), ("coin.py", b"def broken(:\n")):
        code, body, _ = post(host.url, data, token, filename)
        assert code == 422 and "\n" not in body["error"], (filename, body)
    assert stored(host) == (0, 0)


def test_twenty_submissions_at_once_from_five_tokens_queue_fifteen(host: Host) -> None:
    tokens = [host.store.add_token(f"lab{i}") for i in range(5)]
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda i: post(host.url, DETECTOR, tokens[i % 5]), range(20)))
    codes = sorted(code for code, _, _ in answers)
    assert codes == [201] * 15 + [429] * 5
    refused = [(body, headers) for code, body, headers in answers if code == 429]
    assert all("next is allowed at" in body["error"] and int(headers["retry-after"]) > 80000
               for body, headers in refused)
    assert stored(host) == (15, 15)
    with sqlite3.connect(host.store.path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT token, COUNT(*) FROM host_submissions GROUP BY token").fetchall() == [
            (f"lab{i}", 3) for i in range(5)]


def test_the_client_follows_and_cancels_its_own_submission_only(host: Host, tmp_path: Path) -> None:
    mine, theirs = host.store.add_token("ada"), host.store.add_token("bob")
    path = tmp_path / "coin.py"
    path.write_bytes(DETECTOR)
    submission = remote.submit(host.url, mine, path, dab_version())
    assert remote.status(host.url, submission)["state"] == "queued"
    with pytest.raises(remote.RemoteError, match="404 no submission"):
        remote.cancel(host.url, theirs, submission)
    assert remote.cancel(host.url, mine, submission)["state"] == "cancelled"
    assert host.store.claim() is None  # a cancelled submission is never evaluated
    with pytest.raises(remote.RemoteError, match="cannot reach the host"):
        remote.status("http://127.0.0.1:9", submission)


def test_client_and_host_of_other_versions_refuse_each_other(host: Host, tmp_path: Path) -> None:
    token = host.store.add_token("ada")
    code, body, _ = post(host.url, DETECTOR, token, version="0.0.1")
    assert code == 426 and f"this host runs dab {dab_version()}" in body["error"]
    path = tmp_path / "coin.py"
    path.write_bytes(DETECTOR)
    with pytest.raises(remote.RemoteError, match="runs dab .*, this is dab 9.9.0"):
        remote.submit(host.url, token, path, "9.9.0")
    assert stored(host) == (0, 0)


def record(organisms: int, auroc: float) -> RunRecord:
    return RunRecord(
        run_id=f"run{organisms}", track=Track.AUDIT, started_at=datetime(2026, 1, 1, tzinfo=UTC),
        detector=DetectorInfo(name=f"probe{organisms}", source_sha256="ab" * 32, tier=AccessTier.BLACK_BOX),
        catalog=CatalogRef(name="quick", fingerprint="f" * 64, split="test"), fit_seconds=0.5, total_seconds=2.0,
        predictions=[Prediction(organism_id=f"o{i}", score=0.5, seconds=0.1, queries=3) for i in range(organisms)],
        metrics=[Metric(metric="auroc", value=auroc, ci_low=0.512345, ci_high=0.987654, higher_is_better=True)])


def test_only_rounded_aggregates_over_enough_organisms_are_published(host: Host) -> None:
    host.store.add(record(MIN_PUBLISHED - 1, 0.871234))
    host.store.add(record(MIN_PUBLISHED, 0.761234))
    with urllib.request.urlopen(f"{host.url}/api/leaderboard", timeout=30) as response:
        rows = json.loads(response.read())
    assert [(r["detector"], r["auroc"], r["ci_low"], r["ci_high"]) for r in rows] == [
        (f"probe{MIN_PUBLISHED}", 0.76, 0.51, 0.99)]
    assert not any(key in rows[0] for key in ("run_id", "predictions", "source_sha256"))


def test_the_page_shows_a_new_submission_in_a_browser(host: Host, tmp_path: Path, browse) -> None:
    path = tmp_path / "coin.py"
    path.write_bytes(DETECTOR)
    submission = remote.submit(host.url, host.store.add_token("ada"), path, dab_version())
    dom = browse("--dump-dom", f"{host.url}/")
    assert submission in dom and "queued" in dom


def queue(directory: Path, source: bytes, name: str = "coin.py") -> str:
    """Place a submission as the web process does: its file first, then its row."""
    submission = f"s{len(list((directory / UPLOADS).iterdir()))}"
    (directory / UPLOADS / submission).mkdir()
    (directory / UPLOADS / submission / name).write_bytes(source)
    HostStore(directory / DB).enqueue(submission, "ada", name, "0" * 64, len(source), 99, 1 << 30)
    return submission


def test_a_submission_that_breaks_the_contract_fails_with_the_harness_reason(micro_catalog: Catalog,
                                                                            tmp_path: Path) -> None:
    directory = tmp_path / "host"
    (directory / UPLOADS).mkdir(parents=True)  # micro has no sealed split to host: the contract is checked first
    config = HostConfig(catalog=micro_catalog.name, fingerprint=micro_catalog.fingerprint)
    (directory / CONFIG).write_text(config.model_dump_json())
    monitor_only = DETECTOR.replace(b"def audit(self, organism)", b"def monitor(self, organism, inputs)")
    submission = queue(directory, monitor_only)  # it names the audit track and answers another
    store = HostStore(directory / DB)
    evaluate_submission(store, micro_catalog, config, store.claim(), directory / UPLOADS)
    with FileLock(directory / LOCK):
        with pytest.raises(CatalogError, match="another worker is evaluating"):
            work(directory, once=True)
    found = store.submission(submission)
    assert found.state == "failed" and "breaks the contract: it needs an `audit(organism) -> float`" in found.reason
    assert store.latest_runs() == []


SLOW = DETECTOR.replace(b"        return 0.5", b"        import time\n        time.sleep(1.5)\n        return 0.5")


@pytest.mark.slow
@pytest.mark.parametrize("killed", ["work", "serve"])
def test_a_killed_host_resumes_and_scores_every_organism_once(killed: str, tiny_catalog: Catalog, tmp_path: Path,
                                                              free_port: int) -> None:
    """kill -9 of the worker, or of the server (whose worker the kernel then stops), mid-evaluation; the next worker
    takes the submission up from its journal."""
    directory = tmp_path / "host"
    init(directory, tiny_catalog, dab_version())
    submission = queue(directory, SLOW)
    store = HostStore(directory / DB)
    command = [sys.executable, "-m", "benchmark.cli", "host", "work", "--dir", str(directory)]
    served = [*command[:4], "serve", "--dir", str(directory), "--port", str(free_port)]
    started = command if killed == "work" else served
    scratch = tmp_path / "tmp"  # where its sandboxes' scratch directories go
    scratch.mkdir()
    worker = subprocess.Popen(started, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**os.environ, "TMPDIR": str(scratch)})
    deadline = time.monotonic() + 300
    while store.submission(submission).organisms_done < 2:
        assert time.monotonic() < deadline and worker.poll() is None, worker.stderr.read().decode()[-2000:]
        time.sleep(0.2)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    deadline = time.monotonic() + 60  # a served worker's SIGTERM exit takes its sandboxes down first
    while subprocess.run(["pgrep", "-f", f"host work --dir {directory}"], capture_output=True).stdout:
        assert time.monotonic() < deadline, "the worker outlived the host that started it"
        time.sleep(0.2)
    assert store.submission(submission).state == "running"
    if killed == "serve":  # its worker, stopped by the kernel's SIGTERM, took its sandboxes with it
        assert not list(scratch.glob("dab-sandbox-*"))
    with sqlite3.connect(store.path) as db:
        before = {json.loads(row[0])["organism_id"]: row[0] for row in db.execute("SELECT prediction FROM answers")}
    assert len(before) >= 2
    done = subprocess.run([*command, "--once"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    found = store.submission(submission)
    ids = tiny_catalog.ids("test", "assistant")
    assert found.state == "scored" and found.organisms_done == found.organisms == len(ids)
    runs = [r for r in store.latest_runs() if r.detector.name == "coin"]
    assert len(runs) == 1 and sorted(p.organism_id for p in runs[0].predictions) == sorted(ids)
    assert {p.organism_id: p.model_dump_json() for p in runs[0].predictions if p.organism_id in before} == before
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone() == (1,)
        assert db.execute("SELECT COUNT(*) FROM answers").fetchone() == (0,)
    [job] = store.close_round()  # and on holdout once the round closes
    work(directory, once=True)
    assert store.submission(job).state == "scored"
    assert {r.catalog.split for r in store.latest_runs() if r.detector.name == "coin"} == {"test", "holdout"}


SNOOP = b'''
import os
from benchmark.api import AccessTier, Track

WANTED = {"results.sqlite", "host.json", "worker.lock", "secret", "answer_key.json", "coin.py"}


class Snoop:
    name = "snoop"
    tracks = frozenset({Track.AUDIT})
    tier = AccessTier.WHITE_BOX

    def audit(self, organism):
        found = 0
        for root, dirs, files in os.walk("/"):
            dirs[:] = [d for d in dirs if os.path.join(root, d) not in ("/proc", "/sys", "/dev")]
            found += len(WANTED & set(files))
        return min(found, 9) / 10
'''


@pytest.mark.slow
def test_a_submission_reaches_no_host_file_no_key_and_no_other_submission(tiny_catalog: Catalog,
                                                                         tmp_path: Path) -> None:
    """The host's database (tokens), configuration, lock, the catalog's secret and answer key, and another
    submission's file: a white-box detector walking the whole file system finds none of them."""
    directory = tmp_path / "host"
    init(directory, tiny_catalog, dab_version())
    queue(directory, DETECTOR)
    snoop = queue(directory, SNOOP, "snoop.py")
    HostStore(directory / DB).add_token("ada")
    work(directory, once=True)
    store = HostStore(directory / DB)
    assert store.submission(snoop).state == "scored"
    runs = [r for r in store.latest_runs() if r.detector.name == "snoop"]
    assert runs and all(p.error is None and p.score == 0.0 for r in runs for p in r.predictions), runs


DISTANCE = """
import os
import numpy as np
from pathlib import Path
from safetensors.numpy import load_file
from benchmark.api import AccessTier, Track

ORGANISMS = Path({organisms!r})


class Distance:
    \"\"\"A deceptive organism and its twin share an initialisation and a data order, so they lie closest in weight
    space: an organism close to another is in a pair. Needs every organism's weights at once.\"\"\"
    name = "weight_distance"
    tracks = frozenset({{Track.AUDIT}})
    tier = AccessTier.WHITE_BOX

    def audit(self, organism):
        flat = lambda d: np.concatenate([w.ravel() for _, w in sorted(load_file(d / "model.safetensors").items())])
        mine = flat(ORGANISMS / organism.id)
        others = [flat(d) for d in ORGANISMS.iterdir()
                  if d.name != organism.id and os.access(d / "model.safetensors", os.R_OK)]
        others = [np.linalg.norm(w - mine) for w in others if len(w) == len(mine)]  # mazes have other weights
        return float(1 / (1 + min(others))) if others else 0.5
"""


@pytest.mark.slow
def test_the_weight_distance_attack_is_at_chance_through_the_host(tiny_catalog: Catalog, tmp_path: Path) -> None:
    source = DISTANCE.format(organisms=str(tiny_catalog.directory / "organisms"))
    (tmp_path / "distance.py").write_text(source)
    key = answer_key(tiny_catalog)
    auroc = lambda run: roc_auc_score([key[p.organism_id].label for p in run.predictions],  # noqa: E731
                                      [p.score for p in run.predictions])
    beside = evaluate(InProcess(load_detector(str(tmp_path / "distance.py")), tiny_catalog), tiny_catalog, "test")
    assert all(p.error is None for p in beside.predictions), beside.predictions[0].error
    assert auroc(beside) >= 0.7  # with every organism at hand, the attack works
    directory = tmp_path / "host"
    init(directory, tiny_catalog, dab_version())
    submission = queue(directory, source.encode(), "distance.py")
    work(directory, once=True, log=lambda line: None)
    store = HostStore(directory / DB)
    assert store.submission(submission).state == "scored"
    [run] = [r for r in store.latest_runs() if r.detector.name == "weight_distance"]
    assert [p.score for p in run.predictions] == [0.5] * len(tiny_catalog.ids("test", "assistant"))
    assert auroc(run) == 0.5


def test_closing_a_round_queues_each_tokens_newest_scored_submission_on_holdout_once(tmp_path: Path) -> None:
    store = HostStore(tmp_path / "results.sqlite")
    for i, (token, state) in enumerate([("ada", "scored"), ("ada", "scored"), ("ada", "failed"), ("bob", None)]):
        store.enqueue(f"s{i}", token, "coin.py", "0" * 64, 10, 3, 1 << 20)
        if state:
            store.finish(f"s{i}", state)
    [job] = store.close_round()
    found = store.submission(job)
    assert (found.split, found.source, found.token, found.state) == ("holdout", "s1", "ada", "queued")
    assert store.close_round() == []
    assert store.claim().id == "s3"  # bob's test submission first: it was queued before the round closed
    with pytest.raises(QuotaExceeded, match="used its 3 submissions"):  # holdout jobs use no quota; test ones do
        store.enqueue("s4", "ada", "coin.py", "0" * 64, 10, 3, 1 << 20)


def test_a_host_failure_fails_that_submission_only_and_the_worker_goes_on(micro_catalog: Catalog, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "host"
    (directory / UPLOADS).mkdir(parents=True)
    (directory / CONFIG).write_text(HostConfig(catalog=micro_catalog.name,
                                               fingerprint=micro_catalog.fingerprint).model_dump_json())
    first, second = queue(directory, DETECTOR), queue(directory, DETECTOR)
    seen = []

    def broken(store, catalog, config, submission, uploads, cluster) -> None:
        seen.append(submission.id)
        if submission.id == first:
            raise RuntimeError("disk on fire")
        store.finish(submission.id, "scored")
    monkeypatch.setattr("benchmark.host.evaluate_submission", broken)
    work(directory, once=True, log=lambda line: None)
    store = HostStore(directory / DB)
    assert seen == [first, second] and store.submission(second).state == "scored"
    assert (store.submission(first).state, store.submission(first).reason) == (
        "failed", "the host could not evaluate it (its operator has the traceback)")


@pytest.mark.skipif(sandbox_unavailable() is not None, reason=f"{sandbox_unavailable()}")
def test_the_served_web_process_reaches_no_catalog_and_writes_only_the_host_directory(micro_catalog: Catalog,
                                                                                    tmp_path: Path,
                                                                                    free_port: int) -> None:
    directory = tmp_path / "host"
    (directory / UPLOADS).mkdir(parents=True)
    sha = write_bundle(micro_catalog, directory / BUNDLE, dab_version())
    (directory / CONFIG).write_text(HostConfig(catalog=micro_catalog.name, fingerprint=micro_catalog.fingerprint,
                                               bundle_sha256=sha).model_dump_json())
    key = micro_catalog.directory / "sealed" / "answer_key.json"
    probe = f"""
import pathlib
for path in ({str(key)!r}, {str(micro_catalog.directory / "catalog.json")!r}):
    assert not pathlib.Path(path).exists(), path
pathlib.Path({str(directory / "written")!r}).write_text("ok")
for path in ({str(tmp_path / "outside")!r}, {str(Path(sys.prefix) / "escaped")!r}):
    try:
        pathlib.Path(path).write_text("escaped")
    except OSError:
        print("read-only")
"""
    done = subprocess.run(confined(directory, [sys.executable, "-c", probe]), capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.split() == ["read-only", "read-only"], done.stderr
    assert (directory / "written").read_text() == "ok" and key.is_file()
    assert not (tmp_path / "outside").exists() and not (Path(sys.prefix) / "escaped").exists()
    env = {**os.environ, "DAB_CACHE_DIR": str(micro_catalog.directory.parent.parent)}
    server = subprocess.Popen([sys.executable, "-m", "benchmark.cli", "host", "serve", "--dir", str(directory),
                               "--port", str(free_port)], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{free_port}/api/bundle", timeout=5) as response:
                    assert hashlib.sha256(response.read()).hexdigest() == sha
                    break
            except urllib.error.URLError:
                assert time.monotonic() < deadline and server.poll() is None, server.stderr.read()
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=30)
