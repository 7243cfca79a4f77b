"""The API in front of the real TorchServe: it waits for a model server that starts after it, serves
through it, answers 503 + Retry-After within its timeout while TorchServe hangs or is down, and
recovers by itself when TorchServe is back. One sequence, as an operator would live it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from model_server.servers import TorchServe

from fashion_clip.embedding import ClipEmbedder
from fashion_clip.errors import InvalidImage
from fashion_clip.images import decode_image

from .conftest import Api, api_env, decoder_and_client_errors, read_bundle, start_api

pytestmark = pytest.mark.slow

ITEM = "t-shirt-red-solid"
TIMEOUT_SECONDS = 3


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, index_bundle: Path, torchserve_process: TorchServe
) -> Iterator[Api]:
    """Started before TorchServe, pointing at where it will listen."""
    env = api_env(
        index_bundle,
        RECOMMENDER_EMBEDDER__BACKEND="torchserve",
        RECOMMENDER_EMBEDDER__URL=torchserve_process.url,
        RECOMMENDER_EMBEDDER__TIMEOUT_SECONDS=str(TIMEOUT_SECONDS),
    )
    api = start_api(tmp_path_factory.mktemp("ts-api"), env, ready=False)
    yield api
    api.stop()


def photo(catalog: Path) -> bytes:
    return (catalog / "images" / f"{ITEM}.jpg").read_bytes()


def test_through_torchserve_from_its_absence_to_its_return(
    api: Api, torchserve_process: TorchServe, catalog: Path, index_bundle: Path, tiny_model: Path
) -> None:
    ts = torchserve_process
    items, vectors, manifest = read_bundle(index_bundle)
    stored = dict(zip([item["id"] for item in items], vectors, strict=True))
    with api.client() as http:
        # 1. TorchServe not started yet: alive, not ready, saying why; queries refused as not ready.
        ready = http.get("/readyz")
        assert ready.status_code == 503 and ready.headers["Retry-After"] == "5"
        assert ready.json()["error"] == "not_ready"
        assert ready.json()["message"].startswith(
            f"The model side is not answering: Cannot reach the model server at {ts.url}: "
        )
        assert http.get("/healthz").status_code == 200
        assert http.get("/search", params={"q": "red"}).json()["error"] == "not_ready"

        # 2. TorchServe comes: the API becomes ready by itself, with TorchServe's model identity.
        ts.start()
        api.server.wait_http(f"{api.url}/readyz", timeout=60)
        assert http.get("/readyz").json() == {
            "status": "ready",
            "model_id": manifest["model"]["model_id"],
            "dim": 64,
            "items": len(items),
        }
        assert http.get("/info").json()["embedder"] == {"backend": "torchserve", "model_name": "clip"}

        # 3. Queries through TorchServe give the vectors the in-process model gave the index.
        recommend = http.post("/recommend", params={"k": 3}, files={"file": ("p.jpg", photo(catalog))})
        assert recommend.status_code == 200
        assert recommend.json()["items"][0]["id"] == ITEM
        assert recommend.json()["items"][0]["score"] == pytest.approx(1.0, abs=1e-4)
        predict = http.post("/predict", files={"file": ("p.jpg", photo(catalog))}).json()
        assert (predict["model_id"], predict["dim"]) == (manifest["model"]["model_id"], 64)
        assert np.allclose(predict["embedding"], stored[ITEM], atol=1e-4)
        text = ClipEmbedder(tiny_model, precision="fp32").encode_texts(["a red t-shirt"])[0]
        search = http.get("/search", params={"q": "a red t-shirt", "k": 4}).json()
        assert len(search["items"]) == 4
        for item in search["items"]:
            assert item["score"] == pytest.approx(float(text @ stored[item["id"]]), abs=1e-4)
        # A bad upload never reaches the model server and is refused as it would be locally.
        bad = http.post("/recommend", files={"file": ("x.jpg", b"not an image")})
        assert (bad.status_code, bad.json()["error"]) == (415, "unsupported_media_type")
        # A truncated photo passes the API's header check; TorchServe's decode refuses it and the API
        # answers the same 400 with our error shape, TorchServe's message ending in the decoder's own.
        truncated = photo(catalog)[:400]
        with pytest.raises(InvalidImage) as caught:
            decode_image(truncated)
        cut = http.post("/recommend", files={"file": ("cut.jpg", truncated)})
        assert cut.status_code == 400 and set(cut.json()) == {"error", "message"}
        assert cut.json()["error"] == "invalid_image"
        assert cut.json()["message"].endswith(caught.value.message)
        assert http.post("/predict", files={"file": ("cut.jpg", truncated)}).json() == cut.json()

        # 4. TorchServe hangs (SIGSTOP): 503 + Retry-After once the timeout has passed, not a hang.
        ts.pause()
        try:
            hung = http.post("/recommend", files={"file": ("p.jpg", photo(catalog))})
            assert (hung.status_code, hung.json()) == (
                503,
                {
                    "error": "model_server_unavailable",
                    "message": f"The model server at {ts.url} did not answer within {TIMEOUT_SECONDS} s.",
                },
            )
            assert hung.headers["Retry-After"] == "5"
            # Routes that need no model keep answering.
            assert http.get(f"/items/{ITEM}/similar").status_code == 200
        finally:
            ts.resume()
        api.server.wait_until(
            lambda: http.get("/search", params={"q": "red"}).status_code == 200, 60, "answers after SIGCONT"
        )

        # 5. TorchServe down: connection refused -> 503 at once; readiness keeps the index's verdict.
        ts.stop()
        down = http.get("/search", params={"q": "red"})
        assert down.status_code == 503 and down.headers["Retry-After"] == "5"
        assert down.json()["error"] == "model_server_unavailable"
        assert down.json()["message"].startswith(f"Cannot reach the model server at {ts.url}: ")
        assert http.get("/readyz").status_code == 200
        assert http.get(f"/items/{ITEM}").status_code == 200

        # 6. TorchServe back on the same address: the same API process answers again.
        ts.start()
        back = http.post("/recommend", params={"k": 3}, files={"file": ("p.jpg", photo(catalog))})
        assert back.status_code == 200
        assert back.json()["items"][0]["id"] == ITEM
    assert api.server.proc.poll() is None


def test_direct_client_error_mapping_against_real_torchserve(
    torchserve_process: TorchServe, catalog: Path
) -> None:
    """TorchServe's own answers to bad images reach the client as the domain errors the shared
    decoder raises in process, with the same messages."""
    if torchserve_process.server is None:
        torchserve_process.start()
    bad = [b"definitely not an image", photo(catalog)[:400]]
    expected, outcomes = decoder_and_client_errors("torchserve", torchserve_process.url, bad)
    assert [code for code, _ in expected] == ["unsupported_media_type", "invalid_image"]
    assert [code for code, _ in outcomes] == [code for code, _ in expected]
    for (_, got), (_, want) in zip(outcomes, expected, strict=True):
        assert got.endswith(want)  # the server may say which request element it was
    with httpx.Client() as raw:  # and the server is still serving afterwards
        assert raw.post(f"{torchserve_process.url}/predictions/clip", json={"text": "ok"}).status_code == 200


def test_a_batch_goes_as_concurrent_requests_that_torchserve_batches(
    torchserve_process: TorchServe, catalog: Path, index_bundle: Path
) -> None:
    """Four images from one `embed_images` call arrive inside the batching window and are encoded in
    one forward pass, each answer in its place."""
    import asyncio

    from fashion_clip.clients import EmbedderSettings, make_client

    if torchserve_process.server is None:
        torchserve_process.start()
    items, vectors, _ = read_bundle(index_bundle)
    ids = [item["id"] for item in items[:4]]
    photos = [(catalog / "images" / f"{item_id}.jpg").read_bytes() for item_id in ids]
    client = make_client(
        EmbedderSettings(backend="torchserve", url=torchserve_process.url, timeout_seconds=30)
    )

    async def scenario() -> np.ndarray:
        try:
            return await client.embed_images(photos)
        finally:
            await client.aclose()

    line = "batch of 4: 4 images, 0 texts, 0 rejected"
    before = torchserve_process.model_log().count(line)
    got = asyncio.run(scenario())
    assert np.allclose(got, vectors[:4], atol=1e-4)
    # The worker's log reaches the file through the Java frontend: wait for it, then count exactly.
    torchserve_process.server.wait_until(
        lambda: torchserve_process.model_log().count(line) > before, 30, "the batch logged"
    )
    assert torchserve_process.model_log().count(line) == before + 1
