"""Google ID tokens: fetched off the loop, cached, refreshed five minutes before `exp`.

google-auth's real fetch needs the GCE/Cloud Run metadata server, which cannot run here, so a fake
fetcher is injected at the `token_fetcher` seam; everything after it (caching, expiry parsing, the
header on the wire) is the production code.
"""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from fashion_clip.clients.auth import REFRESH_MARGIN_SECONDS, IdTokenSource, token_expiry
from fashion_clip.clients.config import EmbedderSettings
from fashion_clip.clients.torchserve import TorchServeClient
from fashion_clip.errors import ModelServerUnavailable

from .conftest import Clock, ScriptedServer, TokenFetcher, fake_jwt

ANSWER = {"embedding": [1.0, 0.0], "dim": 2, "model": "m", "model_id": "m@abc", "untrained": False}


def test_token_expiry_reads_the_exp_claim() -> None:
    assert token_expiry(fake_jwt(1_700_003_600)) == 1_700_003_600.0


def test_token_expiry_of_garbage_is_a_model_server_error() -> None:
    with pytest.raises(ModelServerUnavailable, match="no readable expiry"):
        token_expiry("not-a-jwt")


def test_token_is_cached_then_refreshed_five_minutes_before_expiry(
    clock: Clock, token_fetcher: TokenFetcher
) -> None:
    source = IdTokenSource("https://model.example.run.app", fetcher=token_fetcher, clock=clock)

    async def scenario() -> list[str]:
        first = await source.token()
        clock.now += 3600 - REFRESH_MARGIN_SECONDS - 1  # one second before the refresh point
        still_first = await source.token()
        clock.now += 1  # at the refresh point
        second = await source.token()
        return [first, still_first, second]

    first, still_first, second = asyncio.run(scenario())
    assert still_first == first
    assert second != first
    assert token_expiry(second) == clock.now + 3600
    assert token_fetcher.calls == ["https://model.example.run.app"] * 2


def test_concurrent_callers_share_one_fetch_done_off_the_event_loop(clock: Clock) -> None:
    threads: list[str] = []

    def fetcher(audience: str) -> str:
        threads.append(threading.current_thread().name)
        return fake_jwt(clock() + 3600)

    source = IdTokenSource("aud", fetcher=fetcher, clock=clock)

    async def scenario() -> tuple[list[str], str]:
        tokens = await asyncio.gather(*(source.token() for _ in range(8)))
        return tokens, threading.current_thread().name

    tokens, loop_thread = asyncio.run(scenario())
    assert len(set(tokens)) == 1
    assert len(threads) == 1
    assert threads[0] != loop_thread


def test_a_failing_fetch_is_a_model_server_error(clock: Clock) -> None:
    def fetcher(audience: str) -> str:
        raise RuntimeError("metadata server unreachable")

    source = IdTokenSource("aud", fetcher=fetcher, clock=clock)
    with pytest.raises(ModelServerUnavailable) as caught:
        asyncio.run(source.token())
    assert caught.value.message == "Could not obtain a Google ID token for aud: metadata server unreachable"


def _client(settings: EmbedderSettings, server: ScriptedServer, **seams) -> TorchServeClient:
    return TorchServeClient(settings, transport=server.transport(), **seams)


def test_bearer_header_with_id_token_enabled_and_audience_defaulting_to_the_url(
    clock: Clock, token_fetcher: TokenFetcher
) -> None:
    server = ScriptedServer(lambda request: httpx.Response(200, json=ANSWER))
    settings = EmbedderSettings(backend="torchserve", url="https://clip-abc-ew.a.run.app", id_token=True)
    client = _client(settings, server, token_fetcher=token_fetcher, clock=clock)

    async def scenario() -> None:
        await client.embed_texts(["a", "b"])
        clock.now += 3600  # expired: the next request carries a new token
        await client.embed_texts(["c"])
        await client.aclose()

    asyncio.run(scenario())
    headers = [request.headers["Authorization"] for request in server.requests]
    assert token_fetcher.calls == ["https://clip-abc-ew.a.run.app", "https://clip-abc-ew.a.run.app"]
    first = "Bearer " + fake_jwt(1_700_000_000 + 3600, sub="token-1")
    second = "Bearer " + fake_jwt(1_700_003_600 + 3600, sub="token-2")
    assert headers == [first, first, second]


def test_explicit_audience_is_used(clock: Clock, token_fetcher: TokenFetcher) -> None:
    server = ScriptedServer(lambda request: httpx.Response(200, json=ANSWER))
    settings = EmbedderSettings(
        backend="torchserve",
        url="http://10.0.0.5:8080",
        id_token=True,
        id_token_audience="https://clip.example",
    )
    client = _client(settings, server, token_fetcher=token_fetcher, clock=clock)
    asyncio.run(client.embed_texts(["a"]))
    assert token_fetcher.calls == ["https://clip.example"]


def test_no_authorization_header_when_id_token_is_off(token_fetcher: TokenFetcher) -> None:
    server = ScriptedServer(lambda request: httpx.Response(200, json=ANSWER))
    client = _client(EmbedderSettings(backend="torchserve"), server, token_fetcher=token_fetcher)
    asyncio.run(client.embed_texts(["a"]))
    assert "Authorization" not in server.requests[0].headers
    assert token_fetcher.calls == []
