"""Settings: the env names of docs/contracts.md, and a start-up that fails fast naming the variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from recommender.config import RecommenderSettings, SettingsError, load_settings


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    (tmp_path / "index").mkdir()
    monkeypatch.setenv("RECOMMENDER_INDEX_DIR", str(tmp_path / "index"))
    monkeypatch.setenv("RECOMMENDER_EMBEDDER__BACKEND", "torchserve")
    return monkeypatch


def test_every_documented_variable_is_read(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    values = {
        "RECOMMENDER_HOST": "127.0.0.1",
        "RECOMMENDER_PORT": "9000",
        "RECOMMENDER_LIMIT_CONCURRENCY": "8",
        "RECOMMENDER_MAX_UPLOAD_BYTES": "1000",
        "RECOMMENDER_ADMIN_TOKEN": "s" * 20,
        "RECOMMENDER_EMBEDDER__BACKEND": "kserve",
        "RECOMMENDER_EMBEDDER__URL": "https://clip-abc.a.run.app",
        "RECOMMENDER_EMBEDDER__MODEL_NAME": "clip2",
        "RECOMMENDER_EMBEDDER__TIMEOUT_SECONDS": "2.5",
        "RECOMMENDER_EMBEDDER__ID_TOKEN": "true",
        "RECOMMENDER_EMBEDDER__ID_TOKEN_AUDIENCE": "https://aud",
    }
    for name, value in values.items():
        env.setenv(name, value)
    s = load_settings()
    assert (s.host, s.port, s.limit_concurrency, s.max_upload_bytes) == ("127.0.0.1", 9000, 8, 1000)
    assert s.index_dir == tmp_path / "index"
    assert s.admin_token is not None and s.admin_token.get_secret_value() == "s" * 20
    e = s.embedder
    assert (e.backend, str(e.url), e.model_name, e.timeout_seconds) == (
        "kserve",
        "https://clip-abc.a.run.app/",
        "clip2",
        2.5,
    )
    assert (e.id_token, e.id_token_audience) == (True, "https://aud")


def test_defaults(env: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert (s.host, s.port, s.limit_concurrency, s.max_upload_bytes, s.admin_token) == (
        "0.0.0.0",
        8000,
        0,
        10485760,
        None,
    )
    assert (str(s.embedder.url), s.embedder.model_name, s.embedder.timeout_seconds) == (
        "http://127.0.0.1:8080/",
        "clip",
        10.0,
    )
    assert RecommenderSettings.model_fields["index_dir"].default == Path("data/index")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "RECOMMENDER_PORT",
            "http",
            "RECOMMENDER_PORT: Input should be a valid integer, unable to parse string as an integer (got 'http')",
        ),
        (
            "RECOMMENDER_EMBEDDER__TIMEOUT_SECONDS",
            "0",
            "RECOMMENDER_EMBEDDER__TIMEOUT_SECONDS: Input should be greater than 0 (got '0')",
        ),
        (
            "RECOMMENDER_EMBEDDER__BACKEND",
            "triton",
            "RECOMMENDER_EMBEDDER__BACKEND: Input should be 'local', 'torchserve' or 'kserve' (got 'triton')",
        ),
        (
            "RECOMMENDER_INDEX_DIR",
            "/nonexistent/index",
            "RECOMMENDER_INDEX_DIR: no index bundle folder at /nonexistent/index (build one with `make index`) (got '/nonexistent/index')",
        ),
        (
            "RECOMMENDER_MAX_UPLOAD_BYTES",
            "-1",
            "RECOMMENDER_MAX_UPLOAD_BYTES: Input should be greater than 0 (got '-1')",
        ),
    ],
)
def test_a_bad_variable_is_named(env: pytest.MonkeyPatch, name: str, value: str, message: str) -> None:
    env.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value) == f"Invalid recommender settings: {message}"


def test_a_short_admin_token_is_refused_without_echoing_it(env: pytest.MonkeyPatch) -> None:
    env.setenv("RECOMMENDER_ADMIN_TOKEN", "hunter2")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value) == (
        "Invalid recommender settings: RECOMMENDER_ADMIN_TOKEN: must be at least 16 characters (or unset to disable)"
    )


def test_an_empty_admin_token_means_off(env: pytest.MonkeyPatch) -> None:
    env.setenv("RECOMMENDER_ADMIN_TOKEN", "")
    assert load_settings().admin_token is None


def test_local_backend_needs_an_installed_model(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("RECOMMENDER_EMBEDDER__BACKEND", "local")
    env.setenv("RECOMMENDER_EMBEDDER__MODEL_DIR", str(tmp_path / "no-model"))
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value) == (
        f"Invalid recommender settings: RECOMMENDER_EMBEDDER__MODEL_DIR: no installed model at {tmp_path / 'no-model'} "
        "(run `python model-server/model_installer.py --tiny` or set the variable)"
    )


def test_python_m_recommender_exits_at_once_naming_the_variable(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "recommender"],
        env={"PATH": "/usr/bin:/bin", "RECOMMENDER_INDEX_DIR": str(tmp_path / "missing")},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "RECOMMENDER_INDEX_DIR: no index bundle folder at" in result.stderr
