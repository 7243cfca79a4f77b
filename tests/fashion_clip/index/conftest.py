"""Fixtures for the index seam: the sample catalog, the in-process tiny embedder, a built bundle.

`sample_catalog` and `tiny_index` are what the API and UI tests need too (to move to tests/conftest.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from fashion_clip.catalog.sample import generate_sample_catalog
from fashion_clip.clients import EmbedderClient, EmbedderSettings, make_client
from fashion_clip.index import build_annoy_index

SAMPLE_COUNT = 360
SAMPLE_SEED = 0


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
