"""TorchServeClient: the wire format of docs/contracts.md and every fault mapped to a domain error.

Answers a real TorchServe cannot be made to give on demand come from `ScriptedServer`; refused and
hung connections are real sockets. The client against the real TorchServe is in tests/recommender.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest

from fashion_clip.clients import make_client
from fashion_clip.clients.base import ModelInfo
from fashion_clip.clients.config import EmbedderSettings
from fashion_clip.clients.torchserve import INFO_PROBE_TEXT, TorchServeClient
from fashion_clip.errors import InvalidImage, InvalidInput, ModelServerUnavailable, UnsupportedMediaType

from .conftest import ScriptedServer


def answer(vector: list[float], **extra: object) -> dict:
    return {
        "embedding": vector,
        "dim": len(vector),
        "model": "tiny-clip",
        "model_id": "tiny-clip@abc",
        "untrained": True,
        **extra,
    }


def client_for(server: ScriptedServer, **settings: object) -> TorchServeClient:
    return TorchServeClient(EmbedderSettings(backend="torchserve", **settings), transport=server.transport())


def run(coro):
    return asyncio.run(coro)


def test_make_client_picks_torchserve() -> None:
    client = make_client(EmbedderSettings(backend="torchserve"))
    assert isinstance(client, TorchServeClient)
    run(client.aclose())


def test_one_request_per_image_raw_bytes_to_predictions_of_the_model() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        first = request.content[0]
        return httpx.Response(200, json=answer([float(first), 0.0, 1.0]))

    server = ScriptedServer(handler)
    client = client_for(server, url="http://ts.local:8080", model_name="clip")
    vectors = run(client.embed_images([b"\x01abc", b"\x02def", b"\x03ghi"]))
    assert vectors.dtype == np.float32
    assert vectors.tolist() == [[1.0, 0.0, 1.0], [2.0, 0.0, 1.0], [3.0, 0.0, 1.0]]  # in input order
    assert [str(r.url) for r in server.requests] == ["http://ts.local:8080/predictions/clip"] * 3
    assert sorted(r.content for r in server.requests) == [b"\x01abc", b"\x02def", b"\x03ghi"]
    assert {r.headers["Content-Type"] for r in server.requests} == {"application/octet-stream"}


def test_texts_are_json_and_info_reads_the_answer() -> None:
    server = ScriptedServer(lambda request: httpx.Response(200, json=answer([0.6, 0.8])))
    client = client_for(server)
    vectors = run(client.embed_texts(["red dress"]))
    info = run(client.info())
    assert vectors.tolist() == [[pytest.approx(0.6), pytest.approx(0.8)]]
    assert [json.loads(r.content) for r in server.requests] == [
        {"text": "red dress"},
        {"text": INFO_PROBE_TEXT},
    ]
    assert server.requests[0].headers["Content-Type"] == "application/json"
    assert info == ModelInfo(model_name="tiny-clip", model_id="tiny-clip@abc", dim=2, untrained=True)


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (
            400,
            {"error": "invalid_image", "message": "The image could not be decoded: truncated."},
            InvalidImage,
            "The image could not be decoded: truncated.",
        ),
        (
            400,
            {"error": "unsupported_media_type", "message": "Not an image."},
            UnsupportedMediaType,
            "Not an image.",
        ),
        (
            415,
            {"error": "unsupported_media_type", "message": "Unsupported image format EPS."},
            UnsupportedMediaType,
            "Unsupported image format EPS.",
        ),
        (400, {"code": 400, "type": "BadRequestException", "message": "bad"}, InvalidImage, "bad"),
    ],
)
def test_bad_image_answers_become_the_same_domain_error(
    status: int, body: dict, error: type, message: str
) -> None:
    server = ScriptedServer(lambda request: httpx.Response(status, json=body))
    with pytest.raises(error) as caught:
        run(client_for(server).embed_images([b"x"]))
    assert caught.value.message == message


def test_a_bad_text_is_invalid_input() -> None:
    server = ScriptedServer(
        lambda request: httpx.Response(400, json={"error": "invalid_input", "message": "Empty text."})
    )
    with pytest.raises(InvalidInput, match="^Empty text.$"):
        run(client_for(server).embed_texts([" "]))


def test_one_bad_image_in_a_batch_fails_the_batch_with_its_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.content == b"bad":
            return httpx.Response(400, json={"error": "invalid_image", "message": "broken"})
        return httpx.Response(200, json=answer([1.0, 0.0]))

    with pytest.raises(InvalidImage, match="^broken$"):
        run(client_for(ScriptedServer(handler)).embed_images([b"ok", b"bad", b"ok"]))


@pytest.mark.parametrize("status", [404, 500, 503, 507])
def test_server_side_failures_are_model_server_unavailable_with_retry_after(status: int) -> None:
    body = {
        "code": status,
        "type": "ServiceUnavailableException",
        "message": "Model clip has no worker to serve inference request.",
    }
    server = ScriptedServer(lambda request: httpx.Response(status, json=body, headers={"Retry-After": "7"}))
    with pytest.raises(ModelServerUnavailable) as caught:
        run(client_for(server).embed_images([b"x"]))
    assert (
        caught.value.message
        == f"The model server answered {status}: Model clip has no worker to serve inference request."
    )
    assert caught.value.retry_after == 7


def test_retry_after_defaults_to_five_seconds() -> None:
    server = ScriptedServer(lambda request: httpx.Response(500, text="boom"))
    with pytest.raises(ModelServerUnavailable) as caught:
        run(client_for(server).embed_texts(["a"]))
    assert (caught.value.message, caught.value.retry_after) == ("The model server answered 500: boom", 5)


@pytest.mark.parametrize(
    "body",
    [
        {"predictions": [1, 2]},
        {"embedding": [1.0, 2.0], "dim": 3, "model": "m", "model_id": "m@1", "untrained": False},
        {"embedding": "nope", "dim": 1},
    ],
)
def test_answers_off_the_wire_format_are_model_server_unavailable(body: dict) -> None:
    server = ScriptedServer(lambda request: httpx.Response(200, json=body))
    with pytest.raises(ModelServerUnavailable, match="sent an answer we cannot read"):
        run(client_for(server).embed_texts(["a"]))


def test_connection_refused_is_model_server_unavailable(refused_url: str) -> None:
    client = TorchServeClient(EmbedderSettings(backend="torchserve", url=refused_url, timeout_seconds=5))
    with pytest.raises(ModelServerUnavailable) as caught:
        run(client.embed_images([b"x"]))
    assert caught.value.message.startswith(f"Cannot reach the model server at {refused_url}: ")
    assert caught.value.retry_after == 5


def test_a_server_that_never_answers_is_cut_off_at_the_timeout(silent_url: str) -> None:
    client = TorchServeClient(EmbedderSettings(backend="torchserve", url=silent_url, timeout_seconds=0.5))
    with pytest.raises(ModelServerUnavailable) as caught:
        run(client.info())
    assert caught.value.message == f"The model server at {silent_url} did not answer within 0.5 s."
