"""A small synchronous client for the recommender API (routes and shapes: docs/contracts.md).

Every failure becomes an `ApiError` whose message a person can read: the API's own `message` when it
sent one, otherwise a sentence about what went wrong on the way (unreachable, timed out, not JSON).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import httpx

logger = logging.getLogger("frontend")


class ApiError(Exception):
    """A failed API call, with the status and error code when the API answered."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class ApiClient:
    """One pooled HTTP client per API base URL; thread-safe, as Streamlit sessions run in threads."""

    def __init__(self, base_url: str, timeout: float = 30.0, transport: httpx.BaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            follow_redirects=True,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    # Transport and error mapping -----------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ApiError(
                f"The API at {self.base_url} did not answer {method} {path} within {self.timeout:g} s.",
                code="timeout",
            ) from exc
        except httpx.TransportError as exc:
            raise ApiError(
                f"The API at {self.base_url} is not reachable ({exc.__class__.__name__}: {exc}). "
                "Start it (`make demo`, or `python -m recommender`) or point FRONTEND_API_URL at it.",
                code="unreachable",
            ) from exc
        if response.is_error:
            raise _error_from_response(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(
                f"The API answered {method} {path} with something that is not JSON "
                f"({response.headers.get('content-type', 'no content type')}).",
                status=response.status_code,
                code="bad_response",
            ) from exc

    # Routes --------------------------------------------------------------------------------------

    def ready(self) -> dict:
        """`GET /readyz`: raises ApiError (503 `not_ready`) until the index and model agree."""
        return self._json("GET", "/readyz")

    def info(self) -> dict:
        return self._json("GET", "/info")

    def categories(self) -> list[str]:
        return list(self._json("GET", "/categories")["categories"])

    def item(self, item_id: str) -> dict:
        return self._json("GET", f"/items/{quote(item_id, safe='')}")

    def predict(self, image: bytes, filename: str = "query.jpg", content_type: str | None = None) -> dict:
        files = {"file": (filename, image, content_type or "application/octet-stream")}
        return self._json("POST", "/predict", files=files)

    def recommend(
        self,
        image: bytes,
        k: int,
        category: str | None = None,
        exclude: list[str] | None = None,
        filename: str = "query.jpg",
        content_type: str | None = None,
    ) -> dict:
        params: dict[str, Any] = {"k": k}
        if category:
            params["category"] = category
        if exclude:
            params["exclude"] = list(exclude)
        files = {"file": (filename, image, content_type or "application/octet-stream")}
        return self._json("POST", "/recommend", params=params, files=files)

    def search(self, query: str, k: int, category: str | None = None) -> dict:
        params: dict[str, Any] = {"q": query, "k": k}
        if category:
            params["category"] = category
        return self._json("GET", "/search", params=params)

    def similar(self, item_id: str, k: int, category: str | None = None) -> dict:
        params: dict[str, Any] = {"k": k}
        if category:
            params["category"] = category
        return self._json("GET", f"/items/{quote(item_id, safe='')}/similar", params=params)

    def image(self, image_url: str) -> bytes:
        """The bytes behind a result's `image_url` (`/items/{id}/image`, or an absolute URL)."""
        response = self._request("GET", image_url)
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith("image/"):
            raise ApiError(
                f"{image_url} answered {content_type or 'no content type'}, not an image.",
                status=response.status_code,
                code="bad_response",
            )
        return response.content

    def item_image(self, item_id: str) -> bytes:
        return self.image(f"/items/{quote(item_id, safe='')}/image")


def _error_from_response(response: httpx.Response) -> ApiError:
    """Prefer the API's one error shape `{"error", "message"}`; fall back to the status line."""
    code = None
    message = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = body.get("error") if isinstance(body.get("error"), str) else None
        if isinstance(body.get("message"), str) and body["message"].strip():
            message = body["message"].strip()
        elif isinstance(body.get("detail"), str):
            message = body["detail"]
    if message is None:
        message = f"The API answered {response.status_code} {response.reason_phrase}."
    retry_after = response.headers.get("retry-after")
    if response.status_code == 503 and retry_after:
        message = f"{message} (try again in {retry_after} s)"
    logger.warning(
        "%s %s -> %s %s: %s",
        response.request.method,
        response.request.url.path,
        response.status_code,
        code,
        message,
    )
    return ApiError(message, status=response.status_code, code=code)


def is_untrained(info: dict) -> bool:
    """`/info` says `untrained` when either the model served or the index's model is untrained."""
    return bool(info.get("untrained"))


def model_label(info: dict) -> str:
    """The model identity to show (`ViT-B-32@1a2b3c4d5e6f`): what the model side serves, else the
    model the index was built with (the model side may not have answered yet)."""
    for source in (info.get("model"), (info.get("index") or {}).get("model")):
        if isinstance(source, dict) and source.get("model_id"):
            return str(source["model_id"])
    return "unknown model"
