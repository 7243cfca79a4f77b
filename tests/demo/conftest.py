"""Fixtures for the demo: scripts/demo.py imported as a module (it is a script, not a package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

DEMO_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "demo.py"


@pytest.fixture(scope="session")
def demo_script() -> Path:
    return DEMO_SCRIPT


@pytest.fixture(scope="session")
def demo(demo_script: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("fashion_clip_demo", demo_script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
