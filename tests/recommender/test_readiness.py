"""Start-up with an index the model did not make: alive, never ready, and saying why everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fashion_clip.clients.base import ModelInfo
from fashion_clip.index.bundle import IndexBundle
from recommender.index import mismatch

from .conftest import api_env, start_api

pytestmark = pytest.mark.slow


def expected_reason(bundle_path: Path, tiny_model: Path) -> str:
    from fashion_clip.modeldir import read_manifest

    manifest = read_manifest(tiny_model)
    model = ModelInfo(
        model_name=manifest.model_name, model_id=manifest.model_id, dim=manifest.embed_dim, untrained=True
    )
    bundle = IndexBundle.load(bundle_path)
    try:
        return mismatch(bundle, model)
    finally:
        bundle.close()


@pytest.mark.parametrize("variant", ["other_model_bundle", "other_dim_bundle"])
def test_a_mismatched_index_keeps_the_api_unready_with_the_reason(
    variant: str, request: pytest.FixtureRequest, tiny_model: Path, tmp_path: Path
) -> None:
    bundle_path = request.getfixturevalue(variant)
    reason = expected_reason(bundle_path.resolve(), tiny_model)
    api = start_api(tmp_path, api_env(bundle_path, tiny_model), ready=False)  # no admin token
    try:
        with api.client() as http:
            not_ready = (503, {"error": "not_ready", "message": reason})
            api.server.wait_until(lambda: http.get("/info").json()["model"] is not None, 120, "model loaded")
            ready = http.get("/readyz")
            assert (ready.status_code, ready.json()) == not_ready
            assert ready.headers["Retry-After"] == "5"
            info = http.get("/info").json()
            assert (info["ready"], info["reason"], info["index"]["model"]["model_id"]) == (
                False,
                reason,
                json.loads((bundle_path / "manifest.json").read_text())["model"]["model_id"],
            )
            assert http.get("/healthz").status_code == 200
            recommend = http.post("/recommend", files={"file": ("p.jpg", b"x")})
            assert (recommend.status_code, recommend.json()) == not_ready
            assert (http.get("/categories").status_code, http.get("/categories").json()) == not_ready
            assert http.post("/admin/reload").json() == {
                "error": "forbidden",
                "message": "Admin routes are disabled: set RECOMMENDER_ADMIN_TOKEN to enable them.",
            }
    finally:
        api.stop()
    assert f"refusing to become ready: {reason}" in api.server.log()
