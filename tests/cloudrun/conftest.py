"""Fixtures for the Cloud Run generator (scripts/cloudrun.py), and the chart's `helm`/`render`
fixtures so its output can be compared with what Helm renders from the same values."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# One definition of the Helm fixtures: tests/charts/conftest.py.
_charts = _load(ROOT / "tests" / "charts" / "conftest.py", "charts_conftest_for_cloudrun")
helm = _charts.helm
render = _charts.render
render_error = _charts.render_error
chart_values = _charts.chart_values


@pytest.fixture(scope="session")
def cloudrun() -> ModuleType:
    """scripts/cloudrun.py as a module."""
    return _load(ROOT / "scripts" / "cloudrun.py", "scripts_cloudrun")


@pytest.fixture(scope="session")
def gke_values() -> Path:
    return ROOT / "charts" / "fashion-clip" / "values-gke.yaml"
