"""Google ID tokens for Cloud Run service-to-service calls (`RECOMMENDER_EMBEDDER__ID_TOKEN=true`).

A private Cloud Run model server only accepts requests carrying `Authorization: Bearer <ID token>`
whose audience is its URL. On Cloud Run (and GCE/GKE) google-auth fetches that token from the
metadata server; a token lives one hour, so we keep it and fetch a new one a few minutes before
it expires. The fetch is a blocking HTTP call, so it runs in a worker thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable, Generator

import anyio.to_thread
import httpx

from fashion_clip.errors import ModelServerUnavailable

logger = logging.getLogger("fashion_clip.clients")

TokenFetcher = Callable[[str], str]
"""audience -> a signed ID token (a JWT). The seam tests replace: no metadata server runs here."""

# Fetch a new token this long before the old one expires, so no request leaves with a token
# that dies in flight (Cloud Run tokens live 3600 s).
REFRESH_MARGIN_SECONDS = 300.0


def fetch_google_id_token(audience: str) -> str:
    """Ask google-auth for an ID token: the metadata server on Google Cloud, or a service account key."""
    import google.auth.transport.requests
    import google.oauth2.id_token

    return google.oauth2.id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)


def token_expiry(token: str) -> float:
    """The `exp` claim (epoch seconds) of a JWT, read without verifying it: we only schedule a refresh."""
    from google.auth import jwt

    try:
        return float(jwt.decode(token, verify=False)["exp"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelServerUnavailable(f"The ID token we were given has no readable expiry: {exc}") from exc


class IdTokenSource:
    """One cached ID token for one audience, refreshed `refresh_margin` seconds before `exp`."""

    def __init__(
        self,
        audience: str,
        fetcher: TokenFetcher = fetch_google_id_token,
        clock: Callable[[], float] = time.time,
        refresh_margin: float = REFRESH_MARGIN_SECONDS,
    ) -> None:
        self.audience = audience
        self._fetcher = fetcher
        self._clock = clock
        self._refresh_margin = refresh_margin
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock: asyncio.Lock | None = None

    def _fresh(self) -> bool:
        return self._token is not None and self._clock() < self._expires_at - self._refresh_margin

    def _fetch(self) -> tuple[str, float]:
        try:
            token = self._fetcher(self.audience)
        except Exception as exc:  # google-auth raises several families (transport, credentials, refresh)
            raise ModelServerUnavailable(
                f"Could not obtain a Google ID token for {self.audience}: {exc}"
            ) from exc
        return token, token_expiry(token)

    async def token(self) -> str:
        """The cached token, or a new one fetched in a worker thread when it is near expiry."""
        if self._fresh():
            return self._token  # type: ignore[return-value]
        if self._lock is None:  # created here so it binds to the running loop
            self._lock = asyncio.Lock()
        async with self._lock:  # one fetch for all the requests that noticed at the same time
            if not self._fresh():
                self._token, self._expires_at = await anyio.to_thread.run_sync(self._fetch)
                logger.info(
                    "fetched an ID token for %s, valid for %.0f s",
                    self.audience,
                    self._expires_at - self._clock(),
                )
            return self._token  # type: ignore[return-value]

    def token_sync(self) -> str:
        if not self._fresh():
            self._token, self._expires_at = self._fetch()
        return self._token  # type: ignore[return-value]


class IdTokenAuth(httpx.Auth):
    """httpx auth that puts the source's token in `Authorization: Bearer ...` on every request."""

    def __init__(self, source: IdTokenSource) -> None:
        self.source = source

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.source.token_sync()}"
        yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {await self.source.token()}"
        yield request
