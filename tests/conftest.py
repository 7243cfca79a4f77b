"""Fixtures, one per seam: the installed tiny model and its archive. Component fixtures (servers,
catalogs, indexes) live in the conftest.py of the test folder that mirrors the component."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL_SERVER_DIR = ROOT / "model-server"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny seeded CLIP installed by the real installer, with its clip.mar beside it.

    Returns the model directory; the archive is `model_dir.parent / "model-store" / "clip.mar"`.
    """
    import model_installer

    base = tmp_path_factory.mktemp("tiny-model")
    return model_installer.install("tiny", model_dir=base / "model", model_store=base / "model-store")


@pytest.fixture(scope="session")
def tiny_mar(tiny_model: Path) -> Path:
    return tiny_model.parent / "model-store" / "clip.mar"


@pytest.fixture(scope="session")
def java() -> str:
    path = shutil.which("java")
    if path is None:
        pytest.fail("java is not installed: TorchServe needs Java 17 (run `make system-deps`)")
    return path


@pytest.fixture(scope="session")
def venv_bin() -> Path:
    """The folder of the interpreter running the tests: torchserve, uvicorn, streamlit live there."""
    return Path(sys.executable).parent
