"""The UI's API client against the real API: shapes it reads, and errors turned into sentences."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from fashion_ui.client import ApiClient, ApiError, _error_from_response, is_untrained, model_label
from fashion_ui.config import FrontendSettings, settings_error_message
from procs import LOOPBACK, free_port
from pydantic import ValidationError


@pytest.fixture(scope="module")
def client(api_url: str):
    client = ApiClient(api_url, timeout=60)
    yield client
    client.close()


@pytest.mark.slow
def test_info_says_untrained_and_names_the_tiny_model(client: ApiClient, sample_index: Path) -> None:
    info = client.info()
    manifest = json.loads((sample_index / "manifest.json").read_text())
    assert is_untrained(info) is True
    assert model_label(info) == manifest["model"]["model_id"]
    assert model_label(info).startswith("tiny-clip@")


@pytest.mark.slow
def test_categories_are_the_index_categories(client: ApiClient, sample_index: Path) -> None:
    items = [json.loads(line) for line in (sample_index / "items.jsonl").read_text().splitlines()]
    assert sorted(client.categories()) == sorted({item["category"] for item in items})
    assert len(client.categories()) == 9


@pytest.mark.slow
def test_image_is_the_bundle_file(client: ApiClient, sample_index: Path) -> None:
    first = json.loads((sample_index / "items.jsonl").read_text().splitlines()[0])
    assert client.item_image(first["id"]) == (sample_index / first["image"]).read_bytes()


@pytest.mark.slow
def test_recommend_returns_k_items_without_excluded(client: ApiClient, sample_index: Path) -> None:
    first = json.loads((sample_index / "items.jsonl").read_text().splitlines()[0])
    image = (sample_index / first["image"]).read_bytes()
    result = client.recommend(image, k=5, exclude=[first["id"]])
    assert len(result["items"]) == 5
    assert first["id"] not in [item["id"] for item in result["items"]]
    with_self = client.recommend(image, k=1)
    assert with_self["items"][0]["id"] == first["id"]  # the photo itself is its own best match


@pytest.mark.slow
def test_unknown_item_carries_the_api_message(client: ApiClient, api: httpx.Client) -> None:
    direct = api.get("/items/no-such-item")
    assert direct.status_code == 404
    with pytest.raises(ApiError) as caught:
        client.item("no-such-item")
    assert (caught.value.status, caught.value.code) == (404, "not_found")
    assert caught.value.message == direct.json()["message"]


@pytest.mark.slow
def test_not_an_image_carries_the_api_message(client: ApiClient) -> None:
    with pytest.raises(ApiError) as caught:
        client.recommend(b"just some text", k=3, filename="notes.jpg", content_type="image/jpeg")
    assert (caught.value.status, caught.value.code) == (415, "unsupported_media_type")
    assert caught.value.message == "The data is not an image Pillow can identify."


def test_unreachable_api_is_one_sentence() -> None:
    url = f"http://{LOOPBACK}:{free_port()}"
    with pytest.raises(ApiError) as caught:
        ApiClient(url, timeout=5).info()
    assert caught.value.code == "unreachable"
    assert caught.value.status is None
    assert caught.value.message.startswith(f"The API at {url} is not reachable (ConnectError:")
    assert "FRONTEND_API_URL" in caught.value.message


def _response(status: int, **kwargs) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("GET", "http://127.0.0.1/readyz"), **kwargs)


def test_503_message_says_when_to_retry() -> None:
    error = _error_from_response(
        _response(
            503, json={"error": "not_ready", "message": "The index is loading."}, headers={"Retry-After": "5"}
        )
    )
    assert (error.status, error.code, error.message) == (
        503,
        "not_ready",
        "The index is loading. (try again in 5 s)",
    )


def test_error_without_our_shape_falls_back_to_the_status_line() -> None:
    error = _error_from_response(_response(502, text="<html>bad gateway</html>"))
    assert (error.status, error.code, error.message) == (502, None, "The API answered 502 Bad Gateway.")


def test_settings_read_frontend_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRONTEND_API_URL", "http://api.example:8000/")
    monkeypatch.setenv("FRONTEND_DEFAULT_K", "12")
    settings = FrontendSettings()
    assert (settings.api_url, settings.default_k) == ("http://api.example:8000", 12)


def test_bad_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRONTEND_API_URL", "ftp://files")
    monkeypatch.setenv("FRONTEND_TIMEOUT_SECONDS", "0")
    with pytest.raises(ValidationError) as caught:
        FrontendSettings()
    assert settings_error_message(caught.value) == (
        "FRONTEND_API_URL: must start with http:// or https://, got 'ftp://files'; "
        "FRONTEND_TIMEOUT_SECONDS: Input should be greater than 0"
    )
