"""The real KServe predictor process with the tiny model: v1 and v2 protocols, health, errors."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest
from model_server.servers import KServe, listening_sockets
from procs import LOOPBACK

from fashion_clip.embedding import ClipEmbedder
from fashion_clip.errors import InvalidImage
from fashion_clip.images import load_rgb

pytestmark = pytest.mark.slow

TEXTS = ["a red summer dress", "black leather boots"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def post(served: KServe, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{served.url}{path}", json=body, timeout=60)


def v2_body(content_type: str, data: list[str]) -> dict:
    return {
        "id": "req-1",
        "inputs": [
            {
                "name": "input",
                "datatype": "BYTES",
                "shape": [len(data)],
                "parameters": {"content_type": content_type},
                "data": data,
            }
        ],
    }


def assert_unit_rows_match(vectors: np.ndarray, expected: np.ndarray) -> None:
    assert vectors.shape == expected.shape == (len(expected), 64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors, expected, atol=1e-4)


def test_v1_images_and_texts_in_one_request(kserve_predictor, reference: ClipEmbedder, jpeg_bytes):
    instances = [{"b64": b64(jpeg_bytes[0])}, {"text": TEXTS[0]}, {"b64": b64(jpeg_bytes[1])}]
    response = post(kserve_predictor, "/v1/models/clip:predict", {"instances": instances})
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"predictions"}
    vectors = np.asarray(response.json()["predictions"])
    images = reference.encode_images([load_rgb(jpeg_bytes[0]), load_rgb(jpeg_bytes[1])])
    text = reference.encode_texts(TEXTS[:1])
    assert_unit_rows_match(vectors, np.stack([images[0], text[0], images[1]]))


def test_a_large_jpeg_is_decoded_at_the_models_input_size(
    kserve_predictor, reference: ClipEmbedder, large_jpeg: bytes
):
    data = large_jpeg
    response = post(kserve_predictor, "/v1/models/clip:predict", {"instances": [{"b64": b64(data)}]})
    assert response.status_code == 200, response.text
    expected = reference.encode_images([load_rgb(data, min_size=reference.input_size)])
    assert_unit_rows_match(np.asarray(response.json()["predictions"]), expected)
    assert np.abs(expected - reference.encode_images([load_rgb(data)])).max() > 1e-3


def test_v2_images(kserve_predictor, reference: ClipEmbedder, jpeg_bytes):
    response = post(kserve_predictor, "/v2/models/clip/infer", v2_body("image", [b64(b) for b in jpeg_bytes]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == "clip"
    assert body["id"] == "req-1"
    assert body["parameters"] == {
        "model": "tiny-clip",
        "model_id": reference.manifest.model_id,
        "untrained": True,
    }
    (output,) = body["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("embedding", "FP32", [4, 64])
    vectors = np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
    assert_unit_rows_match(vectors, reference.encode_images([load_rgb(b) for b in jpeg_bytes]))


def test_v2_texts(kserve_predictor, reference: ClipEmbedder):
    response = post(kserve_predictor, "/v2/models/clip/infer", v2_body("text", TEXTS))
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output["shape"] == [2, 64]
    vectors = np.asarray(output["data"], dtype=np.float32).reshape(2, 64)
    assert_unit_rows_match(vectors, reference.encode_texts(TEXTS))


def test_health_routes(kserve_predictor):
    url = kserve_predictor.url
    expected = {
        "/": {"status": "alive"},
        "/v2/health/live": {"live": True},
        "/v2/health/ready": {"ready": True},
        "/v2/models/clip/ready": {"name": "clip", "ready": True},
        "/v1/models/clip": {"name": "clip", "ready": True},
    }
    for path, body in expected.items():
        response = httpx.get(f"{url}{path}", timeout=10)
        assert (path, response.status_code, response.json()) == (path, 200, body)


def test_v2_metadata_describes_the_wire_format(kserve_predictor):
    response = httpx.get(f"{kserve_predictor.url}/v2/models/clip", timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["inputs"] == [{"name": "input", "datatype": "BYTES", "shape": [-1]}]
    assert body["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, 64]}]


def test_a_bad_image_is_400_naming_the_instance(kserve_predictor, jpeg_bytes, truncated_jpeg):
    with pytest.raises(InvalidImage) as in_process:
        load_rgb(truncated_jpeg)
    instances = [{"b64": b64(jpeg_bytes[0])}, {"b64": b64(truncated_jpeg)}]
    v1 = post(kserve_predictor, "/v1/models/clip:predict", {"instances": instances})
    assert v1.status_code == 400
    assert v1.json() == {"error": "invalid_image", "message": f"instances[1]: {in_process.value.message}"}

    v2 = post(kserve_predictor, "/v2/models/clip/infer", v2_body("image", [b64(truncated_jpeg)]))
    assert v2.status_code == 400
    assert v2.json() == {"error": "invalid_image", "message": f"input[0]: {in_process.value.message}"}


@pytest.mark.parametrize(
    ("path", "body", "error", "message"),
    [
        (
            "/v1/models/clip:predict",
            {"instances": [{"b64": b64(b"%PDF-1.4")}]},
            "unsupported_media_type",
            "instances[0]: The data is not an image Pillow can identify.",
        ),
        (
            "/v1/models/clip:predict",
            {"instances": [{"url": "http://x"}]},
            "invalid_input",
            'instances[0]: expected {"b64": "<base64 image>"} or {"text": "..."}.',
        ),
        (
            "/v1/models/clip:predict",
            {"instances": []},
            "invalid_input",
            'Expected {"instances": [{"b64": ...} | {"text": ...}, ...]}.',
        ),
        (
            "/v2/models/clip/infer",
            {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1], "data": ["x"]}]},
            "invalid_input",
            "Input 'input' needs parameter content_type 'image' or 'text', got None.",
        ),
        (
            "/v2/models/clip/infer",
            v2_body("text", [" "]),
            "invalid_input",
            "input[0]: texts must be non-empty strings.",
        ),
    ],
    ids=["v1-not-an-image", "v1-no-field", "v1-empty", "v2-no-content-type", "v2-blank-text"],
)
def test_bad_requests_are_400_with_the_error_shape(kserve_predictor, path, body, error, message):
    response = post(kserve_predictor, path, body)
    assert response.status_code == 400
    assert response.json() == {"error": error, "message": message}


def test_only_the_rest_port_listens_on_loopback(kserve_predictor):
    """--http_host is honoured and gRPC is off unless asked for: one listener, on loopback."""
    assert listening_sockets(kserve_predictor.server.proc.pid) == [(LOOPBACK, kserve_predictor.port)]
