"""Seams of the remote clients: a scripted model server at the httpx transport, an ID-token fetcher,
a clock, and real sockets for the failures that need no server logic (refused, never answering)."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from procs import LOOPBACK, free_port


def fake_jwt(exp: float, sub: str = "test") -> str:
    """A JWT-shaped token with an `exp` claim; unsigned, as only the client reads it here."""

    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part({'exp': int(exp), 'sub': sub})}.c2ln"


@dataclass
class ScriptedServer:
    """Answers each request with `handler(request)` and keeps the requests for inspection.

    A stand-in for the model server's HTTP answers that a real server cannot be made to give on
    demand (a 500, a malformed body); the real TorchServe and KServe paths are covered in
    tests/recommender.
    """

    handler: Callable[[httpx.Request], httpx.Response]
    requests: list[httpx.Request] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        def record(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return self.handler(request)

        return httpx.MockTransport(record)


@dataclass
class Clock:
    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class TokenFetcher:
    """Stands in for google-auth's metadata-server fetch, which cannot run outside Google Cloud."""

    clock: Clock
    lifetime: float = 3600.0
    calls: list[str] = field(default_factory=list)

    def __call__(self, audience: str) -> str:
        self.calls.append(audience)
        return fake_jwt(self.clock() + self.lifetime, sub=f"token-{len(self.calls)}")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def token_fetcher(clock: Clock) -> TokenFetcher:
    return TokenFetcher(clock)


@pytest.fixture
def refused_url() -> str:
    """A loopback port nobody listens on: connecting is refused."""
    return f"http://{LOOPBACK}:{free_port()}"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A loopback port that accepts connections and never answers: a hung model server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen(16)
        yield f"http://{LOOPBACK}:{sock.getsockname()[1]}"
