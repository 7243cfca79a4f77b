"""Fixtures for the load-test tooling: the runner module (without Locust: it monkey-patches gevent into
whatever imports it, which breaks ssl in pytest) and, for the slow tests, the real API on loopback
over the shared `tiny_index` (tests/conftest.py)."""

from __future__ import annotations

import importlib.util
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from procs import local_api_env, start_api

LOADTEST_DIR = Path(__file__).resolve().parents[2] / "loadtest"


@pytest.fixture(scope="session")
def run_module() -> ModuleType:
    """loadtest/run.py imported as a module; it finds plots.py beside it, as when run as a script."""
    spec = importlib.util.spec_from_file_location("loadtest_run", LOADTEST_DIR / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    sys.path.insert(0, str(LOADTEST_DIR))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(LOADTEST_DIR))
    assert "locust" not in sys.modules, "run.py must not import Locust into the caller's process"
    return module


@pytest.fixture(scope="session")
def run_py() -> Path:
    return LOADTEST_DIR / "run.py"


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory, tiny_index: Path, tiny_model: Path) -> Iterator[str]:
    """The real API (`python -m recommender` under uvicorn, `local` embedder, tiny model) over the
    shared sample index, on a free loopback port."""
    env = local_api_env(
        tiny_index,
        tiny_model,
        RECOMMENDER_EMBEDDER__THREADS="1",  # the machine's cores are shared with Locust
    )
    server, url = start_api(env, tmp_path_factory.mktemp("api") / "api.log", timeout=120)
    yield url
    server.stop(signal.SIGTERM)
