"""Model-server fixtures: the real TorchServe and the real KServe predictor on loopback, with the tiny
CLIP, and the same model in process to compare their vectors with."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from model_server.servers import KServe, TorchServe
from PIL import Image
from procs import LOOPBACK, Server, free_port

from fashion_clip.embedding import ClipEmbedder


@pytest.fixture(scope="session")
def reference(tiny_model: Path) -> ClipEmbedder:
    """The tiny model in process, at the precision the servers under test are told to use."""
    return ClipEmbedder(tiny_model, precision="fp32")


@pytest.fixture(scope="session")
def jpeg_bytes() -> list[bytes]:
    rng = np.random.default_rng(11)
    images = []
    for width, height in [(200, 160), (256, 256), (120, 300), (224, 224)]:
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, "JPEG")
        images.append(buffer.getvalue())
    return images


@pytest.fixture(scope="session")
def large_jpeg() -> bytes:
    """1200x900 noise: a JPEG large enough for a scaled decode (see `load_rgb`'s `min_size`)."""
    buffer = io.BytesIO()
    pixels = np.random.default_rng(3).integers(0, 256, (900, 1200, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def truncated_jpeg(jpeg_bytes: list[bytes]) -> bytes:
    return jpeg_bytes[0][: len(jpeg_bytes[0]) // 2]


@pytest.fixture(scope="module")
def torchserve(
    tiny_mar: Path, java: str, venv_bin: Path, repo_root: Path, tmp_path_factory
) -> Iterator[TorchServe]:
    """The real TorchServe, started as the image starts it but with every listener on loopback."""
    served = TorchServe(tmp_path_factory.mktemp("torchserve"), tiny_mar, venv_bin, repo_root)
    try:
        served.start()
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def kserve_predictor(tiny_model: Path, venv_bin: Path, repo_root: Path, tmp_path_factory) -> Iterator[KServe]:
    """The real KServe predictor process, gRPC left at its default (off), REST on loopback."""
    workdir = tmp_path_factory.mktemp("kserve")
    port = free_port()
    env = {
        "MODEL_SERVER_MODEL_DIR": str(tiny_model),
        "MODEL_SERVER_PRECISION": "fp32",
        "MODEL_SERVER_THREADS": "1",
    }
    command = [
        str(venv_bin / "python"),
        str(repo_root / "model-server" / "kserve_predictor.py"),
        "--http_host",
        LOOPBACK,
        "--http_port",
        str(port),
    ]
    server = Server(command, workdir / "kserve.out", env=env, cwd=workdir)
    try:
        server.wait_http(f"http://{LOOPBACK}:{port}/v2/health/ready", timeout=120)
        yield KServe(url=f"http://{LOOPBACK}:{port}", port=port, server=server)
    finally:
        server.stop()
