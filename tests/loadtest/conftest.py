"""Fixtures for the load-test tooling: the runner module (without Locust: it monkey-patches gevent into
whatever imports it, which breaks ssl in pytest) and, for the slow tests, a real API on loopback."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

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
