"""What ships: config.properties' choices, the Dockerfile (hadolint-clean, the contract's paths)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

MODEL_SERVER = Path(__file__).resolve().parents[2] / "model-server"


def java_properties(path: Path) -> dict[str, str]:
    """key=value lines with Java's `\\` line continuations joined, comments skipped."""
    joined = re.sub(r"\\\n\s*", "", path.read_text())
    props = {}
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")):
            key, _, value = line.partition("=")
            props[key.strip()] = value.strip()
    return props


@pytest.fixture(scope="module")
def props() -> dict[str, str]:
    return java_properties(MODEL_SERVER / "config.properties")


def test_listeners_follow_the_contract(props):
    assert props["inference_address"] == "http://0.0.0.0:8080"
    assert props["management_address"] == "http://127.0.0.1:8081"
    assert props["metrics_address"] == "http://0.0.0.0:8082"
    # TorchServe 0.12 cannot turn gRPC off; loopback keeps it unreachable from outside the pod.
    assert props["grpc_inference_address"] == props["grpc_management_address"] == "127.0.0.1"


def test_security_switches(props):
    assert props["disable_token_authorization"] == "true"
    assert props["enable_model_api"] == "false"
    assert props["allowed_urls"] == "file:///home/model-server/model-store/.*"
    assert props["install_py_dep_per_model"] == "false"
    assert props["enable_envvars_config"] == "true"


def test_the_clip_model_is_registered_with_batching_and_one_worker(props):
    assert props["load_models"] == "clip=clip.mar"
    assert props["default_workers_per_model"] == "1"
    models = json.loads(props["models"])
    assert models == {
        "clip": {
            "1.0": {
                "defaultVersion": True,
                "marName": "clip.mar",
                "batchSize": 8,
                "maxBatchDelay": 2,
                "responseTimeout": 120,
            }
        }
    }


def test_dockerfile_passes_hadolint(venv_bin: Path):
    result = subprocess.run(
        [str(venv_bin / "hadolint"), "--format", "json", str(MODEL_SERVER / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    findings = json.loads(result.stdout or "[]")
    assert [f for f in findings if f["level"] == "error"] == []
    # Warnings we accept are ignored inline with a reason; anything new should be looked at.
    assert findings == []
    assert result.returncode == 0


def test_dockerfile_runs_torchserve_as_uid_10001_with_the_shipped_files():
    dockerfile = (MODEL_SERVER / "Dockerfile").read_text()
    assert re.search(
        r"^FROM python:3\.11-slim-bookworm|^ARG PYTHON_IMAGE=python:3\.11-slim-bookworm$", dockerfile, re.M
    )
    assert "openjdk-17-jre-headless" in dockerfile
    assert "--index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1" in dockerfile
    assert 'pip install ".[model-server]"' in dockerfile
    assert re.search(r"^USER 10001$", dockerfile, re.M)
    assert "COPY model-server/model-store/clip.mar ./model-store/clip.mar" in dockerfile
    assert "COPY model-server/model ./model" in dockerfile
    assert re.search(r"^WORKDIR /home/model-server$", dockerfile, re.M)
    cmd = re.search(r"^CMD (\[.*?\])$", dockerfile, re.M | re.S).group(1)
    assert json.loads(cmd.replace("\\\n", "")) == [
        "torchserve",
        "--start",
        "--foreground",
        "--ncs",
        "--ts-config",
        "/home/model-server/config.properties",
        "--model-store",
        "/home/model-server/model-store",
    ]
    # Every COPY source from the repository exists (the model dirs are built by the installer).
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.M):
        for path in source.split():
            if not path.startswith("model-server/model"):
                assert (MODEL_SERVER.parent / path).exists(), path
