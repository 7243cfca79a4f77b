"""What the TorchServe and KServe clients share: one pooled `httpx.AsyncClient`, a bounded time per
call, optional Google ID tokens, and one translation of the model server's faults into domain errors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from fashion_clip.clients.auth import IdTokenAuth, IdTokenSource, TokenFetcher, fetch_google_id_token
from fashion_clip.clients.base import EmbedderClient
from fashion_clip.clients.config import EmbedderSettings
from fashion_clip.errors import (
    FashionClipError,
    InvalidImage,
    InvalidInput,
    ModelServerUnavailable,
    UnsupportedMediaType,
)

logger = logging.getLogger("fashion_clip.clients")

DEFAULT_RETRY_AFTER = 5

# The codes the model server uses in its error body (docs/contracts.md), mapped back to our errors.
_CLIENT_ERRORS: dict[str, type[FashionClipError]] = {
    InvalidImage.code: InvalidImage,
    UnsupportedMediaType.code: UnsupportedMediaType,
    InvalidInput.code: InvalidInput,
}


class HttpEmbedderClient(EmbedderClient):
    """Base of the remote clients. `transport` and `token_fetcher` are the test seams."""

    def __init__(
        self,
        settings: EmbedderSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        token_fetcher: TokenFetcher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.base_url = str(settings.url).rstrip("/")
        self.timeout = settings.timeout_seconds
        auth = None
        if settings.id_token:
            # Cloud Run checks the token's audience against the service URL it was called on.
            audience = settings.id_token_audience or self.base_url
            auth = IdTokenAuth(
                IdTokenSource(audience, fetcher=token_fetcher or fetch_google_id_token, clock=clock)
            )
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(self.timeout),
            auth=auth,
            transport=transport,
            # Enough keep-alive connections for a batch sent at once to TorchServe.
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=64),
        )

    async def _post(self, path: str, *, images: bool, **kwargs: Any) -> Any:
        """POST and return the decoded JSON answer, or raise the domain error the answer means.

        httpx's timeout bounds each phase (connect, each read); the outer one bounds the whole call,
        so a server that trickles bytes still answers 503 within `timeout_seconds`.
        """
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._http.post(path, **kwargs)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise ModelServerUnavailable(
                f"The model server at {self.base_url} did not answer within {self.timeout:g} s."
            ) from exc
        except httpx.TransportError as exc:
            raise ModelServerUnavailable(
                f"Cannot reach the model server at {self.base_url}: {exc or type(exc).__name__}."
            ) from exc
        raise_for_model_server_error(response, images=images)
        try:
            return response.json()
        except ValueError as exc:
            raise ModelServerUnavailable(
                f"The model server at {self.base_url} answered {path} with something that is not JSON."
            ) from exc

    async def aclose(self) -> None:
        await self._http.aclose()


def _error_body(response: httpx.Response) -> tuple[str | None, str]:
    """(code, message) from a model server's error answer, whichever of the shapes it used.

    Ours is {"error": code, "message": ...}; TorchServe's own is {"code", "type", "message"};
    KServe's is {"error": message}.
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = body.get("error") if isinstance(body.get("error"), str) else None
        message = body.get("message")
        if isinstance(message, str) and message:
            return code, message
        if code:
            return (code if code in _CLIENT_ERRORS else None), code
    text = response.text.strip()
    return None, text[:300] or response.reason_phrase


def raise_for_model_server_error(response: httpx.Response, *, images: bool) -> None:
    """Bad input comes back as the same domain error the API would raise itself; the rest is 503."""
    status = response.status_code
    if status < 400:
        return
    code, message = _error_body(response)
    if status == 415:
        raise UnsupportedMediaType(message)
    if status in (400, 422):
        if code in _CLIENT_ERRORS:
            raise _CLIENT_ERRORS[code](message)
        raise (InvalidImage if images else InvalidInput)(message)
    if status == 413:
        raise InvalidInput(f"The model server refused the request as too large: {message}")
    # 404 (model not registered yet), 401/403 (our credentials), 429, 5xx: not the caller's fault,
    # and usually over once the model server has (re)started.
    retry_after = response.headers.get("Retry-After", "")
    logger.warning("model server %s answered %d: %s", response.request.url, status, message)
    raise ModelServerUnavailable(
        f"The model server answered {status}: {message}",
        retry_after=int(retry_after) if retry_after.isdigit() else DEFAULT_RETRY_AFTER,
    )


def malformed(base_url: str, detail: str) -> ModelServerUnavailable:
    """An answer that breaks the wire format (docs/contracts.md) means a model server we cannot use."""
    return ModelServerUnavailable(f"The model server at {base_url} sent an answer we cannot read: {detail}")
