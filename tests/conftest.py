"""Shared fixtures: one tiny catalog, really trained inside the suite (about 8 minutes on a 2-core machine,
most of the suite's time) and shared by the suite's pytest-xdist workers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from model_organisms.build import build_catalog
from model_organisms.catalog import Catalog, load_spec

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # the workers share the cores: with a thread per core each, they wait on each other


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Catalog cache of the session, one for all its xdist workers (their temporary directories share a parent);
    `DAB_TEST_CACHE_DIR` reuses one across runs while developing."""
    session = tmp_path_factory.getbasetemp()
    shared = session.parent if os.environ.get("PYTEST_XDIST_WORKER") else session
    path = Path(os.environ.get("DAB_TEST_CACHE_DIR") or shared / "dab-cache")
    path.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAB_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="session")
def tiny_catalog(cache_dir: Path) -> Catalog:
    return build_catalog(load_spec("tiny"), workers=2, log=lambda message: None)  # the first worker to ask builds it


@pytest.fixture()
def db_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "results.sqlite"
    monkeypatch.setenv("DAB_DB", str(path))
    return path
