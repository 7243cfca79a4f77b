"""KServeClient: one OIP v2 request per batch, the answer's shape and parameters, faults mapped.

Scripted answers stand in for the predictor here; the real predictor process is in tests/recommender.
"""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest

from fashion_clip.clients import make_client
from fashion_clip.clients.base import ModelInfo
from fashion_clip.clients.config import EmbedderSettings
from fashion_clip.clients.kserve import KServeClient
from fashion_clip.errors import InvalidImage, InvalidInput, ModelServerUnavailable, UnsupportedMediaType

from .conftest import ScriptedServer

PARAMETERS = {"model": "tiny-clip", "model_id": "tiny-clip@abc", "untrained": True}


def infer_answer(rows: list[list[float]], parameters: dict | None = PARAMETERS) -> dict:
    body = {
        "model_name": "clip",
        "outputs": [
            {
                "name": "embedding",
                "shape": [len(rows), len(rows[0])],
                "datatype": "FP32",
                "data": [x for row in rows for x in row],
            }
        ],
    }
    if parameters is not None:
        body["parameters"] = parameters
    return body


def client_for(server: ScriptedServer, **settings: object) -> KServeClient:
    return KServeClient(EmbedderSettings(backend="kserve", **settings), transport=server.transport())


def test_make_client_picks_kserve() -> None:
    client = make_client(EmbedderSettings(backend="kserve"))
    assert isinstance(client, KServeClient)
    asyncio.run(client.aclose())


def test_a_batch_of_images_is_one_v2_request_with_base64_bytes() -> None:
    server = ScriptedServer(lambda request: httpx.Response(200, json=infer_answer([[1.0, 0.0], [0.0, 1.0]])))
    client = client_for(server, url="http://kserve.local:8080", model_name="clip")
    vectors = asyncio.run(client.embed_images([b"one", b"two"]))
    assert vectors.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert [str(r.url) for r in server.requests] == ["http://kserve.local:8080/v2/models/clip/infer"]
    assert server.requests[0].headers["Content-Type"] == "application/json"
    assert json.loads(server.requests[0].content) == {
        "inputs": [
            {
                "name": "input",
                "shape": [2],
                "datatype": "BYTES",
                "data": [base64.b64encode(b"one").decode(), base64.b64encode(b"two").decode()],
                "parameters": {"content_type": "image"},
            }
        ]
    }


def test_texts_and_info() -> None:
    server = ScriptedServer(lambda request: httpx.Response(200, json=infer_answer([[0.6, 0.8]])))
    client = client_for(server)
    vectors = asyncio.run(client.embed_texts(["red dress"]))
    info = asyncio.run(client.info())
    sent = json.loads(server.requests[0].content)["inputs"][0]
    assert (sent["data"], sent["parameters"]) == (["red dress"], {"content_type": "text"})
    assert vectors.shape == (1, 2)
    assert info == ModelInfo(model_name="tiny-clip", model_id="tiny-clip@abc", dim=2, untrained=True)


def test_info_without_parameters_is_model_server_unavailable() -> None:
    server = ScriptedServer(lambda request: httpx.Response(200, json=infer_answer([[1.0]], parameters=None)))
    with pytest.raises(ModelServerUnavailable, match="no model identity in the response parameters"):
        asyncio.run(client_for(server).info())


@pytest.mark.parametrize(
    ("status", "body", "texts", "error", "message"),
    [
        (400, {"error": "invalid_image", "message": "truncated"}, False, InvalidImage, "truncated"),
        (
            415,
            {"error": "unsupported_media_type", "message": "not an image"},
            False,
            UnsupportedMediaType,
            "not an image",
        ),
        (400, {"error": "Invalid input: bad base64"}, False, InvalidImage, "Invalid input: bad base64"),
        (400, {"error": "Empty text"}, True, InvalidInput, "Empty text"),
    ],
)
def test_bad_input_answers(status: int, body: dict, texts: bool, error: type, message: str) -> None:
    server = ScriptedServer(lambda request: httpx.Response(status, json=body))
    client = client_for(server)
    call = client.embed_texts(["x"]) if texts else client.embed_images([b"x"])
    with pytest.raises(error) as caught:
        asyncio.run(call)
    assert caught.value.message == message


def test_server_error_is_model_server_unavailable() -> None:
    server = ScriptedServer(lambda request: httpx.Response(500, json={"error": "model not ready"}))
    with pytest.raises(ModelServerUnavailable) as caught:
        asyncio.run(client_for(server).embed_images([b"x"]))
    assert caught.value.message == "The model server answered 500: model not ready"


@pytest.mark.parametrize(
    "body",
    [
        {"outputs": []},
        {"outputs": [{"name": "embedding", "shape": [2, 2], "datatype": "FP32", "data": [1.0, 2.0]}]},
        {"outputs": [{"name": "embedding", "shape": [3, 1], "datatype": "FP32", "data": [1.0, 2.0, 3.0]}]},
    ],
)
def test_outputs_off_the_contract_are_model_server_unavailable(body: dict) -> None:
    server = ScriptedServer(lambda request: httpx.Response(200, json=body))
    with pytest.raises(ModelServerUnavailable, match="sent an answer we cannot read"):
        asyncio.run(client_for(server).embed_images([b"a", b"b"]))


def test_connection_refused(refused_url: str) -> None:
    client = KServeClient(EmbedderSettings(backend="kserve", url=refused_url))
    with pytest.raises(ModelServerUnavailable, match="^Cannot reach the model server"):
        asyncio.run(client.embed_texts(["a"]))


def test_timeout(silent_url: str) -> None:
    client = KServeClient(EmbedderSettings(backend="kserve", url=silent_url, timeout_seconds=0.3))
    with pytest.raises(ModelServerUnavailable, match=r"did not answer within 0\.3 s\.$"):
        asyncio.run(client.embed_texts(["a"]))
