"""The frontend image definition: hadolint-clean, and every Streamlit variable it sets is one Streamlit reads.

There is no Docker daemon here, so the image itself is built in CI / by skaffold; these checks catch
what would otherwise only show up in a running container.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from streamlit import config

DOCKERFILE = Path(__file__).resolve().parents[2] / "frontend" / "Dockerfile"


def env_block() -> dict[str, str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(pair.split("=", 1) for pair in shlex.split(line[4:]))
    return env


def test_hadolint_is_clean(venv_bin: Path) -> None:
    done = subprocess.run([str(venv_bin / "hadolint"), str(DOCKERFILE)], capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_streamlit_variables_exist() -> None:
    config.get_option("server.port")  # loads the option table
    known = {option.env_var: key for key, option in config._config_options.items()}
    streamlit_env = {name: value for name, value in env_block().items() if name.startswith("STREAMLIT_")}
    assert sorted(name for name in streamlit_env if name not in known) == []
    assert {known[name]: value for name, value in streamlit_env.items()} == {
        "server.headless": "true",
        "server.address": "0.0.0.0",
        "server.port": "8501",
        "server.fileWatcherType": "none",
        "server.maxUploadSize": "10",
        "browser.gatherUsageStats": "false",
        "client.toolbarMode": "viewer",
    }


def test_runs_as_10001_with_a_health_check_on_streamlit() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    assert "http://127.0.0.1:8501/_stcore/health" in text
    assert re.search(r'^CMD \["streamlit", "run", "frontend/app.py"\]$', text, re.MULTILINE)
    assert env_block()["HOME"] == "/home/app"  # where the writable .streamlit lives (docs/contracts.md)
