"""Fixtures for the load-test tooling: the runner module (without Locust: it monkey-patches gevent into
whatever imports it, which breaks ssl in pytest) and, for the slow tests, the real API on loopback."""

from __future__ import annotations

import importlib.util
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

TESTS_DIR = Path(__file__).resolve().parents[1]
LOADTEST_DIR = TESTS_DIR.parent / "loadtest"


def _load(name: str, path: Path, search_path: Path | None = None) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    if search_path is not None:
        sys.path.insert(0, str(search_path))
    try:
        spec.loader.exec_module(module)
    finally:
        if search_path is not None:
            sys.path.remove(str(search_path))
    return module


# The API's own test fixtures (the sample-catalog index built with the tiny model, and starting
# `python -m recommender`), reused rather than copied. They live in a sibling conftest, which pytest
# does not share across folders; the module is loaded by path because `recommender` is the service.
_api_fixtures = _load("recommender_test_fixtures", TESTS_DIR / "recommender" / "conftest.py")
catalog = _api_fixtures.catalog
index_bundle = _api_fixtures.index_bundle


@pytest.fixture(scope="session")
def run_module() -> ModuleType:
    """loadtest/run.py imported as a module; it finds plots.py beside it, as when run as a script."""
    module = _load("loadtest_run", LOADTEST_DIR / "run.py", search_path=LOADTEST_DIR)
    assert "locust" not in sys.modules, "run.py must not import Locust into the caller's process"
    return module


@pytest.fixture(scope="session")
def run_py() -> Path:
    return LOADTEST_DIR / "run.py"


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory, index_bundle: Path, tiny_model: Path) -> Iterator[str]:
    """The real API (uvicorn, `local` embedder, tiny model) over the sample index, on loopback."""
    api = _api_fixtures.start_api(
        tmp_path_factory.mktemp("api"), _api_fixtures.api_env(index_bundle, tiny_model)
    )
    yield api.url
    api.server.stop(signal.SIGTERM)
