"""The bundle built from the sample catalog with the tiny model: contents, vectors, search, filters."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from fashion_clip.index import BundleError, IndexBundle, cosine_from_angular
from fashion_clip.modeldir import read_manifest

CATEGORY_SIZE = 40  # 360 sample items / 9 categories


@pytest.fixture(scope="module")
def bundle(tiny_index: Path):
    with IndexBundle.load(tiny_index) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def matrix(bundle: IndexBundle) -> np.ndarray:
    """Every stored vector, row i = item i: the ground truth for exact search."""
    return np.stack([bundle.vector(item_id) for item_id in bundle.ids()])


@pytest.fixture(scope="module")
def queries(matrix: np.ndarray) -> np.ndarray:
    """Stored vectors (items querying for their neighbours) and unit vectors near the data."""
    rng = np.random.default_rng(3)
    own = matrix[rng.choice(len(matrix), 60, replace=False)]
    near = matrix[rng.choice(len(matrix), 40, replace=False)] + rng.normal(0, 0.05, (40, matrix.shape[1]))
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    return np.vstack([own, near]).astype(np.float32)


def exact_top(matrix: np.ndarray, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[int]:
    scores = matrix @ (query / np.linalg.norm(query))
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    return list(np.argsort(-scores, kind="stable")[:k])


def test_manifest_is_the_contract(bundle: IndexBundle, tiny_index: Path, tiny_model: Path):
    manifest = json.loads((tiny_index / "manifest.json").read_text())
    assert bundle.manifest == manifest
    assert set(manifest) == {
        "format_version", "model", "dim", "metric", "trees", "item_count", "built_at", "build_seconds",
        "files", "skipped",
    }  # fmt: skip
    weights = read_manifest(tiny_model)
    assert manifest["model"] == {
        "model_name": "tiny-clip",
        "model_id": weights.model_id,
        "weights_sha256": weights.weights_sha256,
        "untrained": True,
        "embed_dim": 64,
    }
    assert bundle.model == manifest["model"]
    assert (manifest["format_version"], manifest["dim"], manifest["metric"]) == (1, 64, "angular")
    assert (manifest["trees"], manifest["item_count"], manifest["skipped"]) == (50, 360, [])
    assert manifest["build_seconds"] > 0
    on_disk = sorted(
        p.relative_to(tiny_index).as_posix()
        for p in tiny_index.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    )
    assert sorted(manifest["files"]) == on_disk
    assert len(on_disk) == 362  # index.ann, items.jsonl and one image per item
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((tiny_index / name).read_bytes()).hexdigest() == digest


def test_items_follow_the_catalog_with_images_copied_into_the_bundle(
    bundle: IndexBundle, tiny_index: Path, sample_catalog: Path
):
    with open(sample_catalog / "catalog.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert bundle.ids() == [row["id"] for row in rows]
    assert len(bundle) == 360
    assert bundle.categories() == [
        "bag",
        "dress",
        "hat",
        "jacket",
        "scarf",
        "shoes",
        "skirt",
        "t-shirt",
        "trousers",
    ]
    lines = (tiny_index / "items.jsonl").read_text().splitlines()
    assert json.loads(lines[7]) == bundle.item(rows[7]["id"])
    assert bundle.item("dress-red-stripes") == {
        "id": "dress-red-stripes",
        "title": "Red striped dress",
        "category": "dress",
        "color": "red",
        "price": float(next(r["price"] for r in rows if r["id"] == "dress-red-stripes")),
        "image": "images/dress-red-stripes.jpg",
        "pattern": "stripes",
    }
    path = bundle.image_path("dress-red-stripes")
    assert path == tiny_index / "images" / "dress-red-stripes.jpg"
    assert path.read_bytes() == (sample_catalog / "images" / "dress-red-stripes.jpg").read_bytes()


def test_item_is_a_copy_and_unknown_ids_raise_key_error(bundle: IndexBundle):
    bundle.item("hat-red-dots")["title"] = "changed"
    assert bundle.item("hat-red-dots")["title"] == "Red polka-dot hat"
    for lookup in (bundle.item, bundle.vector, bundle.image_path):
        with pytest.raises(KeyError):
            lookup("no-such-item")
    assert "hat-red-dots" in bundle and "no-such-item" not in bundle


def test_stored_vectors_are_the_clients_unit_embeddings(bundle: IndexBundle, tiny_client, matrix: np.ndarray):
    ids = ["t-shirt-red-solid", "bag-navy-checks", "scarf-yellow-dots"]
    images = [bundle.image_path(item_id).read_bytes() for item_id in ids]
    expected = asyncio.run(tiny_client.embed_images(images))
    stored = np.stack([bundle.vector(item_id) for item_id in ids])
    assert stored.dtype == np.float32 and stored.shape == (3, 64)
    np.testing.assert_allclose(stored, expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-6)


def test_recall_at_10_against_exact_cosine_search(
    bundle: IndexBundle, matrix: np.ndarray, queries: np.ndarray
):
    ids = bundle.ids()
    found = 0
    for query in queries:
        annoy_ids = [item["id"] for item, _ in bundle.search(query, 10)]
        assert len(annoy_ids) == 10
        found += len(set(annoy_ids) & {ids[i] for i in exact_top(matrix, query, 10)})
    recall = found / (10 * len(queries))
    assert recall >= 0.95, recall


def test_scores_are_cosines_from_the_angular_distance(
    bundle: IndexBundle, matrix: np.ndarray, queries: np.ndarray
):
    position = {item_id: i for i, item_id in enumerate(bundle.ids())}
    for query in queries[::10]:
        # The scale of a query does not change cosines: Annoy's angular metric normalises it.
        results = bundle.search(query * 3.0, 10)
        scores = np.array([score for _, score in results])
        expected = np.array([matrix[position[item["id"]]] @ query for item, _ in results])
        np.testing.assert_allclose(scores, expected, atol=1e-4)
        assert list(scores) == sorted(scores, reverse=True)
    top_item, top_score = bundle.search(matrix[5], 1)[0]
    assert top_item["id"] == bundle.ids()[5]
    assert top_score == pytest.approx(1.0, abs=1e-4)


def test_cosine_from_angular_is_one_minus_half_the_squared_distance():
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(2, 32))
    u, v = u / np.linalg.norm(u), v / np.linalg.norm(v)
    assert cosine_from_angular(np.linalg.norm(u - v)) == pytest.approx(u @ v, abs=1e-12)
    assert cosine_from_angular(0.0) == 1.0 and cosine_from_angular(2.0) == -1.0


@pytest.mark.parametrize("category", ["hat", "t-shirt", "shoes"])
def test_category_filter_returns_exactly_k_of_that_category(
    bundle: IndexBundle, matrix: np.ndarray, category: str
):
    in_category = np.array([bundle.item(i)["category"] == category for i in bundle.ids()])
    query = bundle.vector("dress-red-stripes")  # a dress: its nearest neighbours are mostly not `category`
    # What a single Annoy query for k neighbours would give after filtering: too few.
    naive = [item for item, _ in bundle.search(query, 10) if item["category"] == category]
    assert len(naive) < 10
    results = bundle.search(query, 25, category=category)
    assert len(results) == 25
    assert {item["category"] for item, _ in results} == {category}
    assert len({item["id"] for item, _ in results}) == 25
    exact = {bundle.ids()[i] for i in exact_top(matrix, query, 25, in_category)}
    assert len(exact & {item["id"] for item, _ in results}) >= 23
    # Asking for the whole category, or more, gives the whole category.
    assert len(bundle.search(query, CATEGORY_SIZE, category=category)) == CATEGORY_SIZE
    everything = bundle.search(query, 100, category=category)
    assert {item["id"] for item, _ in everything} == {bundle.ids()[i] for i in np.flatnonzero(in_category)}


def test_unknown_category_gives_nothing(bundle: IndexBundle, queries: np.ndarray):
    assert bundle.search(queries[0], 10, category="spacesuit") == []


def test_exclude_drops_items_and_still_returns_k(bundle: IndexBundle, queries: np.ndarray):
    query = queries[1]
    top = [item["id"] for item, _ in bundle.search(query, 8)]
    results = [item["id"] for item, _ in bundle.search(query, 5, exclude=top[:3] + ["not-an-id"])]
    assert results == top[3:8]
    hats = [item["id"] for item, _ in bundle.search(query, 6, category="hat")]
    rest = [item["id"] for item, _ in bundle.search(query, 4, category="hat", exclude=set(hats[:2]))]
    assert rest == hats[2:6]
    every_hat = [item["id"] for item, _ in bundle.search(query, 100, category="hat")]
    assert bundle.search(query, 5, category="hat", exclude=every_hat) == []


class TruncatingAnnoy:
    """A fake at the Annoy seam: an index whose trees surface at most `limit` candidates.

    Real Annoy returns every item once n reaches the item count, so the exact fallback cannot be
    reached with a real index; this stands in for a huge index with too few trees.
    """

    def __init__(self, annoy, limit: int) -> None:
        self._annoy, self._limit = annoy, limit

    def get_nns_by_vector(self, vector, n, search_k=-1, include_distances=False):
        positions, distances = self._annoy.get_nns_by_vector(vector, min(n, self._limit), search_k, True)
        return (positions, distances) if include_distances else positions

    def __getattr__(self, name):
        return getattr(self._annoy, name)


def test_filtered_search_scores_exactly_when_annoy_runs_out_of_candidates(
    tiny_index: Path, matrix: np.ndarray, queries: np.ndarray
):
    with IndexBundle.load(tiny_index) as truncated:
        real = truncated._annoy
        truncated._annoy = TruncatingAnnoy(real, limit=20)
        results = truncated.search(queries[2], 10, category="scarf")
        truncated._annoy = real
        in_category = np.array([truncated.item(i)["category"] == "scarf" for i in truncated.ids()])
        expected = [truncated.ids()[i] for i in exact_top(matrix, queries[2], 10, in_category)]
    assert [item["id"] for item, _ in results] == expected
    scores = [score for _, score in results]
    assert scores == sorted(scores, reverse=True)


def test_bad_queries_are_refused(bundle: IndexBundle):
    with pytest.raises(ValueError, match=r"shape \(64,\)"):
        bundle.search(np.ones(32, dtype=np.float32), 5)
    with pytest.raises(ValueError, match="finite and non-zero"):
        bundle.search(np.zeros(64, dtype=np.float32), 5)
    with pytest.raises(ValueError, match="k must be at least 1"):
        bundle.search(np.ones(64, dtype=np.float32), 0)


def test_a_closed_bundle_answers_no_queries(tiny_index: Path):
    opened = IndexBundle.load(tiny_index)
    assert len(opened.search(np.ones(64, dtype=np.float32), 3)) == 3
    opened.close()
    opened.close()  # idempotent
    with pytest.raises(BundleError, match="closed"):
        opened.search(np.ones(64, dtype=np.float32), 3)
