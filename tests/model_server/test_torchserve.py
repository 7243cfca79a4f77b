"""The real TorchServe with the tiny .mar: wire format, batching, per-request errors, listeners."""

from __future__ import annotations

import base64
import io
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import psutil
import pytest
from model_server.servers import TorchServe, java_pid, listening_sockets
from PIL import Image
from procs import LOOPBACK

from fashion_clip.embedding import ClipEmbedder
from fashion_clip.errors import InvalidImage, UnsupportedMediaType
from fashion_clip.images import load_rgb

pytestmark = pytest.mark.slow

OCTET = {"Content-Type": "application/octet-stream"}


def predict(served: TorchServe, **kwargs) -> httpx.Response:
    return httpx.post(f"{served.url}/predictions/clip", timeout=60, **kwargs)


def assert_answer(response: httpx.Response, expected: np.ndarray) -> None:
    assert response.status_code == 200, response.text
    # The handler's own compact JSON, not TorchServe's indented dump of a dict.
    assert response.headers["content-type"] == "application/json"
    assert b"\n" not in response.content and b", " not in response.content
    body = response.json()
    assert set(body) == {"embedding", "dim", "model", "model_id", "untrained"}
    vector = np.asarray(body["embedding"], dtype=np.float64)
    assert body["dim"] == vector.shape[0] == 64
    assert abs(np.linalg.norm(vector) - 1.0) <= 1e-5
    np.testing.assert_allclose(vector, expected, atol=1e-4)


def test_image_bytes_give_the_in_process_vector(torchserve, reference: ClipEmbedder, jpeg_bytes):
    expected = reference.encode_images([load_rgb(jpeg_bytes[0])])[0]
    response = predict(torchserve, content=jpeg_bytes[0], headers=OCTET)
    assert_answer(response, expected)
    body = response.json()
    assert body["model"] == "tiny-clip"
    assert body["model_id"] == reference.manifest.model_id
    assert body["untrained"] is True
    # MODEL_SERVER_* reached the worker: the precision and thread count the fixture asked for.
    ready = f"clip handler ready: {reference.manifest.model_id}, dim 64, fp32, 1 threads"
    assert ready in torchserve.model_log()
    assert "MODEL_SERVER_MODEL_NAME is" not in torchserve.model_log()


def test_a_large_jpeg_is_decoded_at_the_models_input_size(
    torchserve, reference: ClipEmbedder, large_jpeg: bytes
):
    """1200x900 decodes at 1/4 scale in the DCT (300x225, still over the model's 224): the served
    vector is the in-process vector of that decode, which the full decode's is told apart from."""
    data = large_jpeg
    scaled = reference.encode_images([load_rgb(data, min_size=reference.input_size)])[0]
    full = reference.encode_images([load_rgb(data)])[0]
    assert np.abs(scaled - full).max() > 1e-3
    assert_answer(predict(torchserve, content=data, headers=OCTET), scaled)


def test_base64_json_image_gives_the_same_vector(torchserve, reference: ClipEmbedder, jpeg_bytes):
    raw = predict(torchserve, content=jpeg_bytes[1], headers=OCTET)
    as_json = predict(torchserve, json={"b64": base64.b64encode(jpeg_bytes[1]).decode()})
    assert_answer(as_json, reference.encode_images([load_rgb(jpeg_bytes[1])])[0])
    assert as_json.json()["embedding"] == raw.json()["embedding"]


def test_text_gives_the_in_process_text_vector(torchserve, reference: ClipEmbedder):
    response = predict(torchserve, json={"text": "a red summer dress"})
    assert_answer(response, reference.encode_texts(["a red summer dress"])[0])


def test_png_with_alpha_is_flattened_like_in_process(torchserve, reference: ClipEmbedder):
    """The server decodes through `load_rgb`, so a transparent PNG matches the in-process vector."""
    rgba = np.zeros((90, 70, 4), dtype=np.uint8)
    rgba[20:70, 15:55] = (200, 30, 60, 255)
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, "PNG")
    response = predict(torchserve, content=buffer.getvalue(), headers={"Content-Type": "image/png"})
    assert_answer(response, reference.encode_images([load_rgb(buffer.getvalue())])[0])


def test_eight_concurrent_requests_all_succeed(torchserve, reference: ClipEmbedder, jpeg_bytes):
    bodies = [jpeg_bytes[i % len(jpeg_bytes)] for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda body: predict(torchserve, content=body, headers=OCTET), bodies))
    expected = reference.encode_images([load_rgb(body) for body in bodies])
    for response, vector in zip(responses, expected, strict=True):
        assert_answer(response, vector)


def test_a_truncated_image_fails_alone_in_its_batch(
    torchserve, reference: ClipEmbedder, jpeg_bytes, truncated_jpeg
):
    """Sent together (inside the batching window), one bad image gets 400; its batch mates get 200."""
    requests = [
        {"content": jpeg_bytes[2], "headers": OCTET},
        {"content": truncated_jpeg, "headers": OCTET},
        {"json": {"text": "black leather boots"}},
        {"json": {"b64": base64.b64encode(jpeg_bytes[3]).decode()}},
    ]
    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        responses = list(pool.map(lambda kwargs: predict(torchserve, **kwargs), requests))

    with pytest.raises(InvalidImage) as in_process:
        load_rgb(truncated_jpeg)
    assert in_process.value.message.startswith("The image could not be decoded: image file is truncated")
    assert responses[1].status_code == 400
    assert responses[1].json() == {"error": "invalid_image", "message": in_process.value.message}
    assert_answer(responses[0], reference.encode_images([load_rgb(jpeg_bytes[2])])[0])
    assert_answer(responses[2], reference.encode_texts(["black leather boots"])[0])
    assert_answer(responses[3], reference.encode_images([load_rgb(jpeg_bytes[3])])[0])
    # The handler logs each batch: all four went through one forward, images and text together.
    assert "batch of 4: 2 images, 1 texts, 1 rejected" in torchserve.model_log()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"content": b"%PDF-1.4 a document", "headers": OCTET},
            "unsupported_media_type",
            "The data is not an image Pillow can identify.",
        ),
        ({"json": {"text": "  "}}, "invalid_input", "'text' must be a non-empty string."),
        ({"json": {"b64": "***"}}, "invalid_input", "'b64' is not valid base64: "),
        (
            {"json": {"url": "http://x"}},
            "invalid_input",
            "The JSON object needs a 'b64' (image) or a 'text' field.",
        ),
        (
            {"content": b"red dress", "headers": {"Content-Type": "text/plain"}},
            "invalid_input",
            'Send a text query as JSON {"text": "..."} and an image as raw bytes.',
        ),
    ],
    ids=["not-an-image", "blank-text", "bad-base64", "no-field", "plain-text"],
)
def test_bad_requests_answer_400_with_the_error_shape(torchserve, kwargs, error, message):
    response = predict(torchserve, **kwargs)
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == error
    # base64's own wording follows the Python version; the rest is ours, word for word.
    assert body["message"].startswith(message) if message.endswith(": ") else body["message"] == message


def test_the_model_is_registered_with_the_shipped_batching(torchserve):
    response = httpx.get(f"{torchserve.management_url}/models/clip", timeout=10)
    assert response.status_code == 200
    (model,) = response.json()
    assert (model["batchSize"], model["minWorkers"], model["maxWorkers"]) == (8, 1, 1)
    assert model["maxBatchDelay"] == 1000  # the test's rewrite of the shipped 2 ms
    assert [worker["status"] for worker in model["workers"]] == ["READY"]


def test_the_model_registration_api_is_off(torchserve):
    response = httpx.post(f"{torchserve.management_url}/models", params={"url": "clip.mar"}, timeout=10)
    assert response.status_code == 405
    assert response.json()["type"] == "MethodNotAllowedException"


def test_management_and_grpc_listen_on_loopback_only(torchserve):
    """Management and gRPC keep the shipped loopback binding; inference and metrics were moved to
    loopback by TS_* variables, which also proves enable_envvars_config is on."""
    sockets = listening_sockets(java_pid(torchserve.server.proc.pid))
    ports = torchserve.ports
    assert sockets == sorted(
        (LOOPBACK, ports[name]) for name in ("inference", "management", "metrics", "grpc_i", "grpc_m")
    )


def test_ping_and_prometheus_metrics(torchserve):
    ping = httpx.get(f"{torchserve.url}/ping", timeout=10)
    assert (ping.status_code, ping.json()) == (200, {"status": "Healthy"})
    metrics = httpx.get(f"{torchserve.metrics_url}/metrics", timeout=10)
    assert metrics.status_code == 200
    assert "ts_inference_requests_total" in metrics.text


def shipped_vmargs(repo_root) -> list[str]:
    text = (repo_root / "model-server" / "config.properties").read_text()
    (line,) = [line for line in text.splitlines() if line.startswith("vmargs=")]
    return line.removeprefix("vmargs=").split()


def test_the_jvm_runs_with_the_shipped_memory_bounds(torchserve, repo_root):
    args = psutil.Process(java_pid(torchserve.server.proc.pid)).cmdline()
    vmargs = shipped_vmargs(repo_root)
    assert {
        "-XX:+UseSerialGC",
        "-Xmx512m",
        "-Dio.netty.allocator.maxOrder=7",
        "-XX:MaxDirectMemorySize=256m",
        "-XX:+ExitOnOutOfMemoryError",
    } <= set(vmargs)
    # In order, before the main class: the launcher passed the config's line to java unchanged.
    start = args.index(vmargs[0])
    assert args[start : start + len(vmargs)] == vmargs
    assert args.index("org.pytorch.serve.ModelServer") > start


def test_a_burst_of_large_bodies_is_answered_and_the_server_stays_up(torchserve, reference, jpeg_bytes):
    """48 bodies just under 10 MiB (the API's upload limit) that are not images, from 16 clients at
    once: more than the API tier keeps in flight. Every one gets its 400; the JVM (bounded heap, see
    config.properties; 128 MiB did not survive this) is the same process afterwards and the next
    real image is answered."""
    java = java_pid(torchserve.server.proc.pid)
    body = b"\xff\xd8\xff\xe0" + bytes(range(256)) * (10 * 2**20 // 256 - 1)
    assert len(body) < 10 * 2**20

    def send(_: int) -> httpx.Response:
        return predict(torchserve, content=body, headers=OCTET)

    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(send, range(48)))
    with pytest.raises(UnsupportedMediaType) as in_process:
        load_rgb(body)
    assert {response.status_code for response in responses} == {400}
    assert {response.text for response in responses} == {
        json.dumps(
            {"error": in_process.value.code, "message": in_process.value.message}, separators=(",", ":")
        )
    }
    assert java_pid(torchserve.server.proc.pid) == java
    assert_answer(
        predict(torchserve, content=jpeg_bytes[0], headers=OCTET),
        reference.encode_images([load_rgb(jpeg_bytes[0])])[0],
    )
