"""Fixtures, one per seam, shared by every test folder: the installed tiny model and its archive,
the sample catalog, the tiny model in process, and an index bundle built from them. Fixtures of one
component (its servers) live in the conftest.py of the test folder that mirrors it."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fashion_clip.catalog.sample import generate_sample_catalog
from fashion_clip.clients import EmbedderClient, EmbedderSettings, make_client
from fashion_clip.index import build_annoy_index

ROOT = Path(__file__).resolve().parents[1]
MODEL_SERVER_DIR = ROOT / "model-server"
SAMPLE_COUNT = 360
SAMPLE_SEED = 0


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


@pytest.fixture(scope="session")
def sample_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated sample catalog (360 items, 9 categories): a folder with catalog.csv and images/."""
    out = tmp_path_factory.mktemp("sample") / "catalog"
    generate_sample_catalog(out, count=SAMPLE_COUNT, seed=SAMPLE_SEED)
    return out


@pytest.fixture(scope="session")
def tiny_client(tiny_model: Path) -> Iterator[EmbedderClient]:
    """The tiny CLIP in process, fp32 so vectors compare exactly across calls."""
    client = make_client(EmbedderSettings(backend="local", model_dir=tiny_model, precision="fp32"))
    yield client
    asyncio.run(client.aclose())


@pytest.fixture(scope="session")
def tiny_index(
    sample_catalog: Path, tiny_client: EmbedderClient, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """An index bundle of the sample catalog built with the tiny model (read-only: copy it to change it)."""
    dest = tmp_path_factory.mktemp("tiny-index") / "index"
    build_annoy_index(sample_catalog, dest, tiny_client, trees=50, batch_size=64, progress=False)
    return dest
