"""Shared fixtures: one tiny catalog, really trained inside the suite (6.1 minutes on one 2-core machine, most
of the suite's time)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from model_organisms.build import build_catalog
from model_organisms.catalog import Catalog, load_spec


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Catalog cache for the session; `DAB_TEST_CACHE_DIR` reuses one across runs while developing."""
    path = Path(os.environ.get("DAB_TEST_CACHE_DIR") or tmp_path_factory.mktemp("dab-cache"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAB_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="session")
def tiny_catalog(cache_dir: Path) -> Catalog:
    return build_catalog(load_spec("tiny"), workers=2, log=lambda message: None)


@pytest.fixture()
def db_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "results.sqlite"
    monkeypatch.setenv("DAB_DB", str(path))
    return path
