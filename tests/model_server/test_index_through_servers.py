"""The index builder through a running model server: the CLI against the real TorchServe (REST) and
the real KServe predictor (OIP v2) gives the bundle the in-process model gives."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fashion_clip.index import IndexBundle

pytestmark = pytest.mark.slow


def build_through(backend: str, url: str, catalog: Path, dest: Path, model_dir: Path) -> None:
    command = [
        sys.executable, "-m", "fashion_clip.index.build", str(catalog),
        "--out", str(dest), "--backend", backend, "--url", url,
        "--model-dir", str(model_dir), "--batch-size", "16", "--trees", "20", "--no-progress",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr


def assert_same_as_in_process(built: Path, tiny_index: Path) -> None:
    with IndexBundle.load(built) as remote, IndexBundle.load(tiny_index) as local:
        assert remote.model == local.model
        assert remote.manifest["item_count"] == local.manifest["item_count"] == 360
        assert remote.manifest["skipped"] == []
        assert remote.ids() == local.ids()
        remote_vectors = np.stack([remote.vector(i) for i in remote.ids()])
        local_vectors = np.stack([local.vector(i) for i in local.ids()])
    np.testing.assert_allclose(np.linalg.norm(remote_vectors, axis=1), 1.0, atol=1e-5)
    assert float((remote_vectors * local_vectors).sum(axis=1).min()) > 0.9999


def test_index_built_through_torchserve(torchserve, sample_catalog, tiny_index, tiny_model, tmp_path):
    build_through("torchserve", torchserve.url, sample_catalog, tmp_path / "index", tiny_model)
    assert_same_as_in_process(tmp_path / "index", tiny_index)


def test_index_built_through_kserve(kserve_predictor, sample_catalog, tiny_index, tiny_model, tmp_path):
    build_through("kserve", kserve_predictor.url, sample_catalog, tmp_path / "index", tiny_model)
    assert_same_as_in_process(tmp_path / "index", tiny_index)
