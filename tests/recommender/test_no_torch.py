"""The API image installs no torch: with a remote backend, nothing in the app may import it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import sys
from recommender.app import create_app
from recommender.config import load_settings

app = create_app(load_settings())
assert app.state.client.backend == sys.argv[1], app.state.client.backend
loaded = sorted(name for name in sys.modules if name == "torch" or name.startswith(("torch.", "open_clip")))
print("LOADED", loaded)
"""


@pytest.mark.parametrize("backend", ["torchserve", "kserve"])
def test_creating_the_app_with_a_remote_backend_imports_no_torch(
    backend: str, index_bundle: Path, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, backend],
        env={
            "PATH": "/usr/bin:/bin",
            "RECOMMENDER_INDEX_DIR": str(index_bundle),
            "RECOMMENDER_EMBEDDER__BACKEND": backend,
        },
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "LOADED []"


def test_the_probe_can_see_torch_when_it_is_imported(index_bundle: Path, tmp_path: Path) -> None:
    """The check above would pass vacuously if the probe could not notice torch; here it must."""
    result = subprocess.run(
        [sys.executable, "-c", "import torch\n" + PROBE, "torchserve"],
        env={
            "PATH": "/usr/bin:/bin",
            "RECOMMENDER_INDEX_DIR": str(index_bundle),
            "RECOMMENDER_EMBEDDER__BACKEND": "torchserve",
        },
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "'torch'" in result.stdout
