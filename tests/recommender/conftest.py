"""Fixtures for the API: a small sample-catalog index built with the tiny model, variants of it, and a
factory that starts the real API (`python -m recommender` under uvicorn) on a loopback port."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import os
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from annoy import AnnoyIndex
from model_server.servers import TorchServe
from procs import Server, free_port, local_api_env
from procs import start_api as start_api_process

from fashion_clip.catalog.sample import generate_sample_catalog
from fashion_clip.clients import EmbedderSettings, make_client
from fashion_clip.index.build import build_annoy_index

# Every category, few items each: 9 categories x 4 colours x 2 patterns = 72 items, 8 per category.
COLORS = ("red", "navy", "black", "white")
PATTERNS = ("solid", "stripes")
PER_CATEGORY = len(COLORS) * len(PATTERNS)
ADMIN_TOKEN = "test-admin-token-0123456789"
UPLOAD_LIMIT = 300_000


@pytest.fixture(scope="session")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seeded sample catalog, trimmed to a subset of colours and patterns to keep builds quick."""
    out = tmp_path_factory.mktemp("catalog") / "catalog"
    metadata = generate_sample_catalog(out, count=360, seed=0)
    with open(metadata, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames
        rows = [row for row in reader if row["color"] in COLORS and row["pattern"] in PATTERNS]
    with open(metadata, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return out


@pytest.fixture(scope="session")
def index_bundle(catalog: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The catalog indexed with the tiny model (fp32) by the real builder. Read-only: copy to change."""
    dest = tmp_path_factory.mktemp("index") / "index"
    client = make_client(EmbedderSettings(backend="local", model_dir=tiny_model, precision="fp32"))
    try:
        build_annoy_index(catalog, dest, client, trees=20, progress=False)
    finally:
        asyncio.run(client.aclose())
    return dest


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_bundle(
    dest: Path, items: list[dict], vectors: np.ndarray, model: dict, images_from: Path | None = None
) -> Path:
    """A bundle written with Annoy directly, following docs/contracts.md: for shapes the builder
    cannot make from the tiny model (another dimension, a subset of an existing index)."""
    dest.mkdir(parents=True)
    dim = vectors.shape[1]
    index = AnnoyIndex(dim, "angular")
    for position, vector in enumerate(vectors):
        index.add_item(position, vector.tolist())
    index.build(10)
    index.save(str(dest / "index.ann"))
    index.unload()
    (dest / "items.jsonl").write_text("".join(json.dumps(item) + "\n" for item in items))
    if images_from is not None:
        shutil.copytree(images_from / "images", dest / "images")
    manifest = {
        "format_version": 1,
        "model": {**model, "embed_dim": dim},
        "dim": dim,
        "metric": "angular",
        "trees": 10,
        "item_count": len(items),
        "built_at": "2026-01-01T00:00:00+00:00",
        "build_seconds": 0.0,
        "files": {name: sha256(dest / name) for name in ("index.ann", "items.jsonl")},
        "skipped": [],
    }
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return dest


def read_bundle(path: Path) -> tuple[list[dict], np.ndarray, dict]:
    manifest = json.loads((path / "manifest.json").read_text())
    items = [json.loads(line) for line in (path / "items.jsonl").read_text().splitlines()]
    index = AnnoyIndex(manifest["dim"], "angular")
    index.load(str(path / "index.ann"))
    vectors = np.array([index.get_item_vector(i) for i in range(len(items))], dtype=np.float32)
    index.unload()
    return items, vectors, manifest


@pytest.fixture(scope="session")
def half_bundle(index_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model, every other item: a different, valid bundle to swap in."""
    items, vectors, manifest = read_bundle(index_bundle)
    model = {k: v for k, v in manifest["model"].items() if k != "embed_dim"}
    return write_bundle(
        tmp_path_factory.mktemp("half") / "index", items[::2], vectors[::2], model, images_from=index_bundle
    )


IMAGE_URL = "https://images.example.com/catalog/t-shirt-red-solid.jpg"


@pytest.fixture(scope="session")
def url_image_bundle(index_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same index, but the first item's image is a URL (as a catalog may give), not a file."""
    items, vectors, manifest = read_bundle(index_bundle)
    items[0] = {**items[0], "image": IMAGE_URL}
    model = {k: v for k, v in manifest["model"].items() if k != "embed_dim"}
    return write_bundle(
        tmp_path_factory.mktemp("url-image") / "index", items, vectors, model, images_from=index_bundle
    )


@pytest.fixture(scope="session")
def other_model_bundle(index_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same vectors, but the manifest says another model made them."""
    items, vectors, manifest = read_bundle(index_bundle)
    model = {**manifest["model"], "model_id": "other-clip@0123456789ab", "model_name": "other-clip"}
    model.pop("embed_dim")
    return write_bundle(tmp_path_factory.mktemp("other-model") / "index", items, vectors, model)


@pytest.fixture(scope="session")
def other_dim_bundle(index_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """32-dimensional vectors under the tiny model's own id: the dimension alone disagrees."""
    items, _, manifest = read_bundle(index_bundle)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(items), 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    model = {k: v for k, v in manifest["model"].items() if k != "embed_dim"}
    return write_bundle(tmp_path_factory.mktemp("other-dim") / "index", items, vectors, model)


@dataclass
class Api:
    server: Server
    url: str

    def client(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def signal(self, sig: int) -> None:
        os.kill(self.server.proc.pid, sig)

    def stop(self) -> None:
        self.server.stop()


def api_env(index_dir: Path, model_dir: Path | None = None, **overrides: str) -> dict[str, str]:
    return local_api_env(
        index_dir,
        model_dir,
        RECOMMENDER_MAX_UPLOAD_BYTES=str(UPLOAD_LIMIT),
        RECOMMENDER_EMBEDDER__THREADS="1",  # the test machine's cores are shared
        **overrides,
    )


def start_api(log_dir: Path, env: dict[str, str], ready: bool = True) -> Api:
    """`python -m recommender` on a free loopback port; waits for /readyz 200 (or /healthz)."""
    server, url = start_api_process(env, log_dir / f"api-{free_port()}.log", ready=ready, timeout=120)
    return Api(server, url)


@pytest.fixture(scope="module")
def local_api(
    tmp_path_factory: pytest.TempPathFactory, index_bundle: Path, tiny_model: Path
) -> Iterator[Api]:
    """The API with the tiny model in process over the sample index, admin routes on."""
    api = start_api(
        tmp_path_factory.mktemp("local-api"),
        api_env(index_bundle, tiny_model, RECOMMENDER_ADMIN_TOKEN=ADMIN_TOKEN),
    )
    yield api
    api.server.stop(signal.SIGTERM)


# A wide batching window, so requests the client sends together provably share one batch.
BATCH_DELAY_MS = 500


@pytest.fixture(scope="module")
def torchserve_process(
    tmp_path_factory: pytest.TempPathFactory, tiny_mar: Path, java: str, venv_bin: Path, repo_root: Path
) -> Iterator[TorchServe]:
    """Not started: the test decides when (the API must cope with a model server that comes later)."""
    process = TorchServe(
        tmp_path_factory.mktemp("torchserve"), tiny_mar, venv_bin, repo_root, batch_delay_ms=BATCH_DELAY_MS
    )
    yield process
    if process.server is not None:
        process.resume()
    process.stop()


def decoder_and_client_errors(backend: str, url: str, bad: list[bytes]) -> tuple[list, list]:
    """For each bad image: the (code, message) the shared decoder raises in process, and the one the
    `backend` client raises for it through the real model server at `url`."""
    from fashion_clip.errors import FashionClipError
    from fashion_clip.images import decode_image

    expected = []
    for data in bad:
        with pytest.raises(FashionClipError) as caught:
            decode_image(data)
        expected.append((caught.value.code, caught.value.message))
    client = make_client(EmbedderSettings(backend=backend, url=url, timeout_seconds=30))

    async def scenario() -> list[tuple[str, str]]:
        outcomes = []
        for data in bad:
            with pytest.raises(FashionClipError) as caught:
                await client.embed_images([data])
            outcomes.append((caught.value.code, caught.value.message))
        await client.aclose()
        return outcomes

    return expected, asyncio.run(scenario())
