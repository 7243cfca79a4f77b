"""Every route's happy path and every error, against the real API (uvicorn, tiny model in process)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from fashion_clip.images import decode_image
from fashion_clip.index.bundle import IndexBundle
from recommender.routes.ops import UNTRAINED_WARNING

from .conftest import ADMIN_TOKEN, PER_CATEGORY, UPLOAD_LIMIT, Api, read_bundle

pytestmark = pytest.mark.slow

ITEM = "t-shirt-red-solid"
CATEGORIES = ["bag", "dress", "hat", "jacket", "scarf", "shoes", "skirt", "t-shirt", "trousers"]
RESULT_FIELDS = {"id", "title", "category", "color", "price", "score", "image_url"}


@pytest.fixture(scope="module")
def http(local_api: Api):
    with local_api.client() as client:
        yield client


@pytest.fixture(scope="module")
def stored(index_bundle: Path) -> dict[str, np.ndarray]:
    items, vectors, _ = read_bundle(index_bundle)
    return {item["id"]: vector for item, vector in zip(items, vectors, strict=True)}


def photo(catalog: Path, item_id: str = ITEM) -> bytes:
    return (catalog / "images" / f"{item_id}.jpg").read_bytes()


def image_bytes(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def error(response: httpx.Response) -> tuple[int, dict]:
    return response.status_code, response.json()


def check_results(body: dict, k: int, stored: dict[str, np.ndarray], query: np.ndarray) -> list[str]:
    """Shape of a Results body, and each score the exact cosine of the query and the stored vector."""
    assert set(body) == {"items", "k", "model", "untrained"}
    assert (body["k"], body["model"], body["untrained"]) == (k, "tiny-clip", True)
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)
    for item in body["items"]:
        assert set(item) == RESULT_FIELDS
        assert item["image_url"] == f"/items/{item['id']}/image"
        expected = float(
            query @ stored[item["id"]] / np.linalg.norm(query) / np.linalg.norm(stored[item["id"]])
        )
        assert item["score"] == pytest.approx(expected, abs=1e-4)
    return [item["id"] for item in body["items"]]


# --- operations -----------------------------------------------------------------------------------


def test_healthz(http: httpx.Client) -> None:
    response = http.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz(http: httpx.Client, index_bundle: Path) -> None:
    model_id = json.loads((index_bundle / "manifest.json").read_text())["model"]["model_id"]
    response = http.get("/readyz")
    assert (response.status_code, response.json()) == (
        200,
        {"status": "ready", "model_id": model_id, "dim": 64, "items": 9 * PER_CATEGORY},
    )


def test_info_reports_model_index_and_the_untrained_warning(http: httpx.Client, index_bundle: Path) -> None:
    manifest = json.loads((index_bundle / "manifest.json").read_text())
    body = http.get("/info").json()
    expected_index = {k: v for k, v in manifest.items() if k not in ("files", "skipped")}
    assert body == {
        "ready": True,
        "reason": None,
        "untrained": True,
        "warning": UNTRAINED_WARNING,
        "embedder": {"backend": "local", "model_name": "clip"},
        "model": {
            "model_name": "tiny-clip",
            "model_id": manifest["model"]["model_id"],
            "dim": 64,
            "untrained": True,
        },
        "index": {**expected_index, "skipped_count": 0},
    }


def test_categories(http: httpx.Client) -> None:
    assert http.get("/categories").json() == {"categories": CATEGORIES}


def test_openapi_describes_every_route_with_its_docstring(http: httpx.Client) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    described = {
        (path, method): op.get("description") for path, ops in paths.items() for method, op in ops.items()
    }
    assert set(described) == {
        ("/predict", "post"),
        ("/recommend", "post"),
        ("/search", "get"),
        ("/items/{item_id}", "get"),
        ("/items/{item_id}/image", "get"),
        ("/items/{item_id}/similar", "get"),
        ("/categories", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/info", "get"),
        ("/metrics", "get"),
        ("/admin/reload", "post"),
    }
    assert all(description and "\n" not in description for description in described.values())


# --- items ----------------------------------------------------------------------------------------


def test_item(http: httpx.Client) -> None:
    response = http.get(f"/items/{ITEM}")
    assert (response.status_code, response.json()) == (
        200,
        {
            "id": ITEM,
            "title": "Red t-shirt",
            "category": "t-shirt",
            "color": "red",
            "price": response.json()["price"],
            "pattern": "solid",
            "image_url": f"/items/{ITEM}/image",
        },
    )
    assert isinstance(response.json()["price"], float)


def test_item_image_is_the_bundle_file(http: httpx.Client, index_bundle: Path, catalog: Path) -> None:
    response = http.get(f"/items/{ITEM}/image")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content == (index_bundle / "images" / f"{ITEM}.jpg").read_bytes() == photo(catalog)


@pytest.mark.parametrize("suffix", ["", "/image", "/similar"])
def test_unknown_item_is_404(http: httpx.Client, suffix: str) -> None:
    assert error(http.get(f"/items/no-such-item{suffix}")) == (
        404,
        {"error": "not_found", "message": "No item with id 'no-such-item' in the index."},
    )


def test_similar_uses_the_stored_vector_and_leaves_the_item_out(
    http: httpx.Client, stored: dict[str, np.ndarray]
) -> None:
    body = http.get(f"/items/{ITEM}/similar", params={"k": 5}).json()
    ids = check_results(body, 5, stored, stored[ITEM])
    assert len(ids) == 5 and ITEM not in ids


def test_similar_with_a_category_still_returns_k(http: httpx.Client, stored: dict[str, np.ndarray]) -> None:
    body = http.get(f"/items/{ITEM}/similar", params={"k": PER_CATEGORY, "category": "dress"}).json()
    ids = check_results(body, PER_CATEGORY, stored, stored[ITEM])
    assert sorted(ids) == sorted(i for i in stored if i.startswith("dress-"))
    # In its own category the item itself is left out: one fewer exists.
    own = http.get(f"/items/{ITEM}/similar", params={"k": PER_CATEGORY, "category": "t-shirt"}).json()
    assert sorted(check_results(own, PER_CATEGORY, stored, stored[ITEM])) == sorted(
        i for i in stored if i.startswith("t-shirt-") and i != ITEM
    )


# --- queries --------------------------------------------------------------------------------------


def test_recommend_finds_the_photo_itself_first(
    http: httpx.Client, catalog: Path, stored: dict[str, np.ndarray]
) -> None:
    response = http.post(
        "/recommend", params={"k": 3}, files={"file": ("photo.jpg", photo(catalog), "image/jpeg")}
    )
    assert response.status_code == 200
    ids = check_results(response.json(), 3, stored, stored[ITEM])
    assert ids[0] == ITEM
    assert response.json()["items"][0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_recommend_default_k_is_ten(http: httpx.Client, catalog: Path) -> None:
    body = http.post("/recommend", files={"file": ("p.jpg", photo(catalog))}).json()
    assert (body["k"], len(body["items"])) == (10, 10)


def test_recommend_with_category_and_exclusions(
    http: httpx.Client, catalog: Path, stored: dict[str, np.ndarray]
) -> None:
    excluded = ["bag-red-solid", "bag-navy-solid"]
    response = http.post(
        "/recommend",
        params={"k": PER_CATEGORY, "category": "bag", "exclude": excluded},
        files={"file": ("p.jpg", photo(catalog))},
    )
    ids = check_results(response.json(), PER_CATEGORY, stored, stored[ITEM])
    assert sorted(ids) == sorted(i for i in stored if i.startswith("bag-") and i not in excluded)


def test_recommend_excludes_ids(http: httpx.Client, catalog: Path) -> None:
    body = http.post(
        "/recommend", params={"k": 5, "exclude": [ITEM]}, files={"file": ("p.jpg", photo(catalog))}
    ).json()
    ids = [item["id"] for item in body["items"]]
    assert len(ids) == 5 and ITEM not in ids


def test_predict_returns_the_unit_vector_the_index_holds(
    http: httpx.Client, catalog: Path, stored: dict[str, np.ndarray], index_bundle: Path
) -> None:
    response = http.post("/predict", files={"file": ("p.jpg", photo(catalog))})
    body = response.json()
    model_id = json.loads((index_bundle / "manifest.json").read_text())["model"]["model_id"]
    assert response.status_code == 200
    assert set(body) == {"dim", "model", "model_id", "untrained", "embedding"}
    assert (body["dim"], body["model"], body["model_id"], body["untrained"]) == (
        64,
        "tiny-clip",
        model_id,
        True,
    )
    vector = np.array(body["embedding"], dtype=np.float32)
    assert vector.shape == (64,)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(vector, stored[ITEM], atol=1e-5)


def test_search_by_text(http: httpx.Client, stored: dict[str, np.ndarray], tiny_model: Path) -> None:
    from fashion_clip.embedding import ClipEmbedder

    query = ClipEmbedder(tiny_model, precision="fp32").encode_texts(["red dress"])[0]
    body = http.get("/search", params={"q": "  red dress ", "k": 4}).json()
    assert len(check_results(body, 4, stored, query)) == 4
    filtered = http.get("/search", params={"q": "red dress", "k": 3, "category": "hat"}).json()
    ids = check_results(filtered, 3, stored, query)
    assert len(ids) == 3 and all(i.startswith("hat-") for i in ids)


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "message"),
    [
        ("0", "Invalid request: query parameter k: Input should be greater than or equal to 1."),
        ("101", "Invalid request: query parameter k: Input should be less than or equal to 100."),
        (
            "ten",
            "Invalid request: query parameter k: Input should be a valid integer, unable to parse string as an integer.",
        ),
    ],
)
def test_bad_k_is_422(http: httpx.Client, catalog: Path, k: str, message: str) -> None:
    expected = (422, {"error": "validation_error", "message": message})
    assert (
        error(http.post("/recommend", params={"k": k}, files={"file": ("p.jpg", photo(catalog))})) == expected
    )
    assert error(http.get("/search", params={"q": "dress", "k": k})) == expected
    assert error(http.get(f"/items/{ITEM}/similar", params={"k": k})) == expected


def test_missing_upload_is_422(http: httpx.Client) -> None:
    assert error(http.post("/recommend", data={"other": "x"})) == (
        422,
        {"error": "validation_error", "message": "Invalid request: form field file: Field required."},
    )


def test_missing_query_text_is_422_and_blank_text_400(http: httpx.Client) -> None:
    assert error(http.get("/search")) == (
        422,
        {"error": "validation_error", "message": "Invalid request: query parameter q: Field required."},
    )
    assert error(http.get("/search", params={"q": "   "})) == (
        400,
        {"error": "invalid_input", "message": "The query text is empty."},
    )


def test_unknown_category_is_400(http: httpx.Client, catalog: Path) -> None:
    expected = (
        400,
        {
            "error": "invalid_input",
            "message": f"Unknown category 'hats'; the index has: {', '.join(CATEGORIES)}.",
        },
    )
    assert error(http.get("/search", params={"q": "hat", "category": "hats"})) == expected
    assert (
        error(http.post("/recommend", params={"category": "hats"}, files={"file": ("p.jpg", photo(catalog))}))
        == expected
    )


def _bad_uploads() -> list[tuple[str, bytes, int, dict]]:
    jpeg = image_bytes(Image.new("RGB", (64, 64), (200, 30, 40)), "JPEG")
    cases = [
        ("text", b"this is not an image at all", 415),
        ("ico", image_bytes(Image.new("RGB", (32, 32)), "ICO"), 415),
        ("empty", b"", 400),
        ("truncated", jpeg[:300], 400),
        ("over-pixel-limit", image_bytes(Image.new("1", (7000, 6000)), "PNG"), 400),
        ("decompression-bomb", image_bytes(Image.new("1", (15000, 15000)), "PNG"), 400),
    ]
    out = []
    for name, data, status in cases:
        try:  # the expected message is the one shared decoder's own
            decode_image(data)
        except Exception as exc:
            out.append((name, data, status, {"error": exc.code, "message": exc.message}))
    assert len(out) == len(cases)
    return out


@pytest.mark.parametrize(
    ("name", "data", "status", "body"), _bad_uploads(), ids=lambda v: v if isinstance(v, str) else ""
)
@pytest.mark.parametrize("route", ["/recommend", "/predict"])
def test_bad_uploads(http: httpx.Client, route: str, name: str, data: bytes, status: int, body: dict) -> None:
    assert len(data) < UPLOAD_LIMIT
    assert error(http.post(route, files={"file": (f"{name}.jpg", data, "image/jpeg")})) == (status, body)


def test_upload_one_byte_over_the_limit_is_413(http: httpx.Client) -> None:
    data = b"\xff\xd8" + b"\0" * (UPLOAD_LIMIT - 1)
    assert error(http.post("/recommend", files={"file": ("big.jpg", data)})) == (
        413,
        {
            "error": "payload_too_large",
            "message": f"The upload is larger than the limit of {UPLOAD_LIMIT} bytes.",
        },
    )


def test_body_far_over_the_limit_is_413_from_content_length(http: httpx.Client) -> None:
    data = b"\0" * (4 * UPLOAD_LIMIT)
    assert error(http.post("/predict", files={"file": ("big.jpg", data)})) == (
        413,
        {
            "error": "payload_too_large",
            "message": f"The request body is larger than the upload limit of {UPLOAD_LIMIT} bytes.",
        },
    )


def test_chunked_body_over_the_limit_is_cut_off_while_streaming(http: httpx.Client) -> None:
    boundary = "b0undary"
    chunk = b"\0" * 65536

    def body():
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n\r\n'.encode()
        for _ in range(4 * UPLOAD_LIMIT // len(chunk)):
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    response = http.post(
        "/recommend", content=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert "content-length" not in response.request.headers
    assert error(response) == (
        413,
        {
            "error": "payload_too_large",
            "message": f"The request body is larger than the upload limit of {UPLOAD_LIMIT} bytes.",
        },
    )


def test_unknown_route_and_wrong_method(http: httpx.Client) -> None:
    assert error(http.get("/nope")) == (404, {"error": "not_found", "message": "No route GET /nope."})
    assert error(http.get("/recommend")) == (
        405,
        {"error": "method_not_allowed", "message": "GET is not allowed on /recommend."},
    )


def test_admin_reload_needs_the_token(http: httpx.Client) -> None:
    expected = (
        401,
        {
            "error": "unauthorized",
            "message": "Send the admin token as `Authorization: Bearer <RECOMMENDER_ADMIN_TOKEN>`.",
        },
    )
    assert error(http.post("/admin/reload")) == expected
    wrong = http.post("/admin/reload", headers={"Authorization": "Bearer " + ADMIN_TOKEN[:-1]})
    assert error(wrong) == expected
    assert wrong.headers["WWW-Authenticate"] == "Bearer"


# --- metrics --------------------------------------------------------------------------------------


def _samples(http: httpx.Client) -> dict[tuple[str, tuple], float]:
    text = http.get("/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_requests_per_route_and_time_each_stage(http: httpx.Client, catalog: Path) -> None:
    before = _samples(http)
    for _ in range(3):
        assert http.get(f"/items/{ITEM}/similar").status_code == 200
    assert http.get("/items/no-such-item").status_code == 404
    assert http.post("/recommend", files={"file": ("p.jpg", photo(catalog))}).status_code == 200
    after = _samples(http)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    similar = {"route": "/items/{item_id}/similar", "method": "GET"}
    assert delta("recommender_requests_total", status="200", **similar) == 3
    assert delta("recommender_request_duration_seconds_count", **similar) == 3
    assert delta("recommender_requests_total", route="/items/{item_id}", method="GET", status="404") == 1
    assert delta("recommender_stage_duration_seconds_count", stage="decode") == 1
    assert delta("recommender_stage_duration_seconds_count", stage="embed") == 1
    assert delta("recommender_stage_duration_seconds_count", stage="search") == 4
    assert after[("recommender_ready", ())] == 1
    assert after[("recommender_index_items", ())] == 9 * PER_CATEGORY


def test_bundle_fixture_is_what_the_builder_made(index_bundle: Path) -> None:
    """Guards the other tests' premise: the index holds the trimmed catalog, 8 items per category."""
    bundle = IndexBundle.load(index_bundle)
    try:
        assert len(bundle) == 9 * PER_CATEGORY
        assert bundle.categories() == CATEGORIES
    finally:
        bundle.close()
