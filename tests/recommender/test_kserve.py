"""The API in front of the real KServe predictor process (OIP v2): serves through it, 503 while it is
down, and answers again when it is back, without restarting the API."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from procs import LOOPBACK, Server, free_port

from .conftest import Api, api_env, decoder_and_client_errors, read_bundle, start_api

pytestmark = pytest.mark.slow

ITEM = "t-shirt-red-solid"


class Predictor:
    def __init__(self, workdir: Path, tiny_model: Path, repo_root: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.command = [
            sys.executable,
            str(repo_root / "model-server" / "kserve_predictor.py"),
            "--http_host",
            LOOPBACK,
            "--http_port",
            str(self.port),
        ]
        self.env = {
            "MODEL_SERVER_MODEL_DIR": str(tiny_model),
            "MODEL_SERVER_PRECISION": "fp32",
            "MODEL_SERVER_THREADS": "1",
        }
        self.server: Server | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.server = Server(
            self.command, self.workdir / f"kserve-{self.starts}.out", env=self.env, cwd=self.workdir
        )
        self.server.wait_http(f"{self.url}/v2/models/clip/ready", timeout=120)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture(scope="module")
def predictor(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, repo_root: Path
) -> Iterator[Predictor]:
    predictor = Predictor(tmp_path_factory.mktemp("kserve"), tiny_model, repo_root)
    predictor.start()
    yield predictor
    predictor.stop()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, index_bundle: Path, predictor: Predictor) -> Iterator[Api]:
    env = api_env(
        index_bundle,
        RECOMMENDER_EMBEDDER__BACKEND="kserve",
        RECOMMENDER_EMBEDDER__URL=predictor.url,
        RECOMMENDER_EMBEDDER__TIMEOUT_SECONDS="5",
    )
    api = start_api(tmp_path_factory.mktemp("kserve-api"), env)
    yield api
    api.stop()


def test_queries_through_kserve_and_recovery(
    api: Api, predictor: Predictor, catalog: Path, index_bundle: Path
) -> None:
    items, vectors, manifest = read_bundle(index_bundle)
    stored = dict(zip([item["id"] for item in items], vectors, strict=True))
    photo = (catalog / "images" / f"{ITEM}.jpg").read_bytes()
    with api.client() as http:
        assert http.get("/readyz").json()["model_id"] == manifest["model"]["model_id"]
        assert http.get("/info").json()["embedder"] == {"backend": "kserve", "model_name": "clip"}

        recommend = http.post("/recommend", params={"k": 3}, files={"file": ("p.jpg", photo)})
        assert recommend.status_code == 200
        assert recommend.json()["items"][0]["id"] == ITEM
        assert recommend.json()["items"][0]["score"] == pytest.approx(1.0, abs=1e-4)
        predict = http.post("/predict", files={"file": ("p.jpg", photo)}).json()
        assert (predict["model_id"], predict["dim"], predict["untrained"]) == (
            manifest["model"]["model_id"],
            64,
            True,
        )
        assert np.allclose(predict["embedding"], stored[ITEM], atol=1e-4)
        search = http.get("/search", params={"q": "a red t-shirt", "k": 5, "category": "dress"}).json()
        assert [item["category"] for item in search["items"]] == ["dress"] * 5

        predictor.stop()
        down = http.post("/recommend", files={"file": ("p.jpg", photo)})
        assert (down.status_code, down.json()["error"], down.headers["Retry-After"]) == (
            503,
            "model_server_unavailable",
            "5",
        )
        assert down.json()["message"].startswith(f"Cannot reach the model server at {predictor.url}: ")

        predictor.start()
        assert http.get("/search", params={"q": "a red t-shirt"}).status_code == 200
    assert api.server.proc.poll() is None


def test_the_predictors_bad_image_answers_map_to_domain_errors(predictor: Predictor, catalog: Path) -> None:
    bad = [b"definitely not an image", (catalog / "images" / f"{ITEM}.jpg").read_bytes()[:400]]
    expected, outcomes = decoder_and_client_errors("kserve", predictor.url, bad)
    assert (
        [code for code, _ in outcomes]
        == [code for code, _ in expected]
        == ["unsupported_media_type", "invalid_image"]
    )
    for (_, got), (_, want) in zip(outcomes, expected, strict=True):
        assert got.endswith(want)  # the predictor prefixes which element was bad
